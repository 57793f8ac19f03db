"""Decode untrusted image bytes safely: known formats only, size checked before decoding, one clear error."""

from __future__ import annotations

import io
import math
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_IMAGE_BYTES: int = 8 * 1024 * 1024
MAX_IMAGE_PIXELS: int = 25_000_000  # declared width x height, checked before decoding
MIN_IMAGE_SIDE: int = 8
ALLOWED_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "BMP", "GIF", "WEBP")  # never EPS: PIL would run Ghostscript on it
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_GREYSCALE_MODES = ("1", "L", "LA", "La") + _SIXTEEN_BIT_MODES
_ACCEPTED = ", ".join(ALLOWED_FORMATS)
MISSING_GREY = 128  # a baseline JPEG whose data ends early decodes its missing blocks as this level in every channel
MCU_ROWS = 16  # the most rows one line of a JPEG's blocks spans (2x vertical chroma subsampling)
BLOCK_SIDE = 8  # px: a JPEG block's side, decoded at full size
GREY_PICTURE_SHARE = 0.05  # of the rows above a grey tail: exactly MISSING_GREY in more is a grey picture, not a cut
JPEG_FORMATS = ("JPEG", "MPO")  # MPO: a phone's JPEG with more pictures after the first, which PIL names apart
_WARNINGS_LOCK = threading.Lock()  # catch_warnings swaps process-wide state; Streamlit runs sessions in threads


class ImageError(ValueError):
    """An input that cannot be used as an image; str(err) is one clear sentence for the user."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image and what was done to it on the way."""

    image: Image.Image  # mode "RGBA" if the source had any transparency, else "RGB" or "L"
    notices: tuple[str, ...]  # e.g. ("anim.gif is animated: only its first frame is used.",)


class _EndWatchingStream(io.BytesIO):
    """The file's bytes, remembering whether a decoder asked for more after the end (a truncated file)."""

    asked_past_end = False

    def read(self, size: int | None = -1) -> bytes:
        """Read as BytesIO does, noting a request for bytes that are not there."""
        chunk = super().read(size)
        if not chunk and size != 0:
            self.asked_past_end = True
        return chunk


def _read_file(path: Path, label: str) -> bytes:
    """At most MAX_IMAGE_BYTES + 1 bytes of a regular file: enough to tell that it is too big."""
    try:
        if path.is_file():  # also keeps FIFOs and devices such as /dev/zero out
            with path.open("rb") as file:
                return file.read(MAX_IMAGE_BYTES + 1)
    except (OSError, ValueError) as error:  # permissions, NUL bytes in the name ...
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise ImageError(f"{label} could not be read ({reason}).") from None
    raise ImageError(f"{label} does not exist or is not a file.")


def _read_bytes(source: bytes | bytearray | memoryview | str | os.PathLike, label: str) -> bytes:
    """The raw bytes, refusing empty and oversized input before anything parses them."""
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) else _read_file(Path(source), label)
    if not data:
        raise ImageError(f"{label} is empty.")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"{label} is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB.")
    return data


def _open_header(stream: _EndWatchingStream, label: str) -> Image.Image:
    """Identify the format and size from the header alone; nothing is decoded yet."""
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" and the like: PIL's words on stderr, not ours
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(stream, formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{label} declares an enormous size (a decompression bomb?); it was not decoded.") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image this app can read (accepted formats: {_ACCEPTED}).") from None
    except Exception:  # hostile headers raise many kinds
        raise ImageError(f"{label} is damaged or truncated: its header could not be read.") from None


def _check_size(image: Image.Image, label: str) -> None:
    """Refuse decompression bombs and images too small to hold a digit, before any pixel is decoded."""
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"{label} declares {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS:,} "
                         "this app decodes; it was not decoded.")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageError(f"{label} is too small ({width}x{height} pixels); a digit needs at least "
                         f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}.")


def _reduce_while_decoding(image: Image.Image, longer_side: int | None) -> None:
    """Ask a JPEG's decoder for a copy scaled by 1/2, 1/4 or 1/8 in its DCT (libjpeg's scaling, much less work than
    decoding every pixel) whose longer side is still at least `longer_side`; other formats decode whole."""
    width, height = image.size
    if longer_side is None or image.format not in JPEG_FORMATS or max(width, height) < 2 * longer_side:
        return
    scale = longer_side / max(width, height)
    image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))  # both sides at least these


def _undecodable(label: str) -> str:
    """The one sentence for a file whose header reads but whose pixels do not."""
    return f"{label} is damaged or truncated: its pixels could not be decoded."


def _decode_first_frame(image: Image.Image, stream: _EndWatchingStream, label: str,
                        longer_side: int | None = None) -> tuple[Image.Image, list[str]]:
    """Decode frame 0 (a big JPEG reduced while decoding when `longer_side` is given) and fail on truncation
    whatever ImageFile.LOAD_TRUNCATED_IMAGES says."""
    damaged = _undecodable(label)
    try:
        animated = getattr(image, "is_animated", False) and image.format != "MPO"  # an MPO's later pictures are a
        # phone's extras (a second view, a depth or HDR map), not frames
        notices = [f"{label} is animated: only its first frame is used."] if animated else []
        image.seek(0)
        _reduce_while_decoding(image, longer_side)
        stream.asked_past_end = False
        image.load()
    except Exception:  # truncated data, bad checksums, bombs hidden in later GIF frames ...
        raise ImageError(damaged) from None
    if stream.asked_past_end:  # with LOAD_TRUNCATED_IMAGES set elsewhere, PIL would pad silently
        raise ImageError(damaged)
    return image, notices


def _grey_tail_rows(pixels: np.ndarray) -> int:
    """How many rows at the bottom of (H, W, C) hold the missing data of a JPEG cut short: its blocks from the cut
    on, in reading order, decode as MISSING_GREY. So below the line of blocks where the data stopped every row is
    grey, and in that line each row ends in grey blocks. Two rows more are cut: chroma upsampling blends the rows
    either side of the cut. 0 when there is no such tail, when the whole picture is that grey, or when much of the
    rest is too (a picture on a mid-grey background, whose flat blocks decode to exactly that level)."""
    missing = (pixels == MISSING_GREY).all(axis=2)
    whole = _leading_true(missing.all(axis=1)[::-1])
    if whole == len(missing):  # all of it: a grey picture (or one cut before its first block: read as blank)
        return 0
    above = missing[:len(missing) - whole]
    partial = min(_leading_true(above[:, -BLOCK_SIDE:].all(axis=1)[::-1]), MCU_ROWS)  # rows ending in grey blocks
    rest = above[:len(above) - partial]
    if whole + partial == 0 or (rest.size and np.count_nonzero(rest) > GREY_PICTURE_SHARE * rest.size):
        return 0
    return min(len(missing), whole + partial + 2)


def _leading_true(flags: np.ndarray) -> int:
    """How many of `flags` are True before the first False."""
    return len(flags) if flags.all() else int(np.argmin(flags))


def _ends_in_grey(image: Image.Image) -> bool:
    """Whether the last BLOCK_SIDE pixels of the bottom row are MISSING_GREY, read without converting the picture."""
    corner = np.asarray(image.crop((image.width - BLOCK_SIDE, image.height - 1, image.width, image.height)))
    return bool((corner == MISSING_GREY).all())


def _without_missing_end(image: Image.Image, label: str, notices: list[str], stored_height: int) -> Image.Image:
    """A baseline JPEG cut short and closed again (its end-of-image marker appended) decodes without an error, its
    missing blocks flat grey: those rows are cut off, with a notice, or the file refused when too little is left
    (counted in the file's own rows, `stored_height`, so a copy reduced while decoding is judged as the whole)."""
    if image.format not in JPEG_FORMATS or image.mode not in ("L", "RGB") or not _ends_in_grey(image):
        return image  # most pictures: the corner alone is read
    pixels = np.asarray(image)
    tail = _grey_tail_rows(pixels[:, :, None] if pixels.ndim == 2 else pixels)
    if tail == 0:
        return image
    kept, to_stored = image.height - tail, stored_height / image.height
    if kept * to_stored < MIN_IMAGE_SIDE:
        raise ImageError(_undecodable(label))
    notices.append(f"{label} seems cut short: its last {round(tail * to_stored)} rows as stored, flat grey where its "
                   "data ended, were left out.")
    return image.crop((0, 0, image.width, kept))


def _upright(image: Image.Image, label: str, notices: list[str]) -> Image.Image:
    """Apply the EXIF orientation so phone photos stand upright."""
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():  # PIL warns of a corrupt EXIF block on stderr, in its own
            warnings.simplefilter("ignore")  # words and with its file's path
            return ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block should not cost the user their picture
        notices.append(f"{label} has an unreadable EXIF orientation; it is used as stored.")
        return image


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale scaled to 8 bits by its bit depth (65535 -> 255), never clipped."""
    values = np.asarray(image)  # whole numbers (16 or 32 bits): scaled in integers, one wide copy, not three floats
    bits = 16 if image.mode.startswith("I;16") else max(16, int(values.max()).bit_length())  # "I" is 32-bit
    top = 2 ** bits - 1
    wide = np.uint32 if bits <= 24 else np.uint64  # room for x 255
    scaled = (np.clip(values, 0, None) if values.dtype.kind == "i" else values).astype(wide)
    scaled *= 255
    scaled += top // 2  # rounds to the nearest level, as np.rint of the float scaling did
    scaled //= top
    grey = scaled.astype(np.uint8)
    del scaled
    key = image.info.get("transparency")  # a tRNS grey level marks transparent pixels
    if isinstance(key, int) and bool((values == key).any()):
        alpha = np.where(values == key, 0, 255).astype(np.uint8)
        return Image.fromarray(np.dstack([grey, grey, grey, alpha]), "RGBA")
    return Image.fromarray(grey, "L")


def _normal_mode(image: Image.Image) -> Image.Image:
    """RGBA when some pixel is transparent, else L for greyscale sources and RGB for the rest (palette, CMYK ...)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return _eight_bit(image)
    if "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:  # declared but unused transparency is not transparency
            return rgba
    target = "L" if image.mode in _GREYSCALE_MODES else "RGB"
    return image if image.mode == target else image.convert(target)


def _conversion_notice(mode: str, label: str) -> str | None:
    """What the user should know about a conversion that changes the file's colours or depth."""
    if mode in _SIXTEEN_BIT_MODES:
        return f"{label} has more than 8 bits per pixel: it was scaled to 8 bits, keeping its contrast."
    if mode == "CMYK":
        return f"{label} is a CMYK (print) image: its colours were converted to RGB."
    return None


def load_image(source: bytes | str | os.PathLike, *, name: str = "", longer_side: int | None = None) -> LoadedImage:
    """Decode an untrusted file or bytes into a PIL image, or raise ImageError with one sentence.

    With `longer_side`, a JPEG at least twice that size may come back smaller (down to 1/8, its longer side never
    below `longer_side`): for callers that shrink it anyway, such as preprocessing (core.preprocess.WORKING_SIDE).
    """
    is_bytes = isinstance(source, (bytes, bytearray, memoryview))
    label = name or ("The file" if is_bytes else Path(source).name)
    stream = _EndWatchingStream(_read_bytes(source, label))
    image = _open_header(stream, label)
    _check_size(image, label)
    stored_height = image.height  # before a JPEG is reduced while decoding
    decoded, notices = _decode_first_frame(image, stream, label, longer_side)
    decoded = _without_missing_end(decoded, label, notices, stored_height)
    try:
        normal = _normal_mode(_upright(decoded, label, notices))
    except Exception:  # an exotic pixel layout PIL decodes but cannot convert
        raise ImageError(f"{label} uses a pixel format this app cannot convert.") from None
    conversion = _conversion_notice(decoded.mode, label)
    return LoadedImage(normal, tuple(notices) + ((conversion,) if conversion else ()))
