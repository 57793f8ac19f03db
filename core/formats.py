"""What a model eats: the input formats (torch-, numpy- and scipy-free, so listing runs and datasets stays cheap)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class InputFormat:
    """What a model eats: square images of `size`, values 0..max_value, made in MNIST's or the digits' style."""

    size: int  # 28 for MNIST-style data, 8 for scikit-learn digits
    max_value: int  # 255 for MNIST-style, 16 for digits
    style: Literal["mnist", "digits"]


# |mean|, std and pixel_scale beyond this (std and pixel_scale also below its inverse) become 0 or infinite in float32
# arithmetic, and every prediction NaN: the store loads no run outside it, and training starts none
NORMALIZATION_LIMIT = 1e6

MNIST_FORMAT = InputFormat(28, 255, "mnist")
DIGITS_FORMAT = InputFormat(8, 16, "digits")
