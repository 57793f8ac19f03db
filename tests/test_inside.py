import threading
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torch import nn

from core.inference import load_default_model, model_inputs, predict_proba
from core.inside import PASS_THROUGH, DenseUnits, FeatureMaps, InsideView, layer_outputs, look_inside, shown_modules
from core.models import build_model, list_models, model_spec
from core.preprocess import DIGITS_FORMAT, MNIST_FORMAT, preprocess
from core.record import RecordedTraining
from core.store import LoadedRun, RunStore, load_run_dir
from core.training import TrainConfig
from ui.inside import MAX_MAPS, dense_figure, feature_maps_figure, filters_figure, inside_figures, tiled
from tests.drawn_digits import drawn


def fresh_run(name: str, size: int) -> LoadedRun:
    """A zoo model with seeded random weights, wrapped as a run for 28x28 MNIST-style or 8x8 digits-style input."""
    torch.manual_seed(0)
    fmt = MNIST_FORMAT if size == 28 else DIGITS_FORMAT
    model = build_model(name, image_size=size).eval()
    return LoadedRun(name, Path(name), {"model": name}, model, model_spec(name).output, fmt,
                     255.0 if size == 28 else 1.0, 0.13, 0.31, tuple("0123456789"))


def layer_by_layer(model: nn.Module, inputs: torch.Tensor) -> list[np.ndarray]:
    """The reference: each top-level module applied in turn by hand, outputs of the shown ones kept."""
    shown = {id(module) for _, module in shown_modules(model)}
    outputs, x = [], inputs
    with torch.inference_mode():
        for module in model:
            x = module(x)
            if id(module) in shown:
                outputs.append(x[0].numpy())
    return outputs


def check_view(run: LoadedRun, pixels: np.ndarray) -> InsideView:
    """Everything a view promises, checked against a forward pass done by hand."""
    view = look_inside(run, pixels)
    expected = layer_by_layer(run.model, model_inputs(run, pixels))
    assert len(view.layers) == len(expected) > 0
    for position, (layer, reference) in enumerate(zip(view.layers, expected)):
        assert layer.index == position
        if reference.ndim == 3:
            assert isinstance(layer, FeatureMaps) and np.allclose(layer.maps, reference, atol=1e-5)
        else:
            assert isinstance(layer, DenseUnits) and np.allclose(layer.values, reference, atol=1e-5)
            assert list(layer.top_units) == list(np.argsort(-reference, kind="stable")[:len(layer.top_units)])
    assert np.allclose(view.probabilities, predict_proba(run, pixels[None])[0], atol=1e-5)
    assert np.allclose(view.model_input, model_inputs(run, pixels)[0, 0].numpy())
    assert all(not module._forward_hooks for module in run.model.modules())  # every hook removed
    return view


@pytest.mark.parametrize("size", [28, 8])
@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_shows_each_layer_in_forward_order(name, size):
    run = fresh_run(name, size)
    view = check_view(run, preprocess(drawn(4), run.input_format).pixels)
    convs = [module for module in run.model.modules() if isinstance(module, nn.Conv2d)]
    if convs:
        assert view.filters.shape == (convs[0].out_channels, *convs[0].kernel_size)
        assert np.array_equal(view.filters, convs[0].weight.detach()[:, 0].numpy())
        assert any(isinstance(layer, FeatureMaps) for layer in view.layers)
    else:
        assert view.filters is None and all(isinstance(layer, DenseUnits) for layer in view.layers)
    assert not any(isinstance(module, PASS_THROUGH) for _, module in shown_modules(run.model))


def test_blocks_are_one_layer_each_with_their_whole_output():
    run = fresh_run("inception", 28)
    view = check_view(run, preprocess(drawn(8)).pixels)
    blocks = [layer for layer in view.layers if layer.title == "InceptionBlock"]
    assert [block.maps.shape[0] for block in blocks] == [88, 88]  # the four branches concatenated


def test_the_shipped_model_and_a_saved_run_are_shown(tmp_path):
    shipped = check_view(load_default_model(), preprocess(drawn(7)).pixels)
    assert shipped.probabilities.argmax() == 7 and shipped.layers[-1].top_units[0] == 7
    assert [layer.title for layer in shipped.layers][:2] == ["Conv2d 1→24, 5x5", "BatchNorm2d"]
    config = TrainConfig(model="digits-cnn", dataset="digits", epochs=1, batch_size=100, optimizer="sgd",
                         learning_rate=0.5, loss="bce-one-hot")
    recorded = RecordedTraining(config, RunStore(tmp_path / "runs"))
    assert list(recorded.events())[-1].status == "done"
    saved = load_run_dir(recorded.run_dir)
    view = check_view(saved, preprocess(drawn(2), DIGITS_FORMAT).pixels)
    assert view.model_input.shape == (8, 8) and view.layers[0].maps.shape == (16, 8, 8)


def test_hooks_are_removed_when_the_forward_pass_fails():
    model = build_model("net-10-20", image_size=28).eval()
    with pytest.raises(RuntimeError):
        layer_outputs(model, torch.zeros(1, 1, 5, 5))  # too small for a 5x5 conv after pooling
    assert all(not module._forward_hooks for module in model.modules())


def test_another_threads_prediction_does_not_land_in_the_view():
    model = build_model("cnn-5x5", image_size=28).eval()
    started, release = threading.Event(), threading.Event()
    original_forward = model[0].forward

    def slow_first_layer(x: torch.Tensor) -> torch.Tensor:  # holds our pass inside the hooks while another runs
        started.set()
        release.wait(10)
        return original_forward(x)

    model[0].forward = slow_first_layer
    result: list = []
    ours = threading.Thread(target=lambda: result.append(layer_outputs(model, torch.rand(1, 1, 28, 28))))
    ours.start()
    started.wait(10)
    model[0].forward = original_forward
    with torch.inference_mode():
        model[1:](torch.rand(4, 16, 28, 28))  # another session's forward through the hooked layers
    release.set()
    ours.join(10)
    layers, _ = result[0]
    assert len(layers) == len(shown_modules(model))  # once each: the other pass added nothing


# ---- figures ------------------------------------------------------------------------------------------------------

def test_a_conv_layer_is_one_heatmap_of_its_first_maps_with_values_on_hover():
    view = look_inside(load_default_model(), preprocess(drawn(3)).pixels)
    first = view.layers[0]
    figure = feature_maps_figure(first)
    (heatmap,) = figure.data
    assert isinstance(heatmap, go.Heatmap) and "%{z" in heatmap.hovertemplate
    assert "24 maps, first 16 shown" in figure.layout.title.text
    grid, where = tiled(first.maps[:MAX_MAPS], 4)
    assert np.array_equal(np.asarray(heatmap.z, dtype=np.float32), grid, equal_nan=True)
    map_index, row, column = where[25 + 3, 2 * 25 + 5]  # second tile row, third column, (3, 5) inside it
    assert (map_index, row, column) == (6, 3, 5) and grid[28, 55] == first.maps[6, 3, 5]


def test_dense_bars_mark_the_top_units_and_name_classes_on_the_output_layer():
    view = look_inside(load_default_model(), preprocess(drawn(3)).pixels)
    hidden, output = view.layers[-3], view.layers[-1]
    bars = dense_figure(hidden).data[0]
    assert len(bars.y) == len(hidden.values) == 256
    assert [bars.text[unit] for unit in hidden.top_units] == ["#1", "#2", "#3", "#4", "#5"]
    assert sum(text != "" for text in bars.text) == 5
    named = dense_figure(output, ["<b>zero</b>"] + [str(i) for i in range(1, 10)]).data[0]
    assert list(named.x)[:4] == ["&lt;b&gt;zero&lt;/b&gt;", "1", "2", "3"]  # shown as text, never as markup


def test_every_view_becomes_input_filters_and_one_figure_per_layer():
    mlp = look_inside(fresh_run("mlp", 28), preprocess(drawn(1)).pixels)
    assert len(inside_figures(mlp)) == 1 + len(mlp.layers)  # no filters without a conv
    cnn = look_inside(fresh_run("lenet5", 28), preprocess(drawn(1)).pixels)
    figures = inside_figures(cnn, tuple("0123456789"))
    assert len(figures) == 2 + len(cnn.layers)
    assert "6 kernels of 5x5" in filters_figure(cnn.filters).layout.title.text
    assert figures[0].data[0].z.shape == (28, 28)
