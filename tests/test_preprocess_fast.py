"""The fast paths of preprocessing give what the careful paths give, on inputs of every kind.

8-bit grey planes (canvases, scans, transparent drawings' alpha) are stretched by a 256-level lookup and RGBA
canvases are read one 32-bit word a pixel; the same image given as float32 takes the float path, pixel by pixel.
Big JPEGs can be decoded reduced (libjpeg's DCT scaling) for the command line: they read as the whole decode does.
"""

import numpy as np
import pytest
from PIL import Image

import core.preprocess as preprocess_module
from core.images import load_image
from core.inference import load_default_model, predict_image
from core.preprocess import (DIGITS_FORMAT, MNIST_FORMAT, WORKING_SIDE, ink_map, preprocess, split_digits,
                             working_image)
from tests.drawn_digits import drawn, encoded, on_transparent, phone_photo, photo_of


def varied_arrays() -> dict[str, np.ndarray]:
    """8-bit arrays as uploads and the canvas give them: drawn digits of every brush, scans, transparent drawings,
    noise, tiny dots, small images, rows of digits."""
    rng = np.random.default_rng(7)
    cases = {}
    for digit in range(10):
        width = (2, 6, 18, 45)[digit % 4]
        cases[f"canvas {digit} brush {width}"] = np.asarray(drawn(digit, width=width))
        cases[f"scan {digit}"] = np.asarray(drawn(digit, mode="L", background=255, ink=0))
        cases[f"transparent {digit}"] = np.asarray(on_transparent(digit, ink=(30, 60, 200, 255)))
        noisy = np.asarray(drawn(digit, mode="L", background=0, ink=255), dtype=float) + rng.normal(0, 25, (280, 280))
        cases[f"noisy {digit}"] = np.clip(noisy, 0, 255).astype(np.uint8)
    cases["blue ink on the canvas"] = np.asarray(drawn(2, ink=(0, 0, 255, 255)))  # colour: R = G, B differs
    cases["red ink on the canvas"] = np.asarray(drawn(6, ink=(255, 0, 0, 255)))
    speck = np.full((280, 280), 255, np.uint8)
    speck[100:103, 50:53] = 0  # so little ink that its peak comes from the maximum, not the percentile
    cases["dark speck on paper"] = speck
    cases["small 28x28"] = np.asarray(drawn(3, width=3, size=(28, 28), box=(4, 4, 24, 24)))
    cases["corner"] = np.asarray(drawn(7, width=6, box=(200, 190, 260, 270)))
    cases["noise"] = rng.integers(0, 256, (200, 200), dtype=np.uint8)
    single = np.zeros((280, 280), np.uint8)
    single[140, 140] = 255
    cases["one pixel"] = single
    cases["dot"] = np.asarray(drawn(1, width=20, box=(130, 130, 135, 135)))
    cases["flat line"] = np.asarray(drawn(1, width=10, box=(20, 140, 260, 141)))
    cases["blank canvas"] = np.zeros((280, 280, 4), np.uint8)
    cases["grey paper, faint ink"] = np.asarray(drawn(5, mode="L", background=200, ink=150))
    cases["row of digits"] = np.asarray(drawn("4096", size=(480, 160), width=10))
    return cases


FLOAT_PATH = {"noise", "blue ink on the canvas", "red ink on the canvas"}  # lit unevenly; colour (its channels read
#                                                                           one 32-bit word a pixel, then floats)


def assert_same_result(fast, careful) -> None:
    assert (fast.blank, fast.refusal, fast.ink_box) == (careful.blank, careful.refusal, careful.ink_box)
    assert np.abs(fast.pixels.astype(int) - careful.pixels.astype(int)).max() <= 1  # float rounding at most


@pytest.fixture
def fast_path_calls(monkeypatch) -> list[int]:
    """Counts the level lookups, so the test knows which inputs took the fast path."""
    calls: list[int] = []
    original = preprocess_module._stretched_levels

    def counted(plane, level_ink):
        calls.append(plane.size)
        return original(plane, level_ink)
    monkeypatch.setattr(preprocess_module, "_stretched_levels", counted)
    return calls


@pytest.mark.parametrize("name", sorted(varied_arrays()))
def test_an_8_bit_image_gives_what_its_float_copy_gives(name, fast_path_calls):
    image = varied_arrays()[name]
    careful_copy = image.astype(np.float32)  # floats above 1 are taken as 0..255: the same values, the float path
    for fmt in (MNIST_FORMAT, DIGITS_FORMAT):
        fast_path_calls.clear()
        fast = preprocess(image, fmt)
        assert bool(fast_path_calls) == (name not in FLOAT_PATH), "the lookup was not taken where it should be"
        fast_path_calls.clear()
        careful = preprocess(careful_copy, fmt)
        assert not fast_path_calls, "the float copy took the lookup: nothing was compared"
        assert_same_result(fast, careful)
    np.testing.assert_allclose(ink_map(image), ink_map(careful_copy), atol=1e-6)
    fast_digits, careful_digits = split_digits(image), split_digits(careful_copy)
    assert len(fast_digits) == len(careful_digits)
    for fast, careful in zip(fast_digits, careful_digits):
        assert_same_result(fast, careful)


def test_photos_and_huge_images_give_what_the_float_path_gives():
    huge = Image.fromarray(np.asarray(photo_of(5, seed=3))).resize((4000, 3000), Image.Resampling.BICUBIC)
    for image in (photo_of(2, seed=1), huge.convert("L"), huge):
        shrunk = working_image(image)  # what preprocessing reads of a big photo, in its own 8 bits
        fast, careful = preprocess(image), preprocess(np.asarray(shrunk).astype(np.float32))
        assert not fast.blank and fast.refusal is None
        assert np.abs(fast.pixels.astype(int) - careful.pixels.astype(int)).max() <= 1


def shifted_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The mean absolute difference of two 28x28 inputs at the best of the nine placements within one pixel: a
    digit's centre of mass rounds to whole pixels, so the slightest change can move it by one."""
    padded = np.pad(b.astype(float), 1)
    return min(float(np.abs(a - padded[1 + dy:29 + dy, 1 + dx:29 + dx]).mean())
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


@pytest.mark.parametrize(("digit", "size"), [(0, (2400, 1800)), (8, (2048, 2730))])
def test_a_big_jpeg_decoded_reduced_reads_as_the_whole_decode_does(digit, size):
    data = phone_photo(digit, size, seed=digit)
    whole = load_image(data).image
    reduced = load_image(data, longer_side=2 * WORKING_SIDE).image  # what `python -m core predict` decodes
    assert whole.size == size and 2 * WORKING_SIDE <= max(reduced.size) < max(size) // 1.9
    run = load_default_model()
    careful, fast = predict_image(run, whole), predict_image(run, reduced)
    assert fast.label == careful.label
    assert np.abs(fast.probabilities - careful.probabilities).max() < 0.1
    assert shifted_difference(fast.preprocessed.pixels, careful.preprocessed.pixels) < 2.0  # of 255


def test_only_big_jpegs_are_reduced_while_decoding():
    big_png = encoded(drawn(3, size=(2400, 1800), mode="L", background=255, ink=0), "PNG")
    small_jpeg = phone_photo(3, (1600, 1200))
    for data, size in ((big_png, (2400, 1800)), (small_jpeg, (1600, 1200))):
        assert load_image(data, longer_side=2 * WORKING_SIDE).image.size == size


def test_a_photo_is_relit_on_one_openblas_thread(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    def openblas_threads() -> set[int]:
        return {pool["num_threads"] for pool in threadpool_info() if pool["internal_api"] == "openblas"}
    if not openblas_threads():
        pytest.skip("numpy here does not use OpenBLAS")
    seen: list[set[int]] = []
    original = preprocess_module._paper_light

    def watched(overview, shape):
        seen.append(openblas_threads())
        return original(overview, shape)
    monkeypatch.setattr(preprocess_module, "_paper_light", watched)
    with threadpool_limits(2, user_api="blas"):  # the app's own count on 2 cores (the suite runs on one thread)
        preprocess(photo_of(3))  # unevenly lit: its paper's light is fitted
        assert openblas_threads() == {2}  # and the process's setting is back afterwards
    assert seen == [{1}]  # a second thread cost a photo 35 ms of CPU, spinning, on a busy 2-core machine


@pytest.mark.parametrize("reach", [0.5, 0.8, 1.0, 1.5, 1.9, 2.0, 2.3, 2.5, 2.6, 3.7])
def test_the_brush_run_along_thin_strokes_covers_what_a_distance_transform_says(reach):
    """Thin strokes are widened by a round brush: short reaches by shifting the strokes, long ones by a distance
    transform. Both give the distance transform's float32 values exactly, strokes touching the frame included."""
    from scipy import ndimage

    rng = np.random.default_rng(int(reach * 10))
    pad = int(np.ceil(reach))
    for _ in range(5):
        mask = np.zeros((40 + 2 * pad, 31 + 2 * pad), dtype=bool)
        mask[pad:-pad, pad:-pad] = rng.random((40, 31)) < 0.05  # scattered pixels: every offset and overlap shows
        expected = np.clip(reach - ndimage.distance_transform_edt(~mask), 0.0, 1.0).astype(np.float32)
        assert np.array_equal(preprocess_module._brush_cover(mask, reach), expected)


def test_a_glyph_is_placed_by_its_centre_of_mass_exactly_as_scipy_finds_it():
    """Symmetric glyphs put the centre on a half pixel, where the last bit of the sums decides the rounding: the
    placement must agree with ndimage.center_of_mass there too (a one-pixel shift changes the model's input)."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    glyphs = [rng.random((20, width), dtype=np.float32) for width in (3, 9, 14, 20)]
    glyphs += [(glyph + glyph[::-1, ::-1]) / 2 for glyph in glyphs]  # centre exactly in the middle: on a half pixel
    glyphs += [np.asarray(drawn(0, width=1, size=(14, 20), box=(1, 1, 13, 19), mode="L", background=0, ink=255),
                          dtype=np.float32) / 255]
    for glyph in glyphs:
        centre_y, centre_x = ndimage.center_of_mass(glyph)
        top = min(max(round(14 - centre_y), 0), 28 - glyph.shape[0])
        left = min(max(round(14 - centre_x), 0), 28 - glyph.shape[1])
        expected = np.zeros((28, 28), dtype=np.float32)
        expected[top:top + glyph.shape[0], left:left + glyph.shape[1]] = glyph
        assert np.array_equal(preprocess_module._placed_by_mass(glyph, 28), expected)


def test_a_planes_levels_are_counted_as_bincount_counts_them_whatever_level_covers_most_of_it():
    """A level covering most of a plane (a canvas's black) is counted by comparison; the counts are bincount's."""
    rng = np.random.default_rng(5)
    canvas = np.asarray(drawn(8))[..., 0].copy()
    mostly_white = np.where(rng.random((50, 70)) < 0.9, 255, rng.integers(0, 256, (50, 70))).astype(np.uint8)
    half = np.zeros((10, 10), np.uint8)
    half[:, 5:] = 9  # exactly half at the first pixel's level
    planes = [canvas, canvas[::2, ::2], mostly_white, rng.integers(0, 256, (64, 64), dtype=np.uint8), half,
              np.full((7, 3), 200, np.uint8), np.full((1, 1), 0, np.uint8)]
    for plane in planes:
        assert np.array_equal(preprocess_module._level_counts(plane), np.bincount(plane.ravel(), minlength=256))
