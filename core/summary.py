"""A model's layers as a table (type, output shape, parameters), found by running one blank image through it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.models import build_model, count_parameters


@dataclass(frozen=True)
class LayerRow:
    """One leaf layer of a model."""

    name: str
    kind: str
    output_shape: tuple[int, ...]  # without the batch dimension
    parameters: int


@dataclass(frozen=True)
class ModelSummary:
    """What a model is made of, before it is trained."""

    layers: tuple[LayerRow, ...]
    parameters: int
    input_shape: tuple[int, ...]


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if name and not list(module.children())]


def summarize(model: nn.Module, image_size: int) -> ModelSummary:
    """The leaf layers of `model` in the order they run, with the shape each one outputs for one image."""
    rows: list[LayerRow] = []

    def hook_for(name: str):
        def record(module: nn.Module, _inputs, output) -> None:
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
            rows.append(LayerRow(name, type(module).__name__, shape, count_parameters(module)))
        return record

    handles = [module.register_forward_hook(hook_for(name)) for name, module in _leaves(model)]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, 1, image_size, image_size))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return ModelSummary(tuple(rows), count_parameters(model), (1, image_size, image_size))


def model_summary(model_name: str, image_size: int, num_classes: int) -> ModelSummary:
    """The summary of a freshly built model from the registry."""
    return summarize(build_model(model_name, image_size=image_size, num_classes=num_classes), image_size)
