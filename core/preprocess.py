"""One preprocessing path for canvases, uploads and photos: make any image look like the model's training data.

MNIST's digits were cropped to their ink, scaled so the longer side is 20 px (anti-aliased) and placed in
28x28 by centre of mass, white on black. scikit-learn's digits are 32x32 bitmaps summed over 4x4 blocks
(0..16 in 8x8). Real drawings and photos are neither: this module bridges the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
import functools
import math
import sys
from itertools import pairwise

import numpy as np
from PIL import Image
from scipy import ndimage
from threadpoolctl import ThreadpoolController

from core.formats import DIGITS_FORMAT, MNIST_FORMAT, InputFormat  # noqa: F401  (this module's API since it began)

WORKING_SIDE = 512  # larger inputs (phone photos) are shrunk first: the answer does not need 12 megapixels
MIN_CONTRAST = 40.0  # of 255: less than this between ink and background is a blank image
FAINT_CONTRAST = 20.0  # of 255: ink this faint (a light pencil) still counts in a quiet picture, where it is at least
NOISE_MARGIN = 6.0  # this many times the noise's spread (noise alone peaks at about 3 times it)
UNEVEN_BORDER = 8.0  # of 255: the border's quartiles further apart than this mean uneven lighting
INK_FLOOR = 0.2  # fraction of the ink's peak below which a pixel is background (paper texture, noise)
STROKE_LEVEL = 0.3  # ink above this is stroke; below it, anti-aliasing fringe
SPECK_SHARE = 0.02  # components smaller than this share of the largest one are specks
SPECK_PIXELS = 3  # and any smaller than this
CLUSTER_REACH = 0.25  # of the digit's size: ink further than this from the digit is another mark, not part of it
RULE_SPAN = 0.85  # a line of ink across this share of the picture is a ruled line of the paper, not a stroke
RULE_THICKNESS = 0.02  # of the picture's side: ruled lines are hair-lines; a stroke drawn edge to edge is thicker
RULE_KEEPS = 0.3  # removing the lines must leave this share of the stroke pixels, or they were the drawing
SHEET_SHARE = 0.4  # a level this much of the picture has, far from the border's, is the paper's (on a desk)
MAX_PIECES = 64  # a digit is a few pieces of ink (a dotted one some dozens): past this, no piece is judged
UNDERLINE_FLATNESS = 4.0  # an underline is at least this many times wider than high
UNDERLINE_SPAN = 1.1  # and wider than the digit above it (a 2's base drawn apart is about as wide as its curve)
BOX_SIDE = 0.15  # a box's sides lie within this share of the ink's extent from its edges
FRAME_WIDTH = 3.0  # a desk round the sheet is this many times wider than the pen's strokes on it, or more
MIN_INK_PIXELS = 6  # fewer stroke pixels than this is no drawing at all
MIN_INK_EXTENT = 0.02  # ink spanning less than this share of the image's longer side is a speck, not a digit
DOT_SPAN = 2.0  # ink spanning fewer stroke widths than this is a dot or blob: a disc spans 1.8, the stubbiest of
#                MNIST's 24,262 test and training-subset digits 2.16 (a fat 0)
LINE_THINNESS = 0.3  # ink this much thinner than long (minor/major axis, as standard deviations) is one straight line
LINE_TILT = 60.0  # degrees from upright past which such a line is a scratch, not a 1: MNIST's straight ones lean <= 56
LINE_FILL = 0.6  # share of that bar the ink must cover: a drawn line covers 0.9 or more, a row of digits under 0.5
COARSEST_SHAPE = 16  # px: in smaller images (scikit-learn's 8x8 digits) a digit's shape is too coarse to judge
THICK_SHARE = 2.0  # strokes this many times MNIST's width or more (a thick brush; 1 MNIST digit in 100) are thinned
THIN_TO = 1.4  # to this many times MNIST's width, as its thicker digits: the shape changes no more than needed
MNIST_STROKE = 2.6  # px at 28x28 for thin strokes: MNIST's test digits' median (10th-90th percentile: 2.1-3.7)
DIGITS_STROKE = 4.5  # px in the 32x32 bitmap: one 4x4 block, as upscaled scikit-learn digits measure
EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)
SHIFTED_REACH = 2.5  # px: a brush's reach up to which shifting the strokes beats a distance transform (see _brush_cover)




TOO_LITTLE_INK = "Too little ink to be a digit: please draw or write the digit bigger."
NOT_A_STROKE = "That is a dot, not a digit's stroke: please draw or write the digit bigger, in lines."
NOT_A_DIGIT_LINE = "One straight line across is not a digit: please draw or write the digit bigger, in its full shape."


@dataclass(frozen=True)
class Preprocessed:
    """The model's input before normalisation (uint8, white ink on black), or blank=True when there is nothing to
    read: no ink at all, or ink that is no digit (then `refusal` says why, in one sentence for the user)."""

    pixels: np.ndarray  # uint8 (size, size), values 0..max_value
    blank: bool  # nothing to read: pixels are all zero and must not be predicted
    ink_box: tuple[int, int, int, int] | None  # (left, top, right, bottom) in the source image, right/bottom exclusive
    refusal: str | None = None  # TOO_LITTLE_INK, NOT_A_STROKE or NOT_A_DIGIT_LINE when ink was found but refused


@dataclass(frozen=True)
class _Ink:
    """Ink in 0..1 (float32) within its box in the working image, and none outside it: the later steps read the box
    alone (a drawing on the canvas covers about a third of it)."""

    values: np.ndarray  # the box's ink, (bottom - top, right - left); (0, 0) when there is none
    left: int
    top: int
    shape: tuple[int, int]  # the working image's (height, width)

    @staticmethod
    def none(shape: tuple[int, int], like: np.ndarray | None = None) -> _Ink:
        """No ink in a working image of `shape`: an empty box (of `like`'s type, by default float32)."""
        return _Ink(np.zeros((0, 0), dtype=np.float32) if like is None else like[:0, :0], 0, 0, shape)

    @property
    def side(self) -> int:
        """The working image's longer side."""
        return max(self.shape)

    def whole(self) -> np.ndarray:
        """The ink at the working image's size (the box's own array when that is all of it)."""
        if self.values.shape == self.shape:
            return self.values
        whole = np.zeros(self.shape, dtype=np.float32)
        whole[self.top:self.top + self.values.shape[0], self.left:self.left + self.values.shape[1]] = self.values
        return whole


def _in_box(values: np.ndarray, inked: np.ndarray | None = None) -> _Ink:
    """The whole working image's `values` cut to the box of `inked` (by default values > 0), which holds every pixel
    with ink; an empty box of the values' own type when there is none."""
    left, top, right, bottom = _box(values > 0 if inked is None else inked)
    if bottom == top:
        return _Ink.none(values.shape, like=values)
    return _Ink(values[top:bottom, left:right], left, top, values.shape)


# ---- any image to float pixels in 0..255 -------------------------------------------------------------------------

def _array_pixels(array: np.ndarray) -> np.ndarray:
    """Pixels in 0..255 from any numeric array: 8-bit values kept as they are (contiguous), anything else as float32,
    floats in 0..1 stretched and wide integers scaled by their depth."""
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)  # the lookup in _stretched_levels reads it whole, in order
    if array.dtype == bool:
        return array.astype(np.float32) * 255.0
    if array.dtype.kind == "f":
        values = np.nan_to_num(np.clip(array, -1.0, 256.0).astype(np.float32))  # clipped first: x 255 must stay finite
        return values * 255.0 if float(values.max()) <= 1.0 else np.clip(values, 0.0, 255.0)
    top = int(array.max())
    if array.dtype.itemsize == 1 or (array.dtype.kind == "i" and top <= 255):
        return np.clip(array, 0, 255).astype(np.float32)  # plain 8-bit values, whatever the integer type
    bits = max(8 * array.dtype.itemsize if array.dtype.kind == "u" else 16, top.bit_length())
    return np.clip(array, 0, None).astype(np.float32) * (255.0 / (2 ** bits - 1))  # 16-bit scans: scaled, not clipped


def _informative_channels(array: np.ndarray) -> np.ndarray:
    """An 8-bit (H, W, C) array without what cannot change the result, dropped before any float work (4x less of
    it for a canvas): an alpha too even to hold a drawing (see _is_drawing), and colour channels that are equal."""
    if array.ndim != 3 or array.dtype != np.uint8:
        return array
    if array.shape[2] == 4 and array.flags.c_contiguous and sys.byteorder == "little":
        return _informative_rgba(array)
    if array.shape[2] in (2, 4) and int(array[..., -1].max()) - int(array[..., -1].min()) <= MIN_CONTRAST:
        if int(array[..., -1].max()) == 0:
            return np.zeros(array.shape[:2], dtype=np.uint8)  # wholly transparent: shown empty, so read as empty
        array = array[..., :-1]
    if array.shape[2] == 3 and np.array_equal(array[..., 0], array[..., 1]) \
            and np.array_equal(array[..., 1], array[..., 2]):
        return array[..., 0]  # grey in RGB clothing: luminance and every channel's ink signal are this plane
    return array[..., 0] if array.shape[2] == 1 else array


def _informative_rgba(array: np.ndarray) -> np.ndarray:
    """_informative_channels of a contiguous RGBA array, read as one 32-bit word a pixel (alpha the top byte): the
    word's extremes carry the alpha's, and R = G = B where the word's low three bytes repeat (4 passes, not 9)."""
    words = array.view(np.uint32)[..., 0]
    highest_alpha = int(words.max()) >> 24
    if highest_alpha - (int(words.min()) >> 24) > MIN_CONTRAST:
        return array  # the alpha may hold the drawing
    if highest_alpha == 0:
        return np.zeros(array.shape[:2], dtype=np.uint8)  # wholly transparent: shown empty, so read as empty
    shifted = words >> 8
    shifted ^= words
    shifted &= 0xFFFF  # R^G and G^B
    if not shifted.any():
        return words.astype(np.uint8)  # the low byte, red: contiguous in one pass (a strided copy takes 4x as long)
    return array[..., :3]


def _array_planes(array: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour (3, H, W) or grey (H, W) and alpha (None when there is none), in 0..255 (uint8 or float32)."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)) or 0 in array.shape:
        raise ValueError(f"expected an image array (H, W), (H, W, 2), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.dtype.kind not in "buif":  # text, complex numbers, Python objects: no pixel values
        raise ValueError(f"expected an image array of real numbers, got {array.dtype}")
    array = _informative_channels(array)
    if array.ndim == 2:
        return _array_pixels(array), None
    planes = _array_pixels(np.ascontiguousarray(np.moveaxis(array, -1, 0)))  # channel-first: each plane contiguous
    alpha = planes[-1] if len(planes) in (2, 4) else None
    return (planes[0] if len(planes) == 2 else planes[:3]), alpha


def _pil_planes(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour or grey, and alpha, of a PIL image in any mode; palette, CMYK and the like are converted first."""
    if image.mode in ("L", "F", "I") or image.mode.startswith("I;16"):
        return _array_pixels(np.asarray(image)), None
    if image.mode not in ("LA", "RGB", "RGBA"):
        transparent = "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if transparent else "RGB")
    return _array_planes(np.asarray(image))


def working_image(image: Image.Image) -> Image.Image:
    """Big photos shrunk to WORKING_SIDE in their own mode (fast, 8-bit); preprocessing the result gives the same
    pixels as preprocessing the original, so callers may keep this smaller copy instead."""
    factor = max(image.size) / WORKING_SIDE
    if factor <= 1 or image.mode not in ("L", "LA", "RGB", "RGBA"):
        return image
    return image.resize((max(1, round(image.width / factor)), max(1, round(image.height / factor))),
                        Image.Resampling.BOX)


def _resized(values: np.ndarray, size: tuple[int, int], method: Image.Resampling) -> np.ndarray:
    """A float plane, or each plane of (C, H, W), resized by PIL in mode F (no rounding); size is (width, height)."""
    if values.ndim == 3:
        return np.stack([_resized(plane, size, method) for plane in values])
    return np.asarray(Image.fromarray(np.ascontiguousarray(values, dtype=np.float32), "F").resize(size, method))


def _shrunk_to(values: np.ndarray, side: float) -> np.ndarray:
    """Box-averaged so the longer side is about `side` (and at least 1 px)."""
    height, width = values.shape[-2:]
    factor = max(height, width) / side
    return _resized(values, (max(1, round(width / factor)), max(1, round(height / factor))), Image.Resampling.BOX)


def _working_planes(image: Image.Image | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Colour or grey, and alpha, in 0..255 (uint8 or float32), no larger than WORKING_SIDE."""
    if isinstance(image, Image.Image):
        values, alpha = _pil_planes(working_image(image))
    else:
        values, alpha = _array_planes(np.asarray(image))
    if max(values.shape[-2:]) <= WORKING_SIDE:
        return values, alpha
    return _shrunk_to(values, WORKING_SIDE), (None if alpha is None else _shrunk_to(alpha, WORKING_SIDE))


def _source_size(image: Image.Image | np.ndarray) -> tuple[int, int]:
    """(width, height) of the image as given."""
    return image.size if isinstance(image, Image.Image) else (np.shape(image)[1], np.shape(image)[0])


# ---- ink: bright strokes in 0..1 on a zero background ------------------------------------------------------------

def _border(values: np.ndarray) -> np.ndarray:
    """The outermost two rows and columns, (N,) or (C, N): where the background shows in almost any digit picture."""
    edges = [values[..., :2, :], values[..., -2:, :], values[..., :, :2], values[..., :, -2:]]
    return np.concatenate([edge.reshape(*values.shape[:-2], -1) for edge in edges], axis=-1)


def _is_drawing(alpha: np.ndarray | None) -> bool:
    """Whether alpha carries the drawing: it varies, and the background (the border) is transparent."""
    if alpha is None or float(alpha.max()) - float(alpha.min()) <= MIN_CONTRAST:
        return False
    border = _border(alpha)
    if float(border.max()) < 128 or float(border.min()) >= 128:  # the median's side without sorting (canvases)
        return float(border.max()) < 128
    return float(np.median(border)) < 128


def _overview(values: np.ndarray, side: int = 64) -> np.ndarray:
    """Means of whole blocks, about `side` px on the shorter side: noise averaged out for background statistics."""
    factor = min(values.shape[-2:]) // side
    if factor < 2:
        return values if values.dtype == np.float32 else values.astype(np.float32)
    height, width = values.shape[-2] // factor * factor, values.shape[-1] // factor * factor  # a ragged edge is left out
    whole = np.uint16 if factor * factor * 255 < 2 ** 16 else np.uint32  # 8-bit levels: whole sums, as exact as float
    rows = sum(values[..., i:height:factor, :width].astype(whole) if values.dtype == np.uint8 else
               values[..., i:height:factor, :width] for i in range(factor))  # strided sums: faster than PIL per plane
    return sum(rows[..., j::factor] for j in range(factor)).astype(np.float32) / (factor * factor)


LUMINANCE = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's "L"


def _grey(values: np.ndarray) -> np.ndarray:
    """Luminance of colour values (3, H, W); grey values unchanged."""
    return np.tensordot(LUMINANCE, values, axes=1) if values.ndim == 3 else values


def _quadratic_terms(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """1, x, y, x², xy, y² stacked on a last axis: a quadratic surface's design matrix."""
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def _fitted_surface(overview: np.ndarray, chosen: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A quadratic surface (a lamp's gradient, vignetting) fitted to the chosen overview pixels, drawn at `shape`."""
    rows, cols = np.mgrid[0:overview.shape[0], 0:overview.shape[1]]
    design = _quadratic_terms(rows[chosen] / overview.shape[0], cols[chosen] / overview.shape[1])
    coefficients = np.linalg.lstsq(design, overview[chosen].astype(np.float64), rcond=None)[0]
    y = (np.arange(shape[0], dtype=np.float32)[:, None] + 0.5) / shape[0] - 0.5 / overview.shape[0]  # pixel centres
    x = (np.arange(shape[1], dtype=np.float32)[None, :] + 0.5) / shape[1] - 0.5 / overview.shape[1]
    return _quadratic_terms(*np.broadcast_arrays(y, x)) @ coefficients.astype(np.float32)


def _paper_light(overview: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """How brightly each pixel of the paper is lit: a smooth surface fitted to the logarithm of the overview (light
    multiplies), refitted to the pixels it explains well, so that the ink (a minority, dark or bright) drops out."""
    logs = np.log1p(overview)
    paper = np.ones(overview.shape, dtype=bool)
    for _ in range(3):
        residual = logs - _fitted_surface(logs, paper, overview.shape)
        paper = np.abs(residual) <= 2.5 * float(np.median(np.abs(residual[paper]))) + 1e-3
    return np.expm1(_fitted_surface(logs, paper, shape))


def _is_unevenly_lit(overview: np.ndarray) -> bool:
    """Whether the background varies along the border, as under a lamp; clean scans and canvases have an even one."""
    border = _border(_grey(overview))
    if float(border.max()) - float(border.min()) < UNEVEN_BORDER:  # quartiles lie within the range (canvases, scans)
        return False
    low, high = np.percentile(border, [25, 75])  # quartiles ignore ink touching the border
    return float(high - low) >= UNEVEN_BORDER


@functools.cache
def _openblas() -> ThreadpoolController:
    """numpy's OpenBLAS thread pool (looked up once a process: ~30 ms)."""
    return ThreadpoolController().select(internal_api="openblas")


def _evenly_lit(values: np.ndarray, overview: np.ndarray) -> np.ndarray:
    """The picture as if evenly lit: a lamp's gradient or vignetting divided out."""
    with _openblas().limit(limits=1):  # the fits are small: waking OpenBLAS's second thread cost a photo 35 ms of
        light = _paper_light(_grey(overview), values.shape[-2:])  # CPU and 0.3-0.5 s of waiting on a busy 2-core machine
    typical = float(np.median(light))
    if not typical >= MIN_CONTRAST:  # a dark background (a black canvas whose stroke touches its edges): no paper lit
        return values  # by a lamp, and dividing by its light of about 0 made every pixel NaN
    return values * (typical / np.maximum(light, 0.1 * typical))


def _background(values: np.ndarray, overview: np.ndarray) -> tuple[np.ndarray, bool]:
    """The background's level in each channel (the border's median) and whether the ink is darker than it."""
    border = _border(values)
    lowest = border.min(axis=-1)
    if (lowest == border.max(axis=-1)).all():  # one level all round (a canvas): the median, without sorting
        background = lowest.astype(np.float32)
    else:
        background = np.median(border, axis=-1).astype(np.float32)  # float64 would double every later step
        background = _sheet_level(overview, background)
    lows, highs = overview.min(axis=(-2, -1)), overview.max(axis=(-2, -1))  # averaged: a hot pixel is not ink
    return background, float((background - lows).max()) > float((highs - background).max())  # ink lies far out


def _sheet_level(overview: np.ndarray, border_level: np.ndarray) -> np.ndarray:
    """The background's level: the border's, unless most of the picture is of another level, far from it (a sheet of
    paper photographed on a darker desk: the border is the desk). Then that commonest level, and the desk round it
    becomes ink that frames the picture, which _without_frame removes."""
    grey = _grey(overview)
    counts, edges = np.histogram(grey, bins=32, range=(0.0, 256.0))
    commonest = int(counts.argmax())
    if counts[commonest] < SHEET_SHARE * grey.size:
        return border_level
    near = (grey >= edges[commonest]) & (grey < edges[commonest + 1])
    sheet = np.median(overview[..., near], axis=-1).astype(np.float32)  # each channel's level on the sheet
    apart = abs(float(np.mean(_grey(sheet))) - float(np.mean(_grey(border_level))))
    return sheet if apart > MIN_CONTRAST else border_level


def _ink_signal(values: np.ndarray, overview: np.ndarray) -> np.ndarray:
    """How far each pixel departs from the background colour towards the ink, in its most telling channel: dark
    ink on paper and light or coloured strokes on black all come out bright (blue has little luminance)."""
    background, ink_is_darker = _background(values, overview)
    if values.ndim == 2:
        return background - values if ink_is_darker else values - background
    planes = [level - plane if ink_is_darker else plane - level for plane, level in zip(values, background)]
    return np.maximum(np.maximum(planes[0], planes[1]), planes[2])


def _peak_and_least(counts: np.ndarray, top: float) -> tuple[float, float]:
    """The ink's peak, from a histogram of a quarter of its values in whole levels and its maximum `top`: the 99.9th
    percentile (a few hot pixels are not the ink), at least half the maximum. And the faintest peak that is not a
    blank picture's noise: MIN_CONTRAST, or less (down to FAINT_CONTRAST) in a quiet picture. The background's
    departures are noise centred on 0, half of them cut to 0: their 75th percentile is 0.674 of their spread, the
    ink (a small share) barely moves it."""
    cumulative = np.cumsum(counts)
    size = int(cumulative[-1])
    peak = max(float(np.searchsorted(cumulative, size - size // 1000)), 0.5 * top)
    spread = float(np.searchsorted(cumulative, 0.75 * size)) / 0.674
    return peak, min(MIN_CONTRAST, max(FAINT_CONTRAST, NOISE_MARGIN * spread))


def _robust_peak(values: np.ndarray) -> tuple[float, float]:
    """_peak_and_least of the ink `values`."""
    sample = values[::2, ::2]  # a quarter of the pixels estimates a percentile just as well, 4x faster
    counts = np.bincount(np.clip(sample, 0, 255).astype(np.uint8).ravel(), minlength=256)  # faster than a sort
    return _peak_and_least(counts, float(values.max()))


def _scaled_to_peak(values: np.ndarray, peak: float) -> np.ndarray:
    """Background to 0, the ink's peak to 1, faint texture cut."""
    floor = peak * INK_FLOOR
    stretched = np.subtract(values, floor, dtype=np.float32)
    stretched *= 1.0 / (peak - floor)
    return np.clip(stretched, 0.0, 1.0, out=stretched)  # in place: each pass over a big photo costs


def _stretch(values: np.ndarray) -> np.ndarray:
    """Background to 0, the ink's peak to 1, faint texture cut; all zeros when the contrast is too low."""
    peak, least = _robust_peak(values)
    if peak < least:
        return np.zeros(values.shape, dtype=np.float32)
    return _scaled_to_peak(values, peak)


LEVELS = np.arange(256, dtype=np.float32)


def _level_counts(plane: np.ndarray) -> np.ndarray:
    """How many pixels of an 8-bit plane have each of the 256 levels: np.bincount's, with a level that covers most
    of the plane (a canvas's background) counted by comparing bytes, since bincount's increments of one counter
    wait on each other (3x faster on a canvas)."""
    first = plane.flat[0]
    at_first = plane == first
    count = np.count_nonzero(at_first)
    if 2 * count < plane.size:
        return np.bincount(plane.ravel(), minlength=256)
    counts = np.bincount(plane[~at_first], minlength=256)
    counts[first] += count
    return counts


def _stretched_levels(plane: np.ndarray, level_ink: np.ndarray) -> _Ink:
    """_stretch(level_ink[plane]) for an 8-bit plane whose ink depends on its level alone, `level_ink` monotonic:
    the same float32 steps on the 256 levels, then one lookup a pixel instead of five float passes (same values),
    and only in the box of the levels that are ink (one end of the range, found by comparing bytes)."""
    level_bins = np.clip(level_ink, 0, 255).astype(np.uint8)  # each level's bin in _robust_peak's histogram
    counts = np.bincount(level_bins, weights=_level_counts(plane[::2, ::2]), minlength=256)
    top = max(float(level_ink[plane.min()]), float(level_ink[plane.max()]))  # monotonic: the maximum is at an end
    peak, least = _peak_and_least(counts, top)
    if peak < least:
        return _Ink.none(plane.shape)
    stretched = _scaled_to_peak(level_ink, peak)
    levels = np.flatnonzero(stretched)
    if not levels.size:
        return _Ink.none(plane.shape)
    lowest, highest = int(levels[0]), int(levels[-1])  # every ink level lies between (all of them, if monotonic)
    inked = plane >= lowest if highest == 255 else plane <= highest if lowest == 0 else \
        (plane >= lowest) & (plane <= highest)
    box = _in_box(plane, inked)
    return _Ink(np.take(stretched, box.values), box.left, box.top, box.shape)


def _grey_levels_ink(plane: np.ndarray, overview: np.ndarray) -> _Ink:
    """_ink_signal then _stretch of an evenly lit 8-bit grey plane, level by level."""
    background, ink_is_darker = _background(plane, overview)
    signal = background - LEVELS if ink_is_darker else LEVELS - background
    return _stretched_levels(plane, np.maximum(signal, 0.0, out=signal))


def _floats(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32) if values.dtype == np.uint8 else values


def _working_ink(image: Image.Image | np.ndarray) -> _Ink:
    """Ink in 0..1 at working resolution (no larger than WORKING_SIDE)."""
    values, alpha = _working_planes(image)
    if _is_drawing(alpha):  # ink of any colour on transparent: the alpha is the drawing
        return _stretched_levels(alpha, LEVELS) if alpha.dtype == np.uint8 else _in_box(_stretch(alpha))
    overview = _overview(values)
    if min(values.shape[-2:]) >= 4 * COARSEST_SHAPE and _is_unevenly_lit(overview):  # a tiny image's border is
        # most of it: its digit would be taken for a lamp's light and divided out
        values = _evenly_lit(_floats(values), overview)
        overview = _overview(values)
    elif values.ndim == 2 and values.dtype == np.uint8:  # canvases and clean scans
        return _grey_levels_ink(values, overview)
    signal = _ink_signal(_floats(values), overview)
    return _in_box(_stretch(np.maximum(signal, 0.0, out=signal)))  # a fresh array: no copy needed


def ink_map(image: Image.Image | np.ndarray) -> np.ndarray:
    """Float32 (H, W) in [0, 1] where 1 is ink, whatever the image's mode, polarity, background or lighting."""
    ink, size = _working_ink(image).whole(), _source_size(image)
    if ink.shape == (size[1], size[0]):
        return ink
    return np.clip(_resized(ink, size, Image.Resampling.BILINEAR), 0.0, 1.0)


# ---- which ink is a digit ----------------------------------------------------------------------------------------

def _speck_floor(largest: float) -> float:
    """The fewest pixels a component needs beside a largest one of `largest` pixels (itself included) to be kept."""
    return max(SPECK_PIXELS, SPECK_SHARE * largest)


def _kept(sizes: np.ndarray) -> np.ndarray:
    """Per label (0 = background, never kept): True unless it is a speck beside a much larger component."""
    keep = sizes >= _speck_floor(float(sizes[1:].max(initial=0)))
    keep[0] = False
    return keep


def _strokes(ink: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected stroke components (8-neighbour labels) with specks relabelled 0, and the number of labels."""
    labels, count = ndimage.label(ink > STROKE_LEVEL, structure=EIGHT_NEIGHBOURS)
    if count > 1:
        labels = np.where(_kept(np.bincount(labels.ravel()))[labels], labels, 0)
    return labels, count


def _touching(regions: np.ndarray, count: int, mask: np.ndarray) -> np.ndarray:
    """The ink regions (labels of ink > 0) that contain part of `mask`: strokes with their whole fringe."""
    touched = np.zeros(count + 1, dtype=bool)
    touched[regions[mask]] = True  # stroke pixels have ink, so never region 0, the background
    return touched[regions]


def _single_digit(ink: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stroke mask and the ink support (strokes and their fringe) of the digit: the pieces of ink gathered
    round the largest one, without specks or marks far from it (a stray stroke in a corner of the page)."""
    present = ink > 0
    regions, count = ndimage.label(present, structure=EIGHT_NEIGHBOURS)
    strokes = ink > STROKE_LEVEL
    if count == 1:  # one piece of ink (most drawings): the digit unless a speck, found with no per-pixel lookups
        size = np.count_nonzero(strokes)
        if size >= _speck_floor(size):  # _kept's rule, without its per-label arrays
            return strokes, present
        return np.zeros_like(strokes), np.zeros_like(present)
    sizes = np.bincount(regions[strokes], minlength=count + 1)  # stroke pixels of each piece
    keep = _kept(sizes)  # specks judged by their stroke pixels
    if 1 < np.count_nonzero(keep) <= MAX_PIECES:  # more is noise or a page of text: the pieces' pairs would cost
        boxes = ndimage.find_objects(regions, count)  # seconds (a hostile upload of 10,000 dots)
        keep &= _near_the_largest(regions, boxes, sizes * keep, strokes)
        if np.count_nonzero(keep) > 1:
            keep &= ~_underlines(boxes, keep)
    support = keep[regions]
    return strokes & support, support


def _underlines(boxes: list[tuple[slice, slice]], keep: np.ndarray) -> np.ndarray:
    """Per region: whether it is a line drawn under the rest of the ink: a separate piece, lying flat, below every
    other kept piece and wider than they are together."""
    kept = list(np.flatnonzero(keep))
    under = np.zeros(len(keep), dtype=bool)
    for label in kept:
        rows, cols = boxes[label - 1]
        others = [boxes[other - 1] for other in kept if other != label]
        others_width = max(box[1].stop for box in others) - min(box[1].start for box in others)
        flat = (cols.stop - cols.start) >= UNDERLINE_FLATNESS * (rows.stop - rows.start)
        gap = rows.start - max(box[0].stop for box in others)  # a clear space above it, its own height at least:
        below = gap >= max(2, rows.stop - rows.start)  # a 2's base drawn apart lies close under the curve's end
        if flat and below and (cols.stop - cols.start) >= UNDERLINE_SPAN * others_width:
            under[label] = True
    return under


def _near_the_largest(regions: np.ndarray, boxes: list[tuple[slice, slice]], sizes: np.ndarray,
                      strokes: np.ndarray) -> np.ndarray:
    """Per region: whether it joins the cluster grown from the largest one (`sizes`: each kept piece's stroke pixels,
    0 for the rest), a piece at a time, taking any piece whose box lies within CLUSTER_REACH of the cluster's size
    (or 3 stroke widths) of the cluster's box: a 5's bar, the dashes of a dashed stroke, the dots of a dotted one
    join; a mark in a far corner does not."""
    largest = int(sizes.argmax())
    (top, bottom), (left, right) = ((box.start, box.stop) for box in boxes[largest - 1])
    width = _stroke_width(strokes & (regions == largest))
    joined = np.zeros(len(sizes), dtype=bool)
    joined[largest] = True
    waiting = [label for label in np.flatnonzero(sizes) if label != largest]
    grown = True
    while grown and waiting:
        grown = False
        reach = max(3.0 * width, CLUSTER_REACH * max(bottom - top, right - left))
        for label in list(waiting):
            rows, cols = boxes[label - 1]
            gap = max(rows.start - bottom, top - rows.stop, cols.start - right, left - cols.stop, 0)
            if gap <= reach:
                joined[label], grown = True, True
                waiting.remove(label)
                top, bottom = min(top, rows.start), max(bottom, rows.stop)
                left, right = min(left, cols.start), max(right, cols.stop)
    return joined


def _span(present: np.ndarray) -> tuple[int, int]:
    """The first index where the 1-D `present` is True and one past the last; (0, 0) when it is nowhere."""
    first = int(present.argmax())
    if not present[first]:
        return 0, 0
    return first, len(present) - int(present[::-1].argmax())


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the True pixels, right/bottom exclusive; all 0 when there are none. The columns
    are read in the rows with ink alone."""
    top, bottom = _span(mask.any(axis=1))
    left, right = _span(mask[top:bottom].any(axis=0))
    return left, top, right, bottom


def _is_speck(mask: np.ndarray, image_side: int) -> bool:
    """Too little ink, or ink so small against the image (a speck, a stray dot) that no digit fits in it."""
    if int(np.count_nonzero(mask)) < MIN_INK_PIXELS:
        return True
    left, top, right, bottom = _box(mask)
    return max(right - left, bottom - top) < MIN_INK_EXTENT * image_side


def _is_dot(mask: np.ndarray) -> bool:
    """Ink no longer than a few of its own stroke widths: one dab of the brush (a dot, a blob), not a stroke."""
    left, top, right, bottom = _box(mask)
    return max(right - left, bottom - top) < DOT_SPAN * _stroke_width(mask)


def _spread(mask: np.ndarray) -> np.ndarray:
    """The 2x2 covariance of the ink's (x, y) positions, from row and column sums (4x faster than np.cov)."""
    weights = mask.astype(np.float32)
    xs, ys = np.arange(mask.shape[1], dtype=np.float32), np.arange(mask.shape[0], dtype=np.float32)
    per_column, per_row = weights.sum(axis=0), weights.sum(axis=1)
    count = float(per_row.sum())
    mean_x, mean_y = per_column @ xs / count, per_row @ ys / count
    xx, yy = per_column @ (xs * xs) / count - mean_x ** 2, per_row @ (ys * ys) / count - mean_y ** 2
    xy = ys @ (weights @ xs) / count - mean_x * mean_y
    return np.array([[xx, xy], [xy, yy]], dtype=np.float64)


def _clearly_round(spread: np.ndarray) -> bool:
    """Whether the 2x2 spread's axes are surely not LINE_THINNESS apart (most digits), from the closed-form
    eigenvalues; near the threshold (within a margin far above their rounding error) it says False and eigh decides."""
    (xx, xy), (_, yy) = spread.tolist()
    middle, half_gap = (xx + yy) / 2, float(np.hypot((xx - yy) / 2, xy))
    minor, major = middle - half_gap, middle + half_gap
    return major > 0 and minor > major * (LINE_THINNESS ** 2) * (1 + 1e-6)


def _is_flat_line(mask: np.ndarray) -> bool:
    """One thin straight line lying far from upright (a dash, a scratch): a 1 is straight too, but stands up. The ink
    must fill the bar its spread describes (a solid bar of length L and width w has variances L²/12 and w²/12): a
    row of digits or a fence of bars spreads as widely but leaves most of that bar empty."""
    spread = _spread(mask)
    if _clearly_round(spread):
        return False
    (minor, major), axes = np.linalg.eigh(spread)  # the ink's principal axes, as an ellipse's
    if minor <= 0 or np.sqrt(minor / major) >= LINE_THINNESS:
        return False
    if np.count_nonzero(mask) < LINE_FILL * 12.0 * np.sqrt(minor * major):
        return False
    across, upright = np.abs(axes[:, 1])
    return float(np.degrees(np.arctan2(across, upright))) > LINE_TILT


def _shape_refusal(mask: np.ndarray, image_side: int) -> str | None:
    """Why ink of a fair size is still no digit (a dot, a flat line), or None; images too coarse are not judged."""
    if image_side < COARSEST_SHAPE:
        return None
    if _is_dot(mask):
        return NOT_A_STROKE
    return NOT_A_DIGIT_LINE if _is_flat_line(mask) else None


def why_not_a_digit(mask: np.ndarray, image_side: int) -> str | None:
    """Why the stroke pixels in `mask` (found in an image whose longer side is `image_side`) cannot be a digit, as
    one sentence for the user, or None when they may be one."""
    return TOO_LITTLE_INK if _is_speck(mask, image_side) else _shape_refusal(mask, image_side)


# ---- glyph: the crop scaled to the training data's size and stroke width -----------------------------------------

def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in pixels of a binary drawing: twice its area over the length of its outline."""
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]  # edge: never inner
    outline = np.count_nonzero(mask) - np.count_nonzero(inner)  # pixels with a 4-neighbour outside the drawing
    return 2.0 * float(np.count_nonzero(mask)) / max(float(outline), 1.0)


def _max_pooled(values: np.ndarray, factor: int) -> np.ndarray:
    """Shrunk by an integer factor keeping each block's maximum, so hair-lines survive as whole pixels."""
    if factor == 1:
        return values
    height, width = -(-values.shape[0] // factor) * factor, -(-values.shape[1] // factor) * factor
    padded = np.zeros((height, width), dtype=values.dtype)
    padded[:values.shape[0], :values.shape[1]] = values
    rows = np.maximum.reduce([padded[i::factor] for i in range(factor)])  # rows, then columns: fewer, larger passes
    return np.maximum.reduce([rows[:, j::factor] for j in range(factor)])


def _padded(values: np.ndarray, pad: int) -> np.ndarray:
    """`values` framed by `pad` zeros on every side (np.pad's result; np.pad costs 10x this in its own Python)."""
    padded = np.zeros((values.shape[0] + 2 * pad, values.shape[1] + 2 * pad), dtype=values.dtype)
    padded[pad:pad + values.shape[0], pad:pad + values.shape[1]] = values
    return padded


def _thickened(crop: np.ndarray, mask: np.ndarray, width: float, glyph_side: int, target: float) -> np.ndarray:
    """Strokes `width` px wide (a thin brush) widened so that, once scaled to glyph_side, they are `target` px."""
    factor = max(1, -(-max(crop.shape) // (4 * glyph_side)))  # work at 2.7x to 4x the glyph: fast and still smooth
    pooled, pooled_mask = _max_pooled(crop, factor), _max_pooled(mask, factor)
    width = width / factor + (factor - 1) / factor  # pooling widens by up to one block
    longer = max(pooled.shape)
    radius = max(0.0, (target * longer - glyph_side * width) / (2 * glyph_side - 2 * target))  # the box grows too
    pad = int(np.ceil(radius)) + 1
    widened = np.maximum(_padded(pooled, pad), _brush_cover(_padded(pooled_mask, pad), radius + 0.5))
    left, top, right, bottom = _box(widened > 0)
    return widened[top:bottom, left:right]


def _brush_cover(mask: np.ndarray, reach: float) -> np.ndarray:
    """clip(reach - d, 0, 1) as float32, d each pixel's distance to the nearest True pixel of `mask` (whose frame of
    ceil(reach) pixels is False): a round brush run along the strokes, its edge anti-aliased. Short reaches (those
    of a canvas's brush) shift the mask by each offset within reach, several times faster than a distance
    transform of the whole mask, with the same values (the same float64 distances)."""
    if reach > SHIFTED_REACH:
        return np.clip(reach - ndimage.distance_transform_edt(~mask), 0.0, 1.0).astype(np.float32)
    height, width = mask.shape
    cover = np.zeros(mask.shape, dtype=np.float32)
    for squared, offsets in reversed(_offsets_within(reach)):  # far to near: nearer pixels' higher cover last
        reached = np.zeros_like(mask)
        for dy, dx in offsets:
            reached[max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] |= \
                mask[max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
        cover[reached] = min(reach - math.sqrt(squared), 1.0)
    return cover


@functools.cache
def _offsets_within(reach: float) -> tuple[tuple[int, tuple[tuple[int, int], ...]], ...]:
    """The (dy, dx) offsets closer than `reach`, grouped by their squared length, nearest first."""
    span = math.ceil(reach)
    groups: dict[int, list[tuple[int, int]]] = {}
    for dy in range(-span, span + 1):
        for dx in range(-span, span + 1):
            if math.sqrt(dy * dy + dx * dx) < reach:
                groups.setdefault(dy * dy + dx * dx, []).append((dy, dx))
    return tuple((squared, tuple(offsets)) for squared, offsets in sorted(groups.items()))


def _thinned(crop: np.ndarray, mask: np.ndarray, width: float, glyph_side: int, target: float) -> np.ndarray:
    """Strokes `width` px wide (a thick brush) narrowed so that, once scaled to glyph_side, they are THIN_TO times
    `target` px: each side gives up the excess. Where that would break a stroke or lose a piece (too narrow in
    places to give it up), the crop is left as it is."""
    wanted = THIN_TO * target * max(crop.shape) / glyph_side
    distance = ndimage.distance_transform_edt(mask)
    thinned = crop * np.clip(distance - (width - wanted) / 2 + 0.5, 0.0, 1.0).astype(np.float32)  # the fringe too
    if _pieces(thinned > STROKE_LEVEL) != _pieces(mask):
        return crop
    left, top, right, bottom = _box(thinned > 0)
    return thinned[top:bottom, left:right]


def _pieces(mask: np.ndarray) -> int:
    return ndimage.label(mask, structure=EIGHT_NEIGHBOURS)[1]


def _glyph(crop: np.ndarray, mask: np.ndarray, glyph_side: int, target: float) -> np.ndarray:
    """The ink scaled so its longer side is glyph_side (aspect kept, anti-aliased), thin strokes thickened first and
    very thick ones thinned."""
    width = _stroke_width(mask)
    scaled_width = width * glyph_side / max(crop.shape)
    if scaled_width < target:
        crop = _thickened(crop, mask, width, glyph_side, target)
    elif scaled_width > THICK_SHARE * target:
        crop = _thinned(crop, mask, width, glyph_side, target)
    scale = glyph_side / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    return np.clip(_resized(crop, size, Image.Resampling.LANCZOS), 0.0, 1.0)


def _placed_by_mass(glyph: np.ndarray, side: int) -> np.ndarray:
    """The glyph in a side x side square, shifted by whole pixels so its centre of mass is at the centre (MNIST)."""
    # ndimage.center_of_mass's very sums (so a centre on a half pixel rounds the same way), without its labelling
    # machinery: 3x faster
    rows, cols = np.ogrid[0:glyph.shape[0], 0:glyph.shape[1]]
    total = glyph.sum()
    centre_y = float((glyph * rows.astype(float)).sum() / total)
    centre_x = float((glyph * cols.astype(float)).sum() / total)
    top = min(max(round(side / 2 - centre_y), 0), side - glyph.shape[0])  # MNIST's mean is (14.0, 14.0)
    left = min(max(round(side / 2 - centre_x), 0), side - glyph.shape[1])
    canvas = np.zeros((side, side), dtype=np.float32)
    canvas[top:top + glyph.shape[0], left:left + glyph.shape[1]] = glyph
    return canvas


def _placed_centred(glyph: np.ndarray, side: int) -> np.ndarray:
    """The glyph in the middle of a side x side square (the digits' 32x32 bitmaps)."""
    canvas = np.zeros((side, side), dtype=np.float32)
    top, left = (side - glyph.shape[0]) // 2, (side - glyph.shape[1]) // 2
    canvas[top:top + glyph.shape[0], left:left + glyph.shape[1]] = glyph
    return canvas


def _mnist_pixels(crop: np.ndarray, mask: np.ndarray, fmt: InputFormat) -> np.ndarray:
    """MNIST's recipe: longer side 20 of 28, centre of mass in the middle, brightest pixel at max_value."""
    glyph_side = round(fmt.size * 20 / 28)
    canvas = _placed_by_mass(_glyph(crop, mask, glyph_side, MNIST_STROKE * glyph_side / 20), fmt.size)
    return np.rint(canvas * (fmt.max_value / max(float(canvas.max()), 1e-6))).astype(np.uint8)


def _digits_pixels(crop: np.ndarray, mask: np.ndarray, fmt: InputFormat) -> np.ndarray:
    """scikit-learn's recipe: a 32x32 bitmap, each 4x4 block's mean ink as 0..16, the fullest block at 16."""
    bitmap_side = fmt.size * 4
    bitmap = _placed_centred(_glyph(crop, mask, bitmap_side, DIGITS_STROKE * bitmap_side / 32), bitmap_side)
    blocks = bitmap.reshape(fmt.size, 4, fmt.size, 4).mean(axis=(1, 3))
    return np.rint(blocks * (fmt.max_value / max(float(blocks.max()), 1e-6))).astype(np.uint8)  # as 98% of theirs


def _blank(fmt: InputFormat, refusal: str | None = None) -> Preprocessed:
    """Nothing to read (no ink, or ink refused for `refusal`): all-zero pixels the caller must not predict."""
    return Preprocessed(np.zeros((fmt.size, fmt.size), dtype=np.uint8), True, None, refusal)


def _from_ink(ink: np.ndarray, mask: np.ndarray, support: np.ndarray, fmt: InputFormat,
              to_source: tuple[float, float], offset: tuple[int, int] = (0, 0)) -> Preprocessed:
    """Preprocess the ink under `support` alone (strokes in `mask`). `ink` lies at `offset` in the working image;
    `to_source` (x, y) scales working pixels to the source's, for the box."""
    left, top, right, bottom = _box(support)
    crop = ink[top:bottom, left:right] * support[top:bottom, left:right]  # zero outside: np.where's values, 2x faster
    pixels = (_mnist_pixels if fmt.style == "mnist" else _digits_pixels)(crop, mask[top:bottom, left:right], fmt)
    (x, y), (scale_x, scale_y) = offset, to_source
    box = (int((left + x) * scale_x), int((top + y) * scale_y),
           int(np.ceil((right + x) * scale_x - 1e-6)), int(np.ceil((bottom + y) * scale_y - 1e-6)))
    return Preprocessed(pixels, False, box)


def _scale_to_source(image: Image.Image | np.ndarray, ink: _Ink) -> tuple[float, float]:
    """(x, y) factors from working pixels to the source's."""
    width, height = _source_size(image)
    return width / ink.shape[1], height / ink.shape[0]


def _thin_bands(lines: np.ndarray, thickest: int) -> np.ndarray:
    """The runs of True in `lines` no longer than `thickest`."""
    labels, count = ndimage.label(lines)
    lengths = np.bincount(labels)
    thin = lengths <= thickest
    thin[0] = False
    return thin[labels]


def _spanning(present: np.ndarray) -> np.ndarray:
    """Per row: whether ink covers RULE_SPAN of it. Only rows with ink near both ends can, so the rest are not
    counted (a drawing in the middle of the canvas is passed over in microseconds)."""
    width = present.shape[1]
    end = int(np.ceil((1 - RULE_SPAN) * width)) + 1
    candidates = np.flatnonzero(present[:, :end].any(axis=1) & present[:, width - end:].any(axis=1))
    spanning = np.zeros(present.shape[0], dtype=bool)
    if candidates.size:
        spanning[candidates] = np.count_nonzero(present[candidates], axis=1) >= RULE_SPAN * width
    return spanning


def _without_rules(ink: _Ink) -> _Ink:
    """The ink without the ruled lines, squares or margin of the paper it was written on: hair-lines of ink running
    across nearly the whole picture. A digit's own stroke from edge to edge (a 1 drawn full height on the canvas) is
    thicker, and removing lines that held most of the strokes would remove the drawing, so neither happens."""
    if min(ink.shape) < 4 * COARSEST_SHAPE:  # small pictures are crops of one digit: no paper round it
        return ink
    if ink.values.shape[0] < RULE_SPAN * ink.shape[0] and ink.values.shape[1] < RULE_SPAN * ink.shape[1]:
        return ink  # no line of it runs across the picture
    whole = ink.whole()
    present = whole > 0
    thickest = max(2, round(RULE_THICKNESS * ink.side))
    rows, cols = _spanning(present), _spanning(present.T)
    if not (rows.any() or cols.any()):
        return ink
    rows, cols = _thin_bands(rows, thickest), _thin_bands(cols, thickest)
    kept = whole.copy()
    kept[rows] = 0.0
    kept[:, cols] = 0.0
    strokes = np.count_nonzero(whole > STROKE_LEVEL)
    return _in_box(kept) if np.count_nonzero(kept > STROKE_LEVEL) >= RULE_KEEPS * strokes else ink


def _without_frame(ink: _Ink) -> _Ink:
    """The ink without a piece that touches all four sides of the picture round the rest (the desk round a sheet of
    paper, a dark surround), unless too little ink would be left for a digit (a 0 drawn to the canvas's edges)."""
    values = ink.values
    if min(ink.shape) < 4 * COARSEST_SHAPE or values.shape != ink.shape \
            or not all(side.any() for side in (values[0], values[-1], values[:, 0], values[:, -1])):
        return ink  # nothing touches all four sides: no labelling (a drawing in the canvas's middle)
    regions, count = ndimage.label(values > 0, structure=EIGHT_NEIGHBOURS)
    if count < 2:
        return ink
    sides = [set(np.unique(edge)) for edge in (regions[0], regions[-1], regions[:, 0], regions[:, -1])]
    framing = set.intersection(*sides) - {0}
    if not framing:
        return ink
    frame = np.isin(regions, list(framing))
    kept = np.where(frame, 0.0, values).astype(np.float32)
    inside = kept > STROKE_LEVEL
    if _is_speck(inside, ink.side) or _stroke_width(frame) < FRAME_WIDTH * _stroke_width(inside):
        return ink  # a digit drawn to the edges (its stroke no wider than the rest's), not a desk round a sheet
    return _in_box(kept)


def _without_box(ink: _Ink) -> _Ink:
    """The ink without a box drawn round it (an answer box, a form's square): lines spanning its whole extent on all
    four sides. Unless too little would be left (a 0 drawn square is such lines alone)."""
    present = ink.values > 0
    if not present.any():
        return ink
    left, top, right, bottom = _box(present)
    inside = present[top:bottom, left:right]
    if min(inside.shape) < COARSEST_SHAPE:
        return ink
    near = [max(2, round(BOX_SIDE * side)) for side in inside.shape]
    sides = (inside[:near[0]], inside[-near[0]:], inside.T[:near[1]], inside.T[-near[1]:])
    if not all(_spanning(side).any() for side in sides):  # each side's rows alone first: most ink has no box
        return ink
    rows, cols = _spanning(inside), _spanning(inside.T)
    if not (rows[near[0]:-near[0]].mean() <= 0.5 and cols[near[1]:-near[1]].mean() <= 0.5):  # a 1 spans every row
        return ink
    rows[near[0]:-near[0]] = False  # only the box's own sides: a 7's bar or a 4's crossbar inside it stays
    cols[near[1]:-near[1]] = False
    kept = ink.values.copy()
    kept[top:bottom, left:right][rows] = 0.0
    kept[top:bottom, left:right][:, cols] = 0.0
    return ink if _is_speck(kept > STROKE_LEVEL, ink.side) else _Ink(kept, ink.left, ink.top, ink.shape)


def _digit_ink(image: Image.Image | np.ndarray) -> _Ink:
    """The picture's ink (see ink_map) at working resolution, without the paper's ruled lines, a desk round it or a
    box drawn round the digit."""
    return _without_box(_without_frame(_without_rules(_working_ink(image))))


def preprocess(image: Image.Image | np.ndarray, fmt: InputFormat = MNIST_FORMAT) -> Preprocessed:
    """Turn a drawing, scan or photo into the model's input, or report it blank (with the reason when it has ink
    that is no digit)."""
    ink = _digit_ink(image)
    present = ink.values > 0
    if not present.any():
        return _blank(fmt)
    left, top, right, bottom = _box(present)  # all later work only where there is ink at all
    values = ink.values[top:bottom, left:right]
    mask, support = _single_digit(values)
    if not mask.any():
        return _blank(fmt)
    refusal = why_not_a_digit(mask, ink.side)
    if refusal is not None:
        return _blank(fmt, refusal)
    return _from_ink(values, mask, support, fmt, _scale_to_source(image, ink), (ink.left + left, ink.top + top))


# ---- several digits in a row -------------------------------------------------------------------------------------

def _column_groups(labels: np.ndarray, count: int) -> list[tuple[list[int], int, int]]:
    """Stroke labels grouped into digits, left to right, with each group's column span.

    Pieces that overlap a lot horizontally (the two strokes of a 4 or a 5) are one digit.
    """
    spans = [(objects[1].start, objects[1].stop, label)
             for label, objects in enumerate(ndimage.find_objects(labels, count), start=1) if objects is not None]
    groups: list[tuple[list[int], int, int]] = []
    for start, stop, label in sorted(spans):
        if groups:
            members, group_start, group_stop = groups[-1]
            overlap = min(stop, group_stop) - max(start, group_start)
            if overlap > 0.5 * min(stop - start, group_stop - group_start):
                groups[-1] = (members + [label], group_start, max(group_stop, stop))
                continue
        groups.append(([label], start, stop))
    return groups


def _column_ranges(groups: list[tuple[list[int], int, int]], width: int) -> list[tuple[int, int]]:
    """Columns each digit may take its fringe from: the image cut halfway between neighbouring digits."""
    cuts = [(left[2] + right[1]) // 2 for left, right in pairwise(groups)]
    return list(zip([0] + cuts, cuts + [width]))


def split_digits(image: Image.Image | np.ndarray, fmt: InputFormat = MNIST_FORMAT) -> list[Preprocessed]:
    """Several digits written in a row: one Preprocessed per digit, left to right (empty when blank). Marks that are
    no digit by themselves (a decimal point, a minus sign, a dot or dash anywhere) are left out."""
    ink = _digit_ink(image)
    labels, count = _strokes(ink.values)
    if _is_speck(labels > 0, ink.side):
        return []
    groups = _column_groups(labels, count)
    regions, region_count = ndimage.label(ink.values > 0, structure=EIGHT_NEIGHBOURS)
    digits, to_source, offset = [], _scale_to_source(image, ink), (ink.left, ink.top)
    for (members, _, _), (first, last) in zip(groups, _column_ranges(groups, ink.values.shape[1])):
        in_group = np.zeros(count + 1, dtype=bool)
        in_group[members] = True
        mask = in_group[labels]
        if _shape_refusal(mask, ink.side) is not None:
            continue
        support = _touching(regions, region_count, mask)
        support[:, :first], support[:, last:] = False, False
        digits.append(_from_ink(ink.values, mask, support | mask, fmt, to_source, offset))
    return digits
