"""Saliency people can read, with Captum: which pixels of the input made the answer.

Integrated Gradients from a blank input credits the ink (a pixel equal to the blank one gets nothing), and
SmoothGrad (Captum's NoiseTunnel) averages it over noisy copies, which removes the speckle of a single gradient.
Grad-CAM was tried and left out: on the shipped model its coarse maps put 0% to 86% of their mass near the ink,
digit by digit, against 82% to 98% here (bench/README.md). Captum (and matplotlib with it) is imported on first
use: about 1.6 s, once a process.
"""

from __future__ import annotations

import numpy as np
import torch

from core.inference import model_inputs, small_batch_kernels
from core.models import to_log_probs
from core.store import LoadedRun

SAMPLES = 8  # noisy copies for SmoothGrad: 4 to 16 give the same map on drawn digits (bench/bench_inside.py)
STEPS = 8  # Integrated Gradients' steps from the blank input to the image; the map is no cleaner with 16
NOISE = 0.1  # SmoothGrad's noise, as a share of the input's range


def _chosen(run: LoadedRun, inputs: torch.Tensor, target: int | None) -> int:
    """The class to explain: `target`, else the model's answer."""
    if target is not None:
        return target
    with torch.inference_mode():
        return int(run.model(inputs).argmax(dim=1)[0])


def _scaled(strength: torch.Tensor) -> np.ndarray:
    """A map's absolute values (H, W) scaled so the strongest is 1."""
    values = strength.detach().abs().float().numpy()
    peak = float(values.max())
    return values / peak if peak > 0 else values


def _smooth_integrated_gradients(run: LoadedRun, inputs: torch.Tensor, target: int, samples: int, noise: float,
                                 seed: int) -> torch.Tensor:
    """SmoothGrad over Integrated Gradients from the blank input (the model's view of no ink), (H, W)."""
    from captum.attr import IntegratedGradients, NoiseTunnel

    blank = model_inputs(run, np.zeros(inputs.shape[-2:], dtype=np.uint8))
    spread = float(inputs.max() - blank.min()) or 1.0
    log_probs = lambda batch: to_log_probs(run.model(batch), run.output)  # noqa: E731  (whatever the last layer emits)
    explainer = NoiseTunnel(IntegratedGradients(log_probs))  # no hooks: safe on the model every session shares
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same map for the same input, rerun after rerun
        attributions = explainer.attribute(inputs, nt_type="smoothgrad", nt_samples=samples, stdevs=noise * spread,
                                           baselines=blank, target=target, n_steps=STEPS)
    return attributions[0, 0]


def saliency_map(run: LoadedRun, pixels: np.ndarray, target: int | None = None, *, samples: int = SAMPLES,
                 noise: float = NOISE, seed: int = 0) -> np.ndarray:
    """How much each pixel of one preprocessed image (H, W) counted for class `target` (default: the answer):
    |SmoothGrad of Integrated Gradients| scaled so the strongest pixel is 1. The model is left untouched."""
    inputs = model_inputs(run, pixels)[:1]
    with torch.inference_mode(False), torch.enable_grad(), small_batch_kernels():
        inputs = inputs.clone()  # a normal tensor: one made under inference_mode cannot take part in autograd
        chosen = _chosen(run, inputs, target)
        return _scaled(_smooth_integrated_gradients(run, inputs, chosen, max(1, samples), noise, seed))
