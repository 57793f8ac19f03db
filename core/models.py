"""The model zoo: a registry from name to builder, every recipe's network layer for layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

Output = Literal["logits", "log_probs", "probs"]
Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture: how to build it and what its last layer emits."""

    name: str
    title: str
    description: str
    output: Output
    builder: Builder


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, *, title: str, description: str, output: Output = "logits") -> Callable[[Builder], Builder]:
    """Add a builder to the zoo under `name`; a duplicate name raises ValueError."""
    def add(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"Model {name!r} is already registered.")
        _REGISTRY[name] = ModelSpec(name, title, description, output, builder)
        return builder
    return add


def list_models() -> list[str]:
    """Names of every registered model, in registration order."""
    return list(_REGISTRY)


def model_spec(name: str) -> ModelSpec:
    """The registry entry for `name`, or ValueError listing the known names."""
    if name not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


def build_model(name: str, *, image_size: int, num_classes: int = 10) -> nn.Module:
    """Build a fresh, randomly initialised model for square single-channel images of `image_size`."""
    return model_spec(name).builder(image_size=image_size, num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def to_log_probs(output: torch.Tensor, kind: Output) -> torch.Tensor:
    """Log-probabilities from whatever the model's last layer emits."""
    if kind == "logits":
        return F.log_softmax(output, dim=1)
    if kind == "log_probs":
        return output
    return torch.log(output.clamp_min(1e-12))


def to_probs(output: torch.Tensor, kind: Output) -> torch.Tensor:
    """Class probabilities from whatever the model's last layer emits."""
    return output if kind == "probs" else to_log_probs(output, kind).exp()


class Resize(nn.Module):
    """Resize inputs to the size an architecture was designed for (lenet5's 32x32, 28x28 nets on 8x8 digits)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.size and x.shape[-2] == self.size:
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)

    def extra_repr(self) -> str:
        return f"size={self.size}"


def leading_resize(model: nn.Module) -> Resize | None:
    """The Resize a model starts with, if any: the engine applies it to a whole dataset once, not every batch."""
    first = model[0] if isinstance(model, nn.Sequential) and len(model) else None
    return first if isinstance(first, Resize) else None


def _flat_features(layers: nn.Sequential, image_size: int) -> int:
    """Width of the flattened features after `layers`, found by a dry run (no hand arithmetic)."""
    with torch.no_grad():
        return int(layers(torch.zeros(1, 1, image_size, image_size)).flatten(1).shape[1])


def _at_least(native: int, image_size: int) -> list[nn.Module]:
    """A Resize to `native` for inputs too small for the architecture (8x8 digits), else nothing."""
    return [Resize(native)] if image_size < native else []


@register_model("digits-cnn", title="Digits CNN (recipe)", output="probs",
                description="Conv 16@5x5 + BatchNorm + pool + linear + softmax: the scikit-learn digits recipe.")
def digits_cnn(*, image_size: int, num_classes: int) -> nn.Module:
    features = nn.Sequential(nn.Conv2d(1, 16, 5, 1, 2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten())
    return nn.Sequential(*features, nn.Linear(_flat_features(features, image_size), num_classes), nn.Softmax(dim=1))


@register_model("digit-net", title="DigitNet (recipe)", output="log_probs",
                description="Conv 10@5x5, pool, conv 20@3x3, linear 500: the digit-net recipe.")
def digit_net(*, image_size: int, num_classes: int) -> nn.Module:
    resize = _at_least(28, image_size)
    features = nn.Sequential(*resize, nn.Conv2d(1, 10, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
                             nn.Conv2d(10, 20, 3), nn.ReLU(), nn.Flatten())
    return nn.Sequential(*features, nn.Linear(_flat_features(features, image_size), 500), nn.ReLU(),
                         nn.Linear(500, num_classes), nn.LogSoftmax(dim=1))


@register_model("lenet5", title="LeNet-5 (recipe)", output="log_probs",
                description="LeCun's LeNet-5 on inputs resized to 32x32: the lenet5 recipe.")
def lenet5(*, image_size: int, num_classes: int) -> nn.Module:
    features = nn.Sequential(Resize(32), nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2, 2),
                             nn.Conv2d(6, 16, 5), nn.MaxPool2d(2, 2), nn.Flatten())  # no ReLU after conv2, as written
    return nn.Sequential(*features, nn.Linear(_flat_features(features, image_size), 120), nn.ReLU(),
                         nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes), nn.LogSoftmax(dim=1))


@register_model("cnn-5x5", title="CNN 5x5 (recipe)",
                description="Two padded 5x5 convs (16, 32 channels), linear 256: the cnn-5x5 recipe.")
def cnn_5x5(*, image_size: int, num_classes: int) -> nn.Module:
    features = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
                             nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten())
    return nn.Sequential(*features, nn.Linear(_flat_features(features, image_size), 256), nn.ReLU(),
                         nn.Linear(256, num_classes))


@register_model("net-10-20", title="Net 10-20 (recipe)",
                description="Conv 10@5x5, conv 20@5x5, linear 50, linear 10: the net-10-20 recipe.")
def net_10_20(*, image_size: int, num_classes: int) -> nn.Module:
    resize = _at_least(28, image_size)
    features = nn.Sequential(*resize, nn.Conv2d(1, 10, 5), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(10, 20, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
    return nn.Sequential(*features, nn.Linear(_flat_features(features, image_size), 50),
                         nn.Linear(50, num_classes))  # no activation between the two, as written


@register_model("mlp", title="Fully connected net",
                description="Pixels straight into five linear layers (512-256-128-64): no convolutions.")
def mlp(*, image_size: int, num_classes: int) -> nn.Module:
    widths = [image_size * image_size, 512, 256, 128, 64]
    layers: list[nn.Module] = [nn.Flatten()]
    for width_in, width_out in zip(widths, widths[1:]):
        layers += [nn.Linear(width_in, width_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], num_classes))


class InceptionBlock(nn.Module):
    """GoogLeNet's idea in small: 1x1, 5x5, double 3x3 and pooled branches side by side (88 channels out)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = nn.Conv2d(in_channels, 16, 1)
        self.branch5x5 = nn.Sequential(nn.Conv2d(in_channels, 16, 1), nn.Conv2d(16, 24, 5, padding=2))
        self.branch3x3 = nn.Sequential(nn.Conv2d(in_channels, 16, 1), nn.Conv2d(16, 24, 3, padding=1),
                                       nn.Conv2d(24, 24, 3, padding=1))
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(in_channels, 24, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1x1, self.branch5x5, self.branch3x3, self.branch_pool)
        return torch.cat([branch(x) for branch in branches], dim=1)


class ResidualBlock(nn.Module):
    """Two 3x3 convs whose output is added to the input (a skip connection)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


@register_model("inception", title="Inception-style net",
                description="Two inception blocks (parallel 1x1, 3x3, 5x5 and pool branches) between 5x5 convs.")
def inception(*, image_size: int, num_classes: int) -> nn.Module:
    resize = _at_least(28, image_size)
    features = nn.Sequential(*resize, nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.ReLU(), InceptionBlock(10),
                             nn.Conv2d(88, 20, 5), nn.MaxPool2d(2), nn.ReLU(), InceptionBlock(20), nn.Flatten())
    return nn.Sequential(*features, nn.Linear(_flat_features(features, image_size), num_classes))


@register_model("resnet", title="Residual net",
                description="5x5 convs (16, 32 channels) each followed by a residual block of two 3x3 convs.")
def resnet(*, image_size: int, num_classes: int) -> nn.Module:
    resize = _at_least(28, image_size)
    features = nn.Sequential(*resize, nn.Conv2d(1, 16, 5), nn.MaxPool2d(2), nn.ReLU(), ResidualBlock(16),
                             nn.Conv2d(16, 32, 5), nn.MaxPool2d(2), nn.ReLU(), ResidualBlock(32), nn.Flatten())
    return nn.Sequential(*features, nn.Linear(_flat_features(features, image_size), num_classes))


def _conv_bn(channels_in: int, channels_out: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(channels_in, channels_out, kernel, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU()]


def _batch_norm_cnn(first_channels: int, image_size: int, num_classes: int) -> nn.Module:
    """Conv first_channels@5x5 and 32@3x3, each with BatchNorm, ReLU and max-pool, then linear 256 with dropout."""
    resize = _at_least(28, image_size)
    features = nn.Sequential(*resize, *_conv_bn(1, first_channels, 5), nn.MaxPool2d(2), *_conv_bn(first_channels, 32, 3),
                             nn.MaxPool2d(2), nn.Flatten())
    return nn.Sequential(*features, nn.Linear(_flat_features(features, image_size), 256), nn.ReLU(),
                         nn.Dropout(0.25), nn.Linear(256, num_classes))


@register_model("fast-cnn", title="Fast CNN (modern)",
                description="Conv 24@5x5 and 32@3x3 with BatchNorm, linear 256 with dropout: past 99% in a minute on a CPU.")
def fast_cnn(*, image_size: int, num_classes: int) -> nn.Module:
    return _batch_norm_cnn(24, image_size, num_classes)


@register_model("quick-cnn", title="Quick CNN (modern, lighter)",
                description="Fast CNN with 16 first filters instead of 24: the first layer, where a CPU spends most of "
                            "a step, costs two thirds as much; past 99% in about 10 s on 2 cores.")
def quick_cnn(*, image_size: int, num_classes: int) -> nn.Module:
    return _batch_norm_cnn(16, image_size, num_classes)
