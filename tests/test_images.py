import io
import struct
import subprocess
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from core.images import ImageError, load_image
from core.preprocess import ink_map


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def digit(mode: str = "L", size: int = 120) -> Image.Image:
    image = Image.new("L", (size, size), 255)
    ImageDraw.Draw(image).line([(30, 25), (90, 25), (55, 100)], fill=0, width=10)
    return image.convert(mode)


def png_bomb(side: int = 30000) -> bytes:
    """A valid PNG header declaring side x side pixels, with almost no data: tiny on disk."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("data, words", [
    (b"", "empty"), (b"this is text renamed to png", "not an image"),
    (encoded(Image.new("L", (1, 1)), "PNG"), "too small"),
    (encoded(digit(), "PNG")[:300], "damaged or truncated"), (encoded(digit("RGB"), "JPEG")[:400], "damaged or truncated"),
    (encoded(digit(), "TIFF"), "not an image"),
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\nshowpage\n", "not an image"),
    (png_bomb(), "not decoded"),
], ids=["empty", "text", "1x1", "truncated-png", "truncated-jpeg", "tiff", "eps", "bomb"])
def test_bad_files_get_one_clear_message(data, words):
    with pytest.raises(ImageError, match=words) as caught:
        load_image(data, name="upload.png")
    assert "\n" not in str(caught.value)


def test_eps_never_reaches_ghostscript(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a subprocess was started")
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    with pytest.raises(ImageError):
        load_image(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", name="x.eps")


def test_oversized_bytes_are_refused_before_decoding():
    with pytest.raises(ImageError, match="larger than 8 MB"):
        load_image(b"\x89PNG" + b"\0" * (9 * 1024 * 1024))


def test_animated_gif_uses_the_first_frame_with_a_notice():
    frames = [digit("P"), Image.new("P", (120, 120), 0)]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    loaded = load_image(data, name="anim.gif")
    assert loaded.notices and "first frame" in loaded.notices[0]
    assert np.allclose(ink_map(loaded.image), ink_map(digit()), atol=0.05)


def test_palette_and_grey_alpha_pngs_give_the_flattened_ink():
    reference = ink_map(digit())
    for variant in (digit("P"), digit("LA")):
        assert np.allclose(ink_map(load_image(encoded(variant, "PNG")).image), reference, atol=0.05)


def test_sixteen_bit_png_is_scaled_not_clipped():
    values = (np.asarray(digit(), dtype=np.uint16) * 257)  # full 16-bit range
    loaded = load_image(encoded(Image.fromarray(values), "PNG")).image
    assert loaded.mode == "L" and np.asarray(loaded).max() == 255 and np.asarray(loaded).min() == 0
    dim = (np.asarray(digit(), dtype=np.uint16) * 16)  # max 4080: keeps its relative contrast
    dim_loaded = np.asarray(load_image(encoded(Image.fromarray(dim), "PNG")).image)
    assert 10 <= dim_loaded.max() <= 20 and len(np.unique(dim_loaded)) > 1


def test_cmyk_jpeg_becomes_rgb():
    loaded = load_image(encoded(digit("CMYK"), "JPEG")).image
    assert loaded.mode == "RGB" and ink_map(loaded).max() > 0.9


def test_exif_rotation_is_applied():
    upright = Image.new("L", (160, 80), 255)
    ImageDraw.Draw(upright).rectangle([10, 10, 40, 70], fill=0)  # ink on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": stored sideways
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    loaded = load_image(encoded(stored.convert("RGB"), "JPEG", exif=exif.tobytes())).image
    assert loaded.size == (160, 80)
