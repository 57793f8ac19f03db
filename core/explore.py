"""What a dataset looks like: sample views, class and pixel statistics, 2-D embeddings, augmentation previews.

Plain numpy and torch: the Explore page renders these, tests check them, nothing here knows about Streamlit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import numpy as np
import torch

from core.augment import Augmentation, augment_batch
from core.inference import at_most_threads

Order = Literal["index", "shuffled"]
ORDERS: tuple[str, ...] = ("index", "shuffled")
Progress = Callable[[float, str], None]  # (fraction done 0..1, what is happening now)
PCA_DIMENSIONS = 50  # t-SNE runs on this many principal components, as is customary: less noise, much faster
EXAGGERATION = 12.0
EXAGGERATION_ITERATIONS = 250  # the "early exaggeration" phase that lets clusters form before they settle
PROGRESS_EVERY = 10  # iterations between progress reports


# ---- which samples a view shows ------------------------------------------------------------------------------

def filtered_indices(labels: np.ndarray, classes: Sequence[int] | None = None,
                     within: np.ndarray | None = None) -> np.ndarray:
    """Ascending indices of the samples whose label is in `classes` (all when None or empty), optionally only among `within`."""
    labels = np.asarray(labels)
    candidates = np.arange(len(labels)) if within is None else np.unique(np.asarray(within, dtype=np.int64))
    if classes:
        candidates = candidates[np.isin(labels[candidates], list(classes))]
    return candidates


def ordered(indices: np.ndarray, order: Order, seed: int = 0) -> np.ndarray:
    """The indices by dataset index, or shuffled reproducibly by `seed`."""
    if order == "index":
        return np.sort(indices)
    if order == "shuffled":
        return np.random.default_rng(seed).permutation(indices)
    raise ValueError(f"Unknown order {order!r}; choose index or shuffled.")


def page_count(total: int, per_page: int) -> int:
    """Pages needed for `total` samples (at least one, so an empty view still has a page to show)."""
    return max(1, math.ceil(total / max(1, per_page)))


def page_of(indices: np.ndarray, page: int, per_page: int) -> np.ndarray:
    """The samples on 1-based `page`; a page past the end is clamped to the last one."""
    page = min(max(1, page), page_count(len(indices), per_page))
    return indices[(page - 1) * per_page:page * per_page]


# ---- statistics ------------------------------------------------------------------------------------------------

def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """How many samples each class has (int64, length num_classes)."""
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)[:num_classes]


def class_mean_images(images: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The average image of each class, float32 (num_classes, H, W) in the images' own range; zeros for an empty class."""
    flat = torch.as_tensor(np.asarray(images)).reshape(len(images), -1).float()
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    sums = torch.zeros(num_classes, flat.shape[1]).index_add_(0, labels_t, flat)
    counts = torch.bincount(labels_t, minlength=num_classes)[:num_classes].clamp_min(1).unsqueeze(1)
    return (sums / counts).reshape(num_classes, *np.shape(images)[1:]).numpy()


@dataclass(frozen=True)
class PixelStatistics:
    """Pixel intensities of a set of images, in their own range 0..max_value."""

    max_value: int
    mean: float
    std: float
    background_share: float  # pixels exactly 0: most of a digit image is empty
    saturated_share: float  # pixels at max_value: full-strength ink
    histogram: np.ndarray  # count of pixels at each value 0..max_value (int64, length max_value + 1)
    mean_image: np.ndarray  # float32 (H, W): where the ink usually is
    std_image: np.ndarray  # float32 (H, W): where images differ most
    ink_per_image: np.ndarray  # float32 (N,): each image's mean intensity as a share of max_value


def pixel_statistics(images: np.ndarray, max_value: int) -> PixelStatistics:
    """Intensity histogram, mean and spread of every pixel, and how much ink each image carries."""
    pixels = torch.as_tensor(np.asarray(images))
    values = pixels.reshape(-1).long()
    histogram = torch.bincount(values, minlength=max_value + 1)[:max_value + 1].numpy()
    total = max(1, values.numel())
    as_float = pixels.float()
    levels = np.arange(max_value + 1)
    mean = float((histogram * levels).sum() / total)
    variance = float((histogram * (levels - mean) ** 2).sum() / total)
    return PixelStatistics(
        max_value, mean, math.sqrt(variance), float(histogram[0] / total), float(histogram[max_value] / total),
        histogram.astype(np.int64), as_float.mean(0).numpy(), as_float.std(0, correction=0).numpy(),
        (as_float.reshape(len(pixels), -1).mean(1) / max_value).numpy())


# ---- embeddings -------------------------------------------------------------------------------------------------

def embedding_subset(total: int, size: int, seed: int = 0) -> np.ndarray:
    """A reproducible random choice of `size` sample indices (ascending), or all of them when there are fewer."""
    if size >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size, replace=False))


def pixel_features(images: np.ndarray, max_value: int) -> np.ndarray:
    """Images as float32 rows (N, H*W) in 0..1: what PCA and t-SNE compare."""
    return np.asarray(images, dtype=np.float32).reshape(len(images), -1) / float(max_value)


@dataclass(frozen=True)
class PcaResult:
    """Principal-component coordinates and the share of the variance each component explains."""

    coordinates: np.ndarray  # float32 (N, components)
    explained: np.ndarray  # float64 (components,)


def pca(features: np.ndarray, components: int = 2) -> PcaResult:
    """Project rows onto their first principal components, exactly (eigenvectors of the covariance).

    Faster here than scikit-learn's full SVD for a few thousand images (the covariance is only pixels x pixels);
    each component's sign is fixed so its largest loading is positive, so the same data gives the same picture.
    """
    rows = torch.as_tensor(np.ascontiguousarray(features, dtype=np.float32))
    components = max(1, min(components, rows.shape[1]))
    centred = rows - rows.mean(0)
    covariance = (centred.T @ centred).double() / max(1, len(rows) - 1)
    variances, vectors = torch.linalg.eigh(covariance)  # ascending
    variances, vectors = variances.flip(0).clamp(min=0), vectors.flip(1)[:, :components]
    signs = torch.sign(vectors.gather(0, vectors.abs().argmax(0, keepdim=True)))
    vectors = (vectors * signs).float()
    total = float(variances.sum()) or 1.0
    return PcaResult((centred @ vectors).numpy(), (variances[:components] / total).numpy())


def tsne(features: np.ndarray, *, perplexity: float = 30.0, iterations: int = 500,
         progress: Progress | None = None) -> np.ndarray:
    """2-D t-SNE coordinates (N, 2) float32, reporting progress every few iterations.

    The standard algorithm (van der Maaten & Hinton 2008, with scikit-learn's defaults: PCA start,
    early exaggeration 12 for 250 iterations, learning rate N/48, adaptive gains): sparse affinities over
    3*perplexity neighbours, exact repulsion. On 2,000 points it keeps local neighbourhoods as well as
    scikit-learn's TSNE (trustworthiness within 0.01), which gives no progress while it runs.
    """
    if len(features) < 4:
        raise ValueError(f"t-SNE needs at least 4 samples, got {len(features)}.")
    with at_most_threads(1):  # small memory-bound steps: on a busy 2-core machine a second thread made them 4x slower
        return _tsne(features, perplexity, iterations, progress or (lambda fraction, message: None))


def _tsne(features: np.ndarray, perplexity: float, iterations: int, report: Progress) -> np.ndarray:
    points = len(features)
    reduced = pca(features, PCA_DIMENSIONS).coordinates
    report(0.0, "finding each sample's neighbours")
    rows, columns, weights = _joint_affinities(torch.from_numpy(reduced), min(perplexity, (points - 1) / 3))
    start = reduced[:, :2] / max(float(reduced[:, 0].std()), 1e-12) * 1e-4  # tiny PCA layout, as scikit-learn
    layout = torch.as_tensor(start, dtype=torch.float32)
    if layout.shape[1] < 2:
        layout = torch.cat([layout, torch.zeros_like(layout)], dim=1)
    optimiser = _TsneOptimiser(layout, max(points / EXAGGERATION / 4, 50.0))
    for iteration in range(iterations):
        exaggeration = EXAGGERATION if iteration < EXAGGERATION_ITERATIONS else 1.0
        gradient = _tsne_gradient(optimiser.layout, rows, columns, weights * exaggeration)
        optimiser.step(gradient, 0.5 if iteration < EXAGGERATION_ITERATIONS else 0.8)
        if (iteration + 1) % PROGRESS_EVERY == 0:
            report(0.05 + 0.95 * (iteration + 1) / iterations, f"iteration {iteration + 1} of {iterations}")
    report(1.0, "done")
    return optimiser.layout.numpy().astype(np.float32)


def _joint_affinities(points: torch.Tensor, perplexity: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric t-SNE affinities p_ij as a sparse list (rows, columns, weights) summing to 1."""
    count = len(points)
    neighbours = min(count - 1, int(3 * perplexity + 1))
    distances = torch.cdist(points, points).pow_(2)
    distances.fill_diagonal_(float("inf"))
    nearest, columns = torch.topk(distances, neighbours, largest=False)
    nearest = nearest / nearest.median().clamp_min(1e-12)  # scale-free: the precision search starts near 1
    conditional = _conditional_affinities(nearest, perplexity)
    rows = torch.arange(count).repeat_interleave(neighbours)
    both_ways = torch.cat([rows * count + columns.reshape(-1), columns.reshape(-1) * count + rows])  # p_j|i + p_i|j
    pairs, slot = torch.unique(both_ways, return_inverse=True)
    values = torch.zeros(len(pairs)).index_add_(0, slot, conditional.reshape(-1).repeat(2))
    return pairs // count, pairs % count, values / values.sum()


def _conditional_affinities(distances: torch.Tensor, perplexity: float) -> torch.Tensor:
    """p_j|i for each row of neighbour distances, each row's Gaussian precision bisected to match `perplexity`."""
    target = math.log(perplexity)
    low = torch.full((len(distances), 1), -30.0)
    high = torch.full((len(distances), 1), 30.0)  # log precisions: the bisection works on all rows at once
    for _ in range(64):
        middle = (low + high) / 2
        probabilities = torch.softmax(-distances * middle.exp(), dim=1)
        entropy = -(probabilities * probabilities.clamp_min(1e-30).log()).sum(1, keepdim=True)
        too_flat = entropy > target  # more spread than wanted: raise the precision
        low, high = torch.where(too_flat, middle, low), torch.where(too_flat, high, middle)
    return torch.softmax(-distances * ((low + high) / 2).exp(), dim=1)


def _tsne_gradient(layout: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """d KL / d layout: sparse attraction along the affinities minus exact Student-t repulsion."""
    squared = (layout * layout).sum(1)
    kernel = torch.addmm(squared.unsqueeze(0), layout, layout.T, alpha=-2.0)  # |y_i|^2 - 2 y_i.y_j, in place below
    kernel.add_(squared.unsqueeze(1)).clamp_(min=0).add_(1).reciprocal_()
    kernel.fill_diagonal_(0)
    normaliser = kernel.sum()
    kernel.mul_(kernel)
    with_ones = torch.cat([layout, torch.ones(len(layout), 1)], dim=1)
    pulled = kernel @ with_ones  # one pass gives both sum_j q^2 y_j and sum_j q^2
    repulsion = (pulled[:, 2:] * layout - pulled[:, :2]) / normaliser
    difference = layout[rows] - layout[columns]
    strength = weights / (1 + (difference * difference).sum(1))
    attraction = torch.zeros_like(layout).index_add_(0, rows, strength.unsqueeze(1) * difference)
    return 4 * (attraction - repulsion)


class _TsneOptimiser:
    """Gradient descent with momentum and per-coordinate gains (Jacobs' delta-bar-delta), as every t-SNE uses."""

    def __init__(self, layout: torch.Tensor, learning_rate: float) -> None:
        self.layout = layout
        self.learning_rate = learning_rate
        self.update = torch.zeros_like(layout)
        self.gains = torch.ones_like(layout)

    def step(self, gradient: torch.Tensor, momentum: float) -> None:
        growing = (self.update * gradient) < 0
        self.gains = torch.where(growing, self.gains + 0.2, self.gains * 0.8).clamp_(min=0.01)
        self.update = momentum * self.update - self.learning_rate * self.gains * gradient
        self.layout = self.layout + self.update


# ---- augmentation preview -----------------------------------------------------------------------------------------

def augmented_copies(image: np.ndarray, augmentation: Augmentation, copies: int, max_value: int,
                     seed: int = 0) -> np.ndarray:
    """`copies` random variants of one uint8 image (H, W) as training draws them, uint8 (copies, H, W) in 0..max_value."""
    batch = torch.as_tensor(np.asarray(image), dtype=torch.float32).div(max_value)
    batch = batch.expand(copies, 1, *batch.shape[-2:]).contiguous()
    generator = torch.Generator().manual_seed(seed)
    varied = augment_batch(batch, augmentation, generator)
    return (varied[:, 0] * max_value).round().clamp(0, max_value).to(torch.uint8).numpy()
