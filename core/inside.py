"""Inside the network: every layer's output for one input, caught by forward hooks, plus the first conv's filters."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.inference import model_inputs, small_batch_kernels
from core.models import to_probs
from core.store import LoadedRun

TOP_UNITS = 5  # dense units marked as the most active
PASS_THROUGH = (nn.Flatten, nn.Dropout, nn.Identity)  # reshape or identity at inference: nothing new to show


@dataclass(frozen=True)
class FeatureMaps:
    """A conv-like layer's output: one (H, W) map per channel."""

    index: int  # position among the layers shown, from 0
    name: str  # the module's path in the model, e.g. "4"
    title: str  # what the layer is, e.g. "Conv2d 1→24, 5x5" (see describe)
    maps: np.ndarray  # float32 (C, H, W)


@dataclass(frozen=True)
class DenseUnits:
    """A dense layer's output: one value per unit, and the most active units."""

    index: int
    name: str
    title: str
    values: np.ndarray  # float32 (units,)
    top_units: tuple[int, ...]  # unit indices by value, largest first (at most TOP_UNITS)


Layer = FeatureMaps | DenseUnits


@dataclass(frozen=True)
class InsideView:
    """What the network does with one input, layer by layer in forward order."""

    model_input: np.ndarray  # float32 (H, W): the normalised input the model is given
    layers: tuple[Layer, ...]
    filters: np.ndarray | None  # float32 (out, kH, kW): the first conv's kernels; None without convolutions
    probabilities: np.ndarray  # float32 (classes,)


def _opened(container: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """Children of `container` with Sequentials opened up and pass-through modules left out."""
    modules = []
    for name, module in container.named_children():
        if isinstance(module, nn.Sequential):
            modules += _opened(module, f"{prefix}{name}.")
        elif not isinstance(module, PASS_THROUGH):
            modules.append((prefix + name, module))
    return modules


def shown_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs are the layers, in definition order: Sequentials opened up, blocks (inception,
    residual) kept whole because their own forward adds work (the concatenation, the skip) no child's output shows;
    a model with no children is its own one layer."""
    return _opened(model) or [("model", model)]


def describe(module: nn.Module) -> str:
    """A short name for a layer: its class, with channels and kernel for a conv and widths for a linear layer."""
    kind = type(module).__name__
    if isinstance(module, nn.Conv2d):
        height, width = module.kernel_size
        return f"{kind} {module.in_channels}→{module.out_channels}, {height}x{width}"
    if isinstance(module, nn.Linear):
        return f"{kind} {module.in_features}→{module.out_features}"
    return kind


def _as_layer(index: int, name: str, title: str, values: np.ndarray) -> Layer:
    """One image's output as feature maps when it is (C, H, W), else as a vector of units."""
    if values.ndim == 3:
        return FeatureMaps(index, name, title, values)
    values = values.ravel()
    top = np.argsort(-values, kind="stable")[:TOP_UNITS]
    return DenseUnits(index, name, title, values, tuple(int(unit) for unit in top))


@contextmanager
def _recorded(modules: list[tuple[str, nn.Module]]) -> Iterator[list[tuple[str, str, np.ndarray]]]:
    """First image's output of each of `modules` (name, title, values) in the order they finish, for this thread's
    forward passes only: the cached model is shared by every session, and another session's prediction must not
    land in this list. The hooks are removed after the block."""
    caller = threading.get_ident()
    outputs: list[tuple[str, str, np.ndarray]] = []

    def keep(name: str, title: str):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if threading.get_ident() == caller and isinstance(output, torch.Tensor):
                values = output[0].detach().float().numpy().copy()  # copied now: an in-place op may follow
                outputs.append((name, title, values))
        return hook

    handles = [module.register_forward_hook(keep(name, describe(module))) for name, module in modules]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def layer_outputs(model: nn.Module, inputs: torch.Tensor) -> tuple[tuple[Layer, ...], torch.Tensor]:
    """Every shown layer's output for the first image of `inputs` (N, 1, H, W), and the model's output."""
    with _recorded(shown_modules(model)) as outputs, torch.inference_mode():
        result = model(inputs[:1])
    layers = tuple(_as_layer(index, name, title, values) for index, (name, title, values) in enumerate(outputs))
    return layers, result


def first_conv_filters(model: nn.Module) -> np.ndarray | None:
    """The first Conv2d's kernels on its first input channel (the grey image), or None when there is no conv."""
    conv = next((module for module in model.modules() if isinstance(module, nn.Conv2d)), None)
    return None if conv is None else conv.weight.detach()[:, 0].float().numpy().copy()


def look_inside(run: LoadedRun, pixels: np.ndarray) -> InsideView:
    """Each layer's activations for one preprocessed image (H, W) in the run's input format."""
    inputs = model_inputs(run, pixels)[:1]
    with small_batch_kernels():
        layers, output = layer_outputs(run.model, inputs)
    probabilities = to_probs(output, run.output)[0].numpy()
    return InsideView(inputs[0, 0].numpy().copy(), layers, first_conv_filters(run.model), probabilities)
