"""How a saved model does on a dataset: predictions for a split, confusion matrix, per-class accuracy, mistakes."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from core.data import Dataset
from core.inference import predict_proba
from core.store import LoadedRun

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")


def split_arrays(data: Dataset, split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """The (images, labels) of one split; ValueError for a split that is neither train nor test."""
    if split == "train":
        return data.train_images, data.train_labels
    if split == "test":
        return data.test_images, data.test_labels
    raise ValueError(f"Unknown split {split!r}; choose train or test.")


def run_fits_dataset(run: LoadedRun, data: Dataset) -> str | None:
    """None when `run` can read `data`'s images as they are, else one sentence saying why not."""
    if run.input_format != data.input_format:
        return (f"{run.run_id} was trained on {run.input_format.size}x{run.input_format.size} images "
                f"({run.meta.get('dataset')}), not on {data.name}'s {data.image_size}x{data.image_size}.")
    if tuple(run.class_names) != tuple(data.class_names):
        return f"{run.run_id} knows the classes {', '.join(run.class_names)}, not {data.name}'s."
    return None


def predict_split(run: LoadedRun, data: Dataset, split: Split, limit: int | None = None) -> np.ndarray:
    """Class probabilities (N, classes) for the first `limit` images of a split (all when None).

    The dataset's uint8 images go in as they are: a run records the pixel_scale it was trained with
    (255 for MNIST-style data, 1 for digits' raw 0..16), and predict_proba applies it.
    """
    problem = run_fits_dataset(run, data)
    if problem:
        raise ValueError(problem)
    images, _ = split_arrays(data, split)
    return predict_proba(run, images if limit is None else images[:max(0, limit)])


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes) int64: rows are true classes, columns predicted ones."""
    labels, predictions = _paired(labels, predictions)
    if labels.size and (min(labels.min(), predictions.min()) < 0 or max(labels.max(), predictions.max()) >= num_classes):
        raise ValueError(f"labels and predictions must lie in 0..{num_classes - 1}.")
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.astype(np.int64).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Share of each true class predicted right (float64); a class with no samples gives 0, never NaN."""
    totals = confusion.sum(axis=1)
    correct = np.diag(confusion).astype(np.float64)
    return np.divide(correct, totals, out=np.zeros_like(correct), where=totals > 0)


def misclassified(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Indices (ascending) of the samples whose prediction differs from the label."""
    labels, predictions = _paired(labels, predictions)
    return np.flatnonzero(labels != predictions)


def cell_indices(labels: np.ndarray, predictions: np.ndarray, true_class: int, predicted_class: int) -> np.ndarray:
    """Indices of the samples in one confusion-matrix cell: labelled `true_class`, predicted `predicted_class`."""
    labels, predictions = _paired(labels, predictions)
    return np.flatnonzero((labels == true_class) & (predictions == predicted_class))


def _paired(labels: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as 1-D int64 arrays of one length; ValueError otherwise."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    predictions = np.asarray(predictions, dtype=np.int64).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.size} labels but {predictions.size} predictions.")
    return labels, predictions
