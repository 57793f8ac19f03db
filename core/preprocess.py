"""One preprocessing path for canvases, uploads and photos: make any image look like the model's training data.

MNIST's digits were cropped to their ink, scaled so the longer side is 20 px (anti-aliased) and placed in
28x28 by centre of mass, white on black. scikit-learn's digits are 32x32 bitmaps summed over 4x4 blocks
(0..16 in 8x8). Real drawings and photos are neither: this module bridges the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from scipy import ndimage

WORKING_SIDE = 512  # larger inputs (phone photos) are shrunk first: the answer does not need 12 megapixels
MIN_CONTRAST = 40.0  # of 255: less than this between ink and background is a blank image
INK_FLOOR = 0.2  # fraction of the ink's peak below which a pixel is background (paper texture, noise)
MIN_INK_FRACTION = 0.0002  # fewer ink pixels than this share of the image (or 6) is a speck, not a digit


@dataclass(frozen=True)
class InputFormat:
    """What a model eats: square images of `size`, values 0..max_value, made in MNIST's or the digits' style."""

    size: int
    max_value: int
    style: Literal["mnist", "digits"]


MNIST_FORMAT = InputFormat(28, 255, "mnist")
DIGITS_FORMAT = InputFormat(8, 16, "digits")


@dataclass(frozen=True)
class Preprocessed:
    """The model's input before normalisation (uint8, white ink on black), or blank=True when there is no ink."""

    pixels: np.ndarray
    blank: bool
    ink_box: tuple[int, int, int, int] | None  # (left, top, right, bottom) in the source image


def _as_float_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """Pixels as float32 in 0..255, shape (H, W) or (H, W, C)."""
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            array = np.asarray(image, dtype=np.float32)
            return array * (255.0 / max(float(array.max()), 255.0) if image.mode == "I" else 255.0 / 65535.0)
        if image.mode not in ("L", "RGB", "RGBA", "F"):
            image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
        image = image if image.mode != "F" else Image.fromarray(np.clip(np.asarray(image), 0, 255))
    array = np.asarray(image, dtype=np.float32)
    if array.size and array.dtype.kind == "f" and float(array.max()) <= 1.0 and not isinstance(image, Image.Image):
        array = array * 255.0  # float arrays in 0..1
    return array


def _shrink(array: np.ndarray) -> tuple[np.ndarray, float]:
    """A copy no larger than WORKING_SIDE, and the factor from it back to the source."""
    height, width = array.shape[:2]
    factor = max(height, width) / WORKING_SIDE
    if factor <= 1:
        return array, 1.0
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    channels = [np.asarray(Image.fromarray(array[..., c] if array.ndim == 3 else array).resize(size, Image.Resampling.BOX))
                for c in range(array.shape[2] if array.ndim == 3 else 1)]
    return (np.stack(channels, axis=-1) if array.ndim == 3 else channels[0]), factor


def _grey(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        return array
    if array.shape[2] in (1, 2):
        return array[..., 0]
    return array[..., 0] * 0.299 + array[..., 1] * 0.587 + array[..., 2] * 0.114


def _alpha(array: np.ndarray) -> np.ndarray | None:
    """The alpha channel when it varies enough to carry the drawing (ink of any colour on transparent)."""
    if array.ndim != 3 or array.shape[2] not in (2, 4):
        return None
    alpha = array[..., -1]
    return alpha if float(alpha.min()) < 250 and float(alpha.max() - alpha.min()) > MIN_CONTRAST else None


def _border(values: np.ndarray) -> np.ndarray:
    return np.concatenate([values[:2].ravel(), values[-2:].ravel(), values[:, :2].ravel(), values[:, -2:].ravel()])


def _bright_ink(grey: np.ndarray) -> np.ndarray:
    """Greyscale turned so the ink is bright: the border tells the background's colour."""
    return 255.0 - grey if float(np.median(_border(grey))) > 127 else grey


def _background_field(values: np.ndarray) -> np.ndarray:
    """The background's level at each pixel (uneven lighting), estimated where strokes are thinner than a quarter of the image."""
    border = _border(values)
    if float(np.percentile(border, 95) - np.percentile(border, 5)) < 12:
        return np.full_like(values, float(np.median(border)))  # clean scans and canvases: one level
    step = max(1, min(values.shape) // 64)
    small = values[::step, ::step]
    opened = ndimage.grey_opening(small, size=max(3, min(small.shape) // 4))
    smooth = ndimage.uniform_filter(opened, size=3)
    return np.asarray(Image.fromarray(smooth).resize(values.shape[::-1], Image.Resampling.BILINEAR))


def _stretch(values: np.ndarray) -> np.ndarray:
    """Background to 0, the ink's peak to 1, faint texture cut; all zeros when the contrast is too low."""
    peak = float(np.percentile(values, 99.9)) if values.size > 1000 else float(values.max())
    peak = max(peak, float(values.max()) * 0.5)
    if peak < MIN_CONTRAST:
        return np.zeros_like(values)
    floor = peak * INK_FLOOR
    return np.clip((values - floor) / (peak - floor), 0.0, 1.0)


def _ink_and_scale(image: Image.Image | np.ndarray) -> tuple[np.ndarray, float]:
    array, factor = _shrink(_as_float_array(image))
    alpha = _alpha(array)
    if alpha is not None:
        return _stretch(alpha), factor
    values = _bright_ink(_grey(array))
    return _stretch(values - _background_field(values)), factor


def ink_map(image: Image.Image | np.ndarray) -> np.ndarray:
    """Float32 (H, W) in [0, 1] where 1 is ink, whatever the image's mode, polarity or background."""
    ink, factor = _ink_and_scale(image)
    if factor == 1:
        return ink.astype(np.float32)
    source_size = (round(ink.shape[1] * factor), round(ink.shape[0] * factor))
    resized = Image.fromarray(ink.astype(np.float32)).resize(source_size, Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)


def _digit_mask(ink: np.ndarray) -> np.ndarray:
    """Ink pixels that belong to real strokes: specks much smaller than the largest stroke are dropped."""
    solid = ink > 0.3
    labels, count = ndimage.label(solid, structure=np.ones((3, 3)))
    if count <= 1:
        return solid
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= max(3, 0.02 * sizes.max())) + 1
    return np.isin(labels, keep)


def _is_blank(mask: np.ndarray) -> bool:
    return int(mask.sum()) < max(6, MIN_INK_FRACTION * mask.size)


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels: twice the area over the outline's length."""
    outline = mask & ~ndimage.binary_erosion(mask)
    return 2.0 * float(mask.sum()) / max(float(outline.sum()), 1.0)


def _thickened(crop: np.ndarray, mask: np.ndarray, scale: float, target_width: float) -> np.ndarray:
    """Dilate strokes drawn with a thin brush so that, once scaled, they are as wide as the training data's."""
    missing = target_width / scale - _stroke_width(mask)
    if missing <= 0:
        return crop
    radius = int(np.ceil(missing / 2))
    padded = np.pad(crop, radius)
    return ndimage.grey_dilation(padded, footprint=_disk(radius))


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius + radius


def _fit(crop: np.ndarray, longer_side: int) -> np.ndarray:
    """Resize so the longer side is `longer_side`, keeping the aspect ratio, anti-aliased."""
    height, width = crop.shape
    scale = longer_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def _paste_centred(glyph: np.ndarray, side: int) -> np.ndarray:
    canvas = np.zeros((side, side), dtype=np.float32)
    top, left = (side - glyph.shape[0]) // 2, (side - glyph.shape[1]) // 2
    canvas[top:top + glyph.shape[0], left:left + glyph.shape[1]] = glyph
    return canvas


def _centre_of_mass_shift(canvas: np.ndarray) -> np.ndarray:
    """Translate so the ink's centre of mass sits at the centre, as MNIST did, without pushing ink off the edge."""
    side = canvas.shape[0]
    centre_y, centre_x = ndimage.center_of_mass(canvas)
    rows, cols = np.flatnonzero(canvas.any(axis=1)), np.flatnonzero(canvas.any(axis=0))
    target = side / 2  # MNIST's own mean centre of mass is (14.0, 14.0) in 28x28
    dy = int(np.clip(round(target - centre_y), -rows[0], side - 1 - rows[-1]))
    dx = int(np.clip(round(target - centre_x), -cols[0], side - 1 - cols[-1]))
    return np.roll(canvas, (dy, dx), axis=(0, 1))


def _to_pixels(values: np.ndarray, max_value: int) -> np.ndarray:
    peak = float(values.max())
    scaled = values / peak * max_value if peak > 0 else values
    return np.clip(np.rint(scaled), 0, max_value).astype(np.uint8)


def _mnist_style(crop: np.ndarray, mask: np.ndarray, fmt: InputFormat) -> np.ndarray:
    glyph_side = round(fmt.size * 20 / 28)
    scale = glyph_side / max(crop.shape)
    glyph = _fit(_thickened(crop, mask, scale, target_width=2.2), glyph_side)
    return _to_pixels(_centre_of_mass_shift(_paste_centred(glyph, fmt.size)), fmt.max_value)


def _digits_style(crop: np.ndarray, mask: np.ndarray, fmt: InputFormat) -> np.ndarray:
    bitmap_side = fmt.size * 4  # scikit-learn's digits: 32x32 bitmaps, 4x4 blocks counted
    scale = bitmap_side / max(crop.shape)
    bitmap = _paste_centred(_fit(_thickened(crop, mask, scale, target_width=3.5), bitmap_side), bitmap_side)
    blocks = bitmap.reshape(fmt.size, 4, fmt.size, 4).mean(axis=(1, 3))
    return np.clip(np.rint(blocks / max(float(blocks.max()), 1e-6) * fmt.max_value), 0, fmt.max_value).astype(np.uint8)


def _from_ink(ink: np.ndarray, mask: np.ndarray, factor: float, fmt: InputFormat) -> Preprocessed:
    if _is_blank(mask):
        return Preprocessed(np.zeros((fmt.size, fmt.size), dtype=np.uint8), True, None)
    left, top, right, bottom = _box(mask)
    crop = np.where(ndimage.binary_dilation(mask, iterations=2), ink, 0.0)[top:bottom, left:right]
    mask_crop = mask[top:bottom, left:right]
    pixels = (_mnist_style if fmt.style == "mnist" else _digits_style)(crop, mask_crop, fmt)
    box = tuple(int(round(v * factor)) for v in (left, top, right, bottom))
    return Preprocessed(pixels, False, box)  # type: ignore[arg-type]


def preprocess(image: Image.Image | np.ndarray, fmt: InputFormat = MNIST_FORMAT) -> Preprocessed:
    """Turn a drawing, scan or photo into the model's input, or report it blank."""
    ink, factor = _ink_and_scale(image)
    return _from_ink(ink, _digit_mask(ink), factor, fmt)


def _column_groups(labels: np.ndarray, count: int) -> list[list[int]]:
    """Components grouped into digits: pieces that overlap a lot horizontally (a 4's two strokes) are one digit."""
    spans = ndimage.find_objects(labels)
    order = sorted(range(count), key=lambda i: spans[i][1].start)
    groups: list[list[int]] = []
    for index in order:
        start, stop = spans[index][1].start, spans[index][1].stop
        if groups:
            g_start = min(spans[i][1].start for i in groups[-1])
            g_stop = max(spans[i][1].stop for i in groups[-1])
            overlap = min(stop, g_stop) - max(start, g_start)
            if overlap > 0.5 * min(stop - start, g_stop - g_start):
                groups[-1].append(index)
                continue
        groups.append([index])
    return groups


def split_digits(image: Image.Image | np.ndarray, fmt: InputFormat = MNIST_FORMAT) -> list[Preprocessed]:
    """Several digits written in a row: one Preprocessed per digit, left to right (empty when blank)."""
    ink, factor = _ink_and_scale(image)
    mask = _digit_mask(ink)
    if _is_blank(mask):
        return []
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    return [_from_ink(ink, np.isin(labels, [i + 1 for i in group]), factor, fmt)
            for group in _column_groups(labels, count)]
