from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from core.preprocess import DIGITS_FORMAT, ink_map, preprocess, split_digits

SEVEN = [(0.2, 0.15), (0.8, 0.15), (0.45, 0.9)]


def canvas(width: int = 18, box=(0, 0, 280, 280), background=(0, 0, 0, 0), ink=(255, 255, 255, 255),
           size=(280, 280), mode="RGBA") -> Image.Image:
    """A 7 drawn as the canvas widget would, inside `box`."""
    image = Image.new(mode, size, background)
    left, top, right, bottom = box
    points = [(left + x * (right - left), top + y * (bottom - top)) for x, y in SEVEN]
    ImageDraw.Draw(image).line(points, fill=ink, width=width, joint="curve")
    return image


def assert_mnist_like(result) -> None:
    assert not result.blank and result.pixels.shape == (28, 28) and result.pixels.max() == 255
    rows, cols = np.flatnonzero(result.pixels.any(1)), np.flatnonzero(result.pixels.any(0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 in range(19, 23)
    centre = ndimage.center_of_mass(result.pixels.astype(float))
    assert abs(centre[0] - 14) <= 1 and abs(centre[1] - 14) <= 1


def test_small_digit_in_a_corner_is_scaled_and_centred():
    result = preprocess(canvas(width=6, box=(200, 190, 260, 270)))
    assert_mnist_like(result)
    assert result.ink_box[0] >= 190 and result.ink_box[1] >= 180


def test_thin_strokes_are_thickened_and_thick_ones_kept():
    thin, thick = preprocess(canvas(width=2)), preprocess(canvas(width=45))
    for result in (thin, thick):
        assert_mnist_like(result)
    assert np.mean(thin.pixels[thin.pixels > 0]) > 90  # not faint hair-lines
    assert (thin.pixels > 128).sum() >= 40 and (thick.pixels > 128).sum() > (thin.pixels > 128).sum()


def test_transparent_and_black_canvases_agree():
    transparent = preprocess(canvas())
    black = preprocess(canvas(background=(0, 0, 0, 255)))
    assert np.abs(transparent.pixels.astype(int) - black.pixels.astype(int)).max() <= 2


def test_black_ink_on_a_transparent_png():
    result = preprocess(canvas(ink=(0, 0, 0, 255)))
    assert np.abs(result.pixels.astype(int) - preprocess(canvas()).pixels.astype(int)).max() <= 2


def test_dark_ink_on_unevenly_lit_paper():
    rng = np.random.default_rng(0)
    paper = np.linspace(150, 240, 400)[None, :].repeat(300, 0) + rng.normal(0, 5, (300, 400))
    photo = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8)).convert("RGB")
    photo.paste(canvas(width=14, box=(120, 40, 280, 260), size=(400, 300), mode="RGB", background=(255, 255, 255),
                       ink=(40, 40, 50)), mask=canvas(width=14, box=(120, 40, 280, 260), size=(400, 300), mode="L",
                                                      background=0, ink=255))
    ink = ink_map(photo)
    assert ink[:, :60].max() < 0.1  # the dark side of the paper is not ink
    assert_mnist_like(preprocess(photo))


@pytest.mark.parametrize("image", [
    Image.new("L", (200, 200), 255), Image.new("L", (200, 200), 0), Image.new("RGBA", (280, 280), (0, 0, 0, 0)),
    Image.new("L", (200, 200), 128), np.zeros((280, 280, 4), np.uint8),
], ids=["white", "black", "transparent", "grey", "empty-canvas-array"])
def test_blank_inputs_are_reported_blank(image):
    result = preprocess(image)
    assert result.blank and result.ink_box is None and not result.pixels.any()


def test_a_single_speck_is_blank():
    speck = Image.new("L", (280, 280), 0)
    speck.putpixel((100, 100), 255)
    assert preprocess(speck).blank


def test_digits_style_is_8x8_in_0_to_16():
    result = preprocess(canvas(), DIGITS_FORMAT)
    assert result.pixels.shape == (8, 8) and result.pixels.max() == 16 and result.pixels.dtype == np.uint8


def mnist_test_images(count: int) -> np.ndarray:
    path = Path(__file__).resolve().parents[2] / "shared/data/MNIST/raw/t10k-images-idx3-ubyte"
    if not path.exists():
        pytest.skip("the MNIST subset is not present")
    raw = path.read_bytes()
    return np.frombuffer(raw, np.uint8, offset=16)[:count * 784].reshape(count, 28, 28)


def test_real_mnist_digits_survive_a_round_trip():
    correlations = []
    for original in mnist_test_images(200):
        scan = Image.fromarray(255 - original).resize((280, 280), Image.Resampling.BILINEAR)
        result = preprocess(scan).pixels.astype(float)
        correlations.append(np.corrcoef(result.ravel(), original.astype(float).ravel())[0, 1])
    assert np.median(correlations) > 0.9 and min(correlations) > 0.5


def test_split_reads_digits_left_to_right_and_keeps_two_stroke_digits_whole():
    row = Image.new("L", (600, 200), 0)
    pen = ImageDraw.Draw(row)
    pen.line([(60, 40), (60, 160)], fill=255, width=12)  # 1
    pen.line([(200, 40), (200, 110), (270, 110)], fill=255, width=12)  # a 4 in two strokes that do not touch
    pen.line([(255, 40), (255, 160)], fill=255, width=12)
    pen.ellipse([(400, 40), (500, 160)], outline=255, width=12)  # 0
    parts = split_digits(row)
    assert len(parts) == 3 and [p.ink_box[0] for p in parts] == sorted(p.ink_box[0] for p in parts)
    assert split_digits(Image.new("L", (100, 100), 0)) == []

