import io
import json
import random
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageDraw, ImageFile, features

from core.images import MAX_IMAGE_PIXELS, ImageError, load_image
from core.preprocess import ink_map

REPO = Path(__file__).resolve().parents[1]


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def digit(mode: str = "L", size: int = 120) -> Image.Image:
    """A black 7 on white."""
    image = Image.new("L", (size, size), 255)
    ImageDraw.Draw(image).line([(30, 25), (90, 25), (55, 100)], fill=0, width=10)
    return image.convert(mode)


def ink_on_transparent() -> Image.Image:
    """A black 7 on a fully transparent background, hard-edged so every format stores it exactly."""
    image = Image.new("RGBA", (120, 120), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(30, 25), (90, 25), (55, 100)], fill=(0, 0, 0, 255), width=10)
    return image


def png_declaring(width: int, height: int, *, rgba: bool = False, with_pixels: bool = True) -> bytes:
    """A PNG whose header declares width x height, its pixels all zero (or absent): tiny on disk, huge decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if rgba else 0, 0, 0, 0)
    compressor, row = zlib.compressobj(1), b"\0" * (width * (4 if rgba else 1) + 1)
    pixels = b"".join(compressor.compress(row) for _ in range(height if with_pixels else 0)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def refusal(data: bytes, name: str = "upload.png") -> str:
    with pytest.raises(ImageError) as caught:
        load_image(data, name=name)
    message = str(caught.value)
    assert "\n" not in message and message.endswith(".")  # one sentence for the user
    return message


def test_empty_input_is_refused():
    assert refusal(b"") == "upload.png is empty."
    assert "empty" in refusal(bytearray())


def test_text_renamed_to_png_is_not_an_image():
    message = refusal(b"Dear diary, today I renamed this file to digit.png", name="digit.png")
    assert message.startswith("digit.png is not an image") and "PNG, JPEG, BMP, GIF, WEBP" in message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("load_truncated", [False, True], ids=["strict-pil", "LOAD_TRUNCATED_IMAGES"])
def test_truncated_files_are_refused_whatever_pil_is_told(fmt, load_truncated, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)  # as some other library might set it
    data = encoded(digit("RGB"), fmt)
    for cut in (len(data) // 2, len(data) - 30):
        assert "damaged or truncated" in refusal(data[:cut])
    assert load_image(data).image.size == (120, 120)


def noisy_photo(mode: str) -> Image.Image:
    """The 7 with camera-like noise, so that no row of it is one flat level."""
    noise = np.random.default_rng(3).normal(0, 12, (120, 120, 3))
    return Image.fromarray(np.clip(np.asarray(digit("RGB"), float) + noise, 0, 255).astype(np.uint8)).convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("share", [0.3, 0.6, 0.9, 0.98])
def test_a_jpeg_cut_short_and_closed_again_loses_its_grey_rows_with_a_notice(mode, share):
    data = encoded(noisy_photo(mode), "JPEG", quality=90)
    whole = np.asarray(load_image(data).image)
    loaded = load_image(data[:int(len(data) * share)] + b"\xff\xd9", name="photo.jpg")  # the end marker appended
    kept = np.asarray(loaded.image)  # PIL decodes that without a word: the missing blocks flat grey
    assert 8 <= kept.shape[0] < 120 and kept.shape[1] == 120
    assert np.array_equal(kept, whole[:kept.shape[0]])  # what was decoded, without a row of the grey
    assert len(loaded.notices) == 1 and loaded.notices[0].startswith("photo.jpg seems cut short: its last")
    assert load_image(data).notices == ()  # the whole file: nothing cut


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("size", [120, 28])
def test_a_jpeg_on_the_grey_a_cut_decodes_to_is_kept_whole(mode, size):
    image = Image.new("L", (size, size), 128)  # mid-grey paper: its flat blocks decode to exactly 128, as missing ones
    ImageDraw.Draw(image).line([(size // 4, size // 5), (size * 3 // 4, size // 5), (size // 2, size - 3)], fill=0,
                               width=max(2, size // 12))
    for picture in (image, Image.new("L", (size, size), 128)):  # a digit on grey, and grey alone
        loaded = load_image(encoded(picture.convert(mode), "JPEG", quality=95))
        assert loaded.image.size == (size, size) and loaded.notices == ()


def test_an_mpo_photo_cut_short_is_read_as_a_jpeg_is():
    first, second = noisy_photo("RGB"), noisy_photo("L").convert("RGB")
    data = encoded(first, "MPO", save_all=True, append_images=[second], quality=90)  # as phones save some photos
    assert Image.open(io.BytesIO(data)).format == "MPO"
    loaded = load_image(data[:int(len(data) * 0.3)] + b"\xff\xd9", name="phone.jpg")
    assert loaded.image.height < 120 and len(loaded.notices) == 1  # its second picture is no animation's frame
    assert loaded.notices[0].startswith("phone.jpg seems cut short")


def test_a_big_jpeg_cut_short_is_judged_alike_whole_or_reduced_while_decoding():
    big = noisy_photo("RGB").resize((2000, 1500))
    data = encoded(big, "JPEG", quality=90)
    cut = data[:int(len(data) * 0.03)] + b"\xff\xd9"  # a few block lines left: 1/8 of them is under 8 rows
    whole, reduced = load_image(cut), load_image(cut, longer_side=200)
    assert reduced.image.width < whole.image.width  # decoded at 1/8 of its size
    assert whole.notices and reduced.notices and 8 <= whole.image.height < 1500
    assert abs(reduced.image.height * 8 - whole.image.height) <= 24  # the same share kept, not refused when reduced
    said = [int(notice.split("its last ")[1].split()[0]) for notice in (whole.notices[0], reduced.notices[0])]
    assert abs(said[0] - said[1]) <= 24  # both count the file's own rows


def test_a_jpeg_cut_short_with_too_little_left_is_refused():
    data = encoded(noisy_photo("RGB"), "JPEG", quality=90)
    header = data.index(b"\xff\xda")  # the start of the pixels' data
    assert "damaged or truncated" in refusal(data[:header + 40] + b"\xff\xd9")


@pytest.mark.parametrize("size", [(1, 1), (7, 100), (100, 7)])
def test_images_smaller_than_eight_pixels_a_side_are_too_small(size):
    message = refusal(encoded(Image.new("L", size, 255), "PNG"), name="dot.png")
    assert message.startswith("dot.png is too small") and f"{size[0]}x{size[1]}" in message
    assert load_image(encoded(Image.new("L", (8, 8), 255), "PNG")).image.size == (8, 8)


def test_tiff_is_refused_naming_the_accepted_formats():
    message = refusal(encoded(digit(), "TIFF"), name="scan.tif")
    assert message.startswith("scan.tif is not an image") and "accepted formats: PNG, JPEG, BMP, GIF, WEBP" in message


def test_eps_is_refused_at_format_detection_and_never_reaches_ghostscript(monkeypatch):
    started, parsed = [], []

    def no_subprocess(*args, **kwargs):
        started.append(args)
        raise OSError("no subprocess in this test")

    real_open = EpsImagePlugin.EpsImageFile._open
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # were EPS decoded, PIL would now look for Ghostscript
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: parsed.append(1) or real_open(self))
    eps = encoded(digit(), "EPS")
    assert eps.startswith(b"%!PS-Adobe")
    assert "not an image" in refusal(eps, name="drawing.eps")
    assert parsed == [] and started == []


def test_files_over_eight_megabytes_are_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("parsed an oversized file"))
    huge = b"\x89PNG\r\n\x1a\n" + b"\0" * (8 * 1024 * 1024)
    assert "larger than 8 MB" in refusal(huge)
    path = tmp_path / "huge.png"
    path.write_bytes(huge)
    with pytest.raises(ImageError, match="huge.png is larger than 8 MB"):
        load_image(path)


@pytest.mark.parametrize("bomb", [
    png_declaring(5001, 5000),  # just over MAX_IMAGE_PIXELS, far under PIL's own limit: our check
    png_declaring(10_000, 10_000, with_pixels=False),  # PIL's DecompressionBombWarning, turned into an error
    png_declaring(30_000, 30_000, with_pixels=False),  # PIL's DecompressionBombError
], ids=["over-our-limit", "pil-warning", "pil-error"])
def test_decompression_bombs_are_refused_before_decoding(bomb, monkeypatch):
    assert len(bomb) < 200_000
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("decoded a bomb"))
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        filters_before = list(warnings.filters)
        assert "was not decoded" in refusal(bomb, name="bomb.png")
        assert warnings.filters == filters_before  # PIL's warning was caught locally: no filter leaks to other code
    assert not [w for w in escaped if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_bomb_over_the_pixel_limit_costs_no_memory(tmp_path):
    pytest.importorskip("resource")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(5001, 5000, rgba=True))  # 100 MB of RGBA once decoded, ~0.4 MB on disk
    assert 5001 * 5000 > MAX_IMAGE_PIXELS and bomb.stat().st_size < 1_000_000
    script = f"""
import json, resource, sys
sys.path.insert(0, {str(REPO)!r})
from core.images import ImageError, load_image
data = open({str(bomb)!r}, "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    outcome = "decoded " + str(load_image(data).image.size)
except ImageError as error:
    outcome = str(error)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"outcome": outcome, "peak_growth_kb": after - before}}))
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    result = json.loads(run.stdout)
    assert "was not decoded" in result["outcome"]
    assert result["peak_growth_kb"] < 20_000  # decoding would have added about 100,000 kB


def animation(fmt: str) -> bytes:
    frames = [digit("RGB"), Image.new("RGB", (120, 120), "white")]
    return encoded(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animations_give_their_first_frame_and_say_so(fmt):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("this PIL has no WebP support")
    loaded = load_image(animation(fmt), name=f"anim.{fmt.lower()}")
    assert loaded.notices == (f"anim.{fmt.lower()} is animated: only its first frame is used.",)
    assert np.abs(ink_map(loaded.image) - ink_map(digit())).max() < 0.2  # lossy WebP: close, not equal
    assert load_image(encoded(digit("RGB"), fmt)).notices == ()


def test_palette_png_with_transparency_gives_the_same_ink_as_rgba():
    rgba = ink_on_transparent()
    palette = Image.new("P", rgba.size, 0)
    palette.frombytes((np.asarray(rgba.getchannel("A")) > 0).astype(np.uint8).tobytes())  # 1 = ink, 0 = background
    palette.putpalette([255, 255, 255, 0, 0, 0])  # index 0 is white, made transparent when saved; 1 is black
    loaded = load_image(encoded(palette, "PNG", transparency=0)).image
    assert loaded.mode == "RGBA"
    assert np.array_equal(np.asarray(loaded.getchannel("A")), np.asarray(rgba.getchannel("A")))
    assert np.allclose(ink_map(loaded), ink_map(rgba))
    opaque = load_image(encoded(digit("P"), "PNG")).image
    assert opaque.mode == "RGB" and np.allclose(ink_map(opaque), ink_map(digit()))


def test_grey_alpha_png_gives_the_same_ink_as_rgba():
    rgba = ink_on_transparent()
    grey_alpha = Image.merge("LA", (rgba.getchannel("R"), rgba.getchannel("A")))
    loaded = load_image(encoded(grey_alpha, "PNG")).image
    assert loaded.mode == "RGBA" and np.allclose(ink_map(loaded), ink_map(rgba))
    opaque = load_image(encoded(digit("LA"), "PNG")).image
    assert opaque.mode == "L" and np.array_equal(np.asarray(opaque), np.asarray(digit()))


def test_rgba_without_any_transparent_pixel_becomes_rgb():
    loaded = load_image(encoded(digit("RGBA"), "PNG")).image
    assert loaded.mode == "RGB" and np.array_equal(np.asarray(loaded.convert("L")), np.asarray(digit()))
    assert load_image(encoded(ink_on_transparent(), "PNG")).image.mode == "RGBA"


def test_sixteen_bit_png_is_scaled_by_its_depth_not_clipped():
    full = np.asarray(digit(), dtype=np.uint16) * 257  # 0..65535
    loaded = load_image(encoded(Image.fromarray(full), "PNG")).image
    assert loaded.mode == "L" and np.array_equal(np.asarray(loaded), np.asarray(digit()))  # 65535 -> 255
    ramp = np.tile(np.linspace(0, 4096, 64).astype(np.uint16), (64, 1))  # a 12-bit sensor in a 16-bit file
    dim = np.asarray(load_image(encoded(Image.fromarray(ramp), "PNG")).image, dtype=float)
    assert np.allclose(dim, ramp / 257, atol=0.51)  # 4096 -> 16: the contrast stays relative, nothing saturates
    assert dim.max() == 16 and len(np.unique(dim)) == 17


def test_scaling_sixteen_bits_to_eight_holds_a_few_bytes_a_pixel_not_three_float_copies():
    import tracemalloc

    from core.images import _eight_bit

    image = Image.fromarray(np.zeros((1000, 1000), dtype=np.uint16))  # a small file can declare 25 million of them
    tracemalloc.start()
    _eight_bit(image)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 12 * image.width * image.height  # three float64 copies held 24+ bytes a pixel


def test_cmyk_jpeg_becomes_rgb_with_the_ink_in_place():
    loaded = load_image(encoded(digit("CMYK"), "JPEG", quality=95)).image
    assert loaded.mode == "RGB"
    assert np.abs(ink_map(loaded) - ink_map(digit())).mean() < 0.02


def test_sixteen_bit_and_cmyk_files_say_how_they_were_converted():
    deep = load_image(encoded(Image.fromarray(np.asarray(digit(), dtype=np.uint16) * 257), "PNG"), name="scan16.png")
    assert deep.notices == ("scan16.png has more than 8 bits per pixel: it was scaled to 8 bits, keeping its contrast.",)
    cmyk = load_image(encoded(digit("CMYK"), "JPEG", quality=95), name="print.jpg")
    assert cmyk.notices == ("print.jpg is a CMYK (print) image: its colours were converted to RGB.",)
    for plain in (digit(), digit("RGB"), digit("P")):
        assert load_image(encoded(plain, "PNG")).notices == ()


@pytest.mark.parametrize("orientation, stored_as", [
    (6, Image.Transpose.ROTATE_90),  # "rotate 90 clockwise to view": the camera stored it turned left
    (8, Image.Transpose.ROTATE_270),
    (3, Image.Transpose.ROTATE_180),
])
def test_exif_orientation_makes_phone_photos_upright(orientation, stored_as):
    upright = Image.new("L", (160, 96), 255)
    ImageDraw.Draw(upright).rectangle([8, 8, 40, 30], fill=0)  # a mark in the top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(upright.transpose(stored_as).convert("RGB"), "JPEG", exif=exif.tobytes(), quality=95)
    loaded = np.asarray(load_image(data).image.convert("L"), dtype=float)
    assert loaded.shape == (96, 160)
    assert np.abs(loaded - np.asarray(upright, dtype=float)).mean() < 3


@pytest.mark.parametrize("fmt, mode", [("PNG", "L"), ("JPEG", "RGB"), ("BMP", "RGB"), ("GIF", "RGB"), ("WEBP", "RGB")])
def test_every_accepted_format_loads(fmt, mode):
    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("this PIL has no WebP support")
    options = {"lossless": True} if fmt == "WEBP" else {}
    loaded = load_image(encoded(digit(mode if fmt != "GIF" else "P"), fmt, **options))
    assert loaded.image.mode == mode and loaded.image.size == (120, 120) and loaded.notices == ()
    assert np.abs(ink_map(loaded.image) - ink_map(digit())).mean() < 0.02


def test_paths_are_read_and_missing_ones_refused(tmp_path):
    path = tmp_path / "seven.png"
    path.write_bytes(encoded(digit(), "PNG"))
    assert load_image(path).image.size == (120, 120) and load_image(str(path)).image.size == (120, 120)
    with pytest.raises(ImageError, match="^gone.png does not exist or is not a file.$"):
        load_image(tmp_path / "gone.png")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)


def test_a_file_is_never_read_past_the_size_limit(tmp_path, monkeypatch):
    path = tmp_path / "endless.png"
    path.write_bytes(b"\x89PNG")

    class Endless(io.RawIOBase):
        """A file that never ends (a device or a file still growing): only bounded reads may finish."""

        def read(self, size: int = -1) -> bytes:
            assert size is not None and size > 0, "tried to read the whole of an endless file"
            return b"\0" * size

    monkeypatch.setattr(Path, "open", lambda self, *args, **kwargs: Endless())
    with pytest.raises(ImageError, match="larger than 8 MB"):
        load_image(path)


def test_a_png_with_a_wrong_chunk_length_is_damaged():
    data = bytearray(encoded(digit(), "PNG"))
    assert data[37:41] == b"IDAT"
    data[33:37] = struct.pack(">I", 256)  # the next chunk header now falls inside the compressed pixels
    assert "damaged or truncated" in refusal(bytes(data))


def test_corrupted_bytes_only_ever_raise_image_error():
    rng = random.Random(0)
    originals = [encoded(digit(), "PNG"), encoded(digit("RGB"), "JPEG"), encoded(digit("P"), "GIF"),
                 encoded(digit("RGB"), "BMP"), animation("GIF")]
    for original in originals:
        for _ in range(60):
            damaged = bytearray(original)
            for _ in range(rng.randint(1, 6)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            try:
                loaded = load_image(bytes(damaged))
            except ImageError:
                continue
            assert loaded.image.mode in ("L", "RGB", "RGBA")


def test_a_corrupt_exif_block_warns_nobody_and_the_picture_is_kept():
    stream = io.BytesIO()
    digit("RGB").save(stream, "JPEG", exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00\x12\x01\x03\x00\x01\x00\x00\x00"
                                           b"\x06\x00\x00\x00cut short")  # says 5 entries, holds less than one
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_image(stream.getvalue(), name="phone.jpg")
    assert [str(w.message) for w in caught] == []  # PIL's "Corrupt EXIF data" reached the command line's stderr
    assert loaded.image.size == digit().size
