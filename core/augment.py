"""Random shift, rotation, scale and flip applied to a whole batch at once (no per-sample PIL work)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random transforms; all zero means no augmentation."""

    shift: float = 0.0  # at most this fraction of the image side, each way
    rotation: float = 0.0  # degrees, each way
    scale: float = 0.0  # zoom factor within 1 +- scale
    horizontal_flip: bool = False  # lenet5's recipe flips digits (sic)

    @property
    def active(self) -> bool:
        return bool(self.shift or self.rotation or self.scale or self.horizontal_flip)


def _uniform(count: int, half_range: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(count, generator=generator) * 2 - 1) * half_range


def _affine_matrices(count: int, augmentation: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """One 2x3 sampling matrix per image, in affine_grid's normalised coordinates."""
    angle = _uniform(count, math.radians(augmentation.rotation), generator)
    zoom = 1 + _uniform(count, augmentation.scale, generator)
    shift = _uniform(2 * count, 2 * augmentation.shift, generator).view(count, 2)  # the side spans 2 units
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    row_x = torch.stack([cos, -sin, shift[:, 0]], dim=1)
    row_y = torch.stack([sin, cos, shift[:, 1]], dim=1)
    return torch.stack([row_x, row_y], dim=1)


def augment_batch(images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Randomly transform a float batch (N, 1, H, W) whose background is 0; returns a new tensor."""
    if not augmentation.active:
        return images
    count = images.shape[0]
    if augmentation.shift or augmentation.rotation or augmentation.scale:
        theta = _affine_matrices(count, augmentation, generator).to(images.device, images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if augmentation.horizontal_flip:
        flip = (torch.rand(count, generator=generator) < 0.5).to(images.device)
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    return images
