"""Prediction with a loaded run: probabilities, labels, saliency, and whole images in one call."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.models import to_probs
from core.preprocess import Preprocessed, preprocess
from core.store import LoadedRun, load_run_dir
from core.training import normalized, scaled_pixels

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
LOW_CONFIDENCE = 0.6  # below this the UI says the model is unsure


def model_inputs(run: LoadedRun, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8-range pixels (N, H, W) in the run's input format to the normalised tensor (N, 1, H, W) it was trained on."""
    images = torch.as_tensor(np.asarray(pixels), dtype=torch.float32)
    if images.ndim == 2:
        images = images.unsqueeze(0)
    return normalized(scaled_pixels(images, run.pixel_scale), run.mean, run.std)


def predict_proba(run: LoadedRun, pixels: np.ndarray | torch.Tensor, batch_size: int = 2000) -> np.ndarray:
    """Class probabilities (N, classes) for a batch of preprocessed images (N, H, W)."""
    inputs = model_inputs(run, pixels)
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            chunks.append(to_probs(run.model(inputs[start:start + batch_size]), run.output))
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, len(run.class_names)), dtype=np.float32)


def predict(run: LoadedRun, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
    """The most likely class index of each image."""
    return predict_proba(run, pixels).argmax(axis=1)


def saliency(run: LoadedRun, pixels: np.ndarray, target: int | None = None) -> np.ndarray:
    """|d p(target) / d input| for one image (H, W), scaled to 0..1: which pixels drove the answer."""
    inputs = model_inputs(run, pixels).requires_grad_(True)
    probabilities = to_probs(run.model(inputs), run.output)[0]
    chosen = int(probabilities.argmax()) if target is None else target
    probabilities[chosen].backward()
    grad = inputs.grad[0, 0].abs().numpy()
    peak = float(grad.max())
    return grad / peak if peak > 0 else grad


@dataclass(frozen=True)
class ImagePrediction:
    """One image's answer: what the model saw and what it thinks (None when the image is blank)."""

    preprocessed: Preprocessed
    probabilities: np.ndarray | None

    @property
    def blank(self) -> bool:
        return self.probabilities is None

    @property
    def label(self) -> int | None:
        return None if self.probabilities is None else int(self.probabilities.argmax())

    @property
    def confidence(self) -> float | None:
        return None if self.probabilities is None else float(self.probabilities.max())


def predict_image(run: LoadedRun, image: Image.Image | np.ndarray) -> ImagePrediction:
    """Preprocess an image the way the run's data was made, then predict it unless it is blank."""
    processed = preprocess(image, run.input_format)
    if processed.blank:
        return ImagePrediction(processed, None)
    return ImagePrediction(processed, predict_proba(run, processed.pixels[None])[0])


def load_default_model() -> LoadedRun:
    """The small MNIST model that ships with the app, so prediction works before any training."""
    return load_run_dir(DEFAULT_MODEL_DIR)
