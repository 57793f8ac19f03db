from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from core.inference import load_default_model, saliency
from core.models import build_model, list_models, model_spec
from core.preprocess import DIGITS_FORMAT, MNIST_FORMAT, preprocess
from core.saliency import saliency_map
from core.store import LoadedRun
from tests.drawn_digits import drawn
from tests.plotly_text import hover_text
from ui.inside import saliency_figure

NEAR = np.ones((5, 5), dtype=bool)  # "within 2 px", diagonals included


@pytest.fixture(scope="module")
def default_run() -> LoadedRun:
    return load_default_model()


def share_near_ink(pixels: np.ndarray, strength: np.ndarray) -> float:
    """The share of a map's mass on ink pixels or within 2 px of one."""
    near_ink = ndimage.binary_dilation(pixels > 0, structure=NEAR)
    return float(strength[near_ink].sum() / strength.sum())


@pytest.mark.parametrize("digit", range(10))
def test_the_map_lies_on_the_ink_where_the_old_speckled_one_did_not(default_run, digit):
    pixels = preprocess(drawn(digit)).pixels
    readable = share_near_ink(pixels, saliency_map(default_run, pixels))
    plain = share_near_ink(pixels, saliency(default_run, pixels))
    old_smooth = share_near_ink(pixels, saliency(default_run, pixels, samples=16, noise=0.1))  # as the page had it
    assert readable > 0.75 and readable > max(plain, old_smooth) + 0.05


def test_it_is_integrated_gradients_from_the_blank_input():
    """For a model whose output is linear in its input, IG is exact: (input - blank) * the target's weights."""
    weights = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3, bias=False)).eval()
    with torch.no_grad():
        model[1].weight.copy_(weights)
    mean, std = 0.2, 0.5
    run = LoadedRun("linear", Path("linear"), {}, model, "log_probs", MNIST_FORMAT, 255.0, mean, std, ("a", "b", "c"))
    pixels = np.random.default_rng(0).integers(0, 256, (4, 4)).astype(np.uint8)
    moved = (pixels.ravel() / 255.0 - mean) / std - (0.0 - mean) / std  # input minus the blank input, normalised
    for target in range(3):
        expected = np.abs(moved * weights[target].numpy())
        assert np.allclose(saliency_map(run, pixels, target, noise=0.0), (expected / expected.max()).reshape(4, 4),
                           atol=1e-5)


def test_the_map_follows_the_target_and_is_repeatable(default_run):
    pixels = preprocess(drawn(7)).pixels
    answer = saliency_map(default_run, pixels)
    assert np.array_equal(answer, saliency_map(default_run, pixels, 7))  # default: the model's answer
    assert np.array_equal(answer, saliency_map(default_run, pixels))  # same seed, same map
    assert not np.array_equal(answer, saliency_map(default_run, pixels, seed=1))
    assert np.corrcoef(answer.ravel(), saliency_map(default_run, pixels, 3).ravel())[0, 1] < 0.8  # other strokes
    assert answer.shape == (28, 28) and answer.min() >= 0 and answer.max() == pytest.approx(1.0)


def test_the_shared_model_is_left_untouched_even_in_inference_mode(default_run):
    pixels = preprocess(drawn(2)).pixels
    before = {name: tensor.clone() for name, tensor in default_run.model.state_dict().items()}
    plain = saliency_map(default_run, pixels)
    with torch.inference_mode():
        assert np.array_equal(saliency_map(default_run, pixels), plain)
    assert all(parameter.grad is None for parameter in default_run.model.parameters())
    assert all(torch.equal(before[name], tensor) for name, tensor in default_run.model.state_dict().items())
    assert not default_run.model.training


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_gets_a_map_at_28_and_8_pixels(name):
    for size, fmt in ((28, MNIST_FORMAT), (8, DIGITS_FORMAT)):
        torch.manual_seed(0)
        model = build_model(name, image_size=size).eval()
        run = LoadedRun(name, Path(name), {}, model, model_spec(name).output, fmt, 255.0 if size == 28 else 1.0,
                        0.13, 0.31, tuple("0123456789"))
        strength = saliency_map(run, preprocess(drawn(5), fmt).pixels, samples=2)
        assert strength.shape == (size, size) and np.isfinite(strength).all() and strength.max() == pytest.approx(1.0)


def test_the_figure_lays_the_map_over_the_input_and_shows_the_title_as_text(default_run):
    pixels = preprocess(drawn(6)).pixels
    strength = saliency_map(default_run, pixels)
    figure = saliency_figure(pixels, 255, strength, "Why <b>6</b>")
    grey, heat = figure.data
    assert np.array_equal(grey.z, pixels) and np.array_equal(heat.z, strength) and heat.zmax == 1
    assert figure.layout.title.text == "Why &lt;b&gt;6&lt;/b&gt;"
    row, column = np.unravel_index(int(strength.argmax()), strength.shape)
    assert hover_text(heat, (int(row), int(column))) == f"row {row}, column {column}: 100 % of the strongest"
