"""Decode untrusted image bytes safely: known formats only, size checked before decoding, one clear error."""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_IMAGE_BYTES = 8 * 1024 * 1024
MAX_IMAGE_PIXELS = 25_000_000  # declared width x height, checked before decoding
MIN_IMAGE_SIDE = 8
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")  # never EPS: PIL would run Ghostscript on it
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


class ImageError(ValueError):
    """An input that cannot be used as an image; str() is one clear sentence for the user."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image (mode L, RGB or RGBA) and notices about what was done to it."""

    image: Image.Image
    notices: tuple[str, ...]


def _read_bytes(source: bytes | str | os.PathLike, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{label} does not exist or is not a file.")
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise ImageError(f"{label} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB.")
        data = path.read_bytes()
    if not data:
        raise ImageError(f"{label} is empty.")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"{label} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB.")
    return data


def _open(data: bytes, label: str) -> Image.Image:
    """Identify the format from the header without decoding pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label} declares an enormous size (a decompression bomb?); it was not decoded.") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image this app reads (use {', '.join(ALLOWED_FORMATS)}).") from None
    except Exception as error:  # PIL raises many kinds on hostile headers
        raise ImageError(f"{label} is damaged or truncated and could not be read ({type(error).__name__}).") from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"{label} declares {width}x{height} pixels, more than this app decodes "
                         f"({MAX_IMAGE_PIXELS:,}); it was not decoded.")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageError(f"{label} is too small ({width}x{height}); a digit needs at least "
                         f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels.")
    return image


def _decode(image: Image.Image, label: str) -> tuple[Image.Image, list[str]]:
    notices = []
    if getattr(image, "n_frames", 1) > 1:
        notices.append(f"{label} is animated: only its first frame is used.")
    try:
        image.seek(0)
        image.load()
        image = ImageOps.exif_transpose(image) or image
    except Exception as error:  # truncated or corrupt data
        raise ImageError(f"{label} is damaged or truncated and could not be decoded ({type(error).__name__}).") from None
    return image, notices


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale scaled to 8 bits by its bit depth, never clipped."""
    values = np.asarray(image, dtype=np.float64)
    depth_max = 65535.0 if image.mode.startswith("I;16") else max(65535.0, float(values.max()))
    return Image.fromarray(np.clip(np.rint(values * 255.0 / depth_max), 0, 255).astype(np.uint8), "L")


def _normal_mode(image: Image.Image) -> Image.Image:
    """L, RGB or RGBA: palette and grey+alpha keep their transparency, CMYK becomes RGB."""
    if image.mode in SIXTEEN_BIT_MODES:
        return _eight_bit(image)
    transparent = "A" in image.getbands() or "transparency" in image.info
    if image.mode in ("L", "RGB", "RGBA") and not (transparent and image.mode != "RGBA"):
        return image
    return image.convert("RGBA" if transparent else ("L" if image.mode == "1" else "RGB"))


def load_image(source: bytes | str | os.PathLike, *, name: str = "") -> LoadedImage:
    """Decode an untrusted file or bytes into a PIL image, or raise ImageError with one sentence."""
    label = name or (Path(source).name if not isinstance(source, (bytes, bytearray)) else "The file")
    image = _open(_read_bytes(source, label), label)
    decoded, notices = _decode(image, label)
    return LoadedImage(_normal_mode(decoded), tuple(notices))
