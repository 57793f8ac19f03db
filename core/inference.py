"""Prediction with a loaded run: probabilities, labels, saliency, whole images and rows of digits in one call."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

from core.config import EVALUATION_BATCH
from core.models import to_log_probs, to_probs
from core.preprocess import InputFormat, Preprocessed, preprocess, split_digits
from core.store import LoadedRun, load_run_dir
from core.training import normalized, normalized_array, scaled_pixels

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
LOW_CONFIDENCE = 0.6  # below this the UI says the model is unsure
SMALL_BATCH = 64  # up to this many images one thread answers sooner: waking a second costs more on a busy CPU
Result = TypeVar("Result")
Setting = TypeVar("Setting", int, bool)


def model_inputs(run: LoadedRun, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8-range pixels (N, H, W) or one image (H, W) in the run's input format to the normalised tensor
    (N, 1, H, W) it was trained on."""
    if isinstance(pixels, torch.Tensor):
        images = pixels.float()
        if images.ndim == 2:
            images = images.unsqueeze(0)
        return normalized(scaled_pixels(images, run.pixel_scale), run.mean, run.std)
    images = np.asarray(pixels)
    return torch.from_numpy(normalized_array(images[None] if images.ndim == 2 else images, run.pixel_scale,
                                             run.mean, run.std))


@contextmanager
def _lowered(current: Callable[[], Setting], change: Callable[[Setting], None], wanted: Setting) -> Iterator[None]:
    """A process-wide torch setting lowered to `wanted` for this block, restored after it. A training thread beside
    it runs so for those few milliseconds (on a busy 2-core machine, about as fast); overlapping blocks (Streamlit
    runs each session's script in a thread) find it already lowered, leave it, and the first one restores it."""
    before = current()
    if wanted >= before:
        yield
        return
    change(wanted)
    try:
        yield
    finally:
        change(before)


def at_most_threads(count: int) -> ContextManager[None]:
    """At most `count` torch intra-op threads for this block (see _lowered)."""
    return _lowered(torch.get_num_threads, torch.set_num_threads, count)


def _set_onednn(enabled: bool) -> None:
    torch.backends.mkldnn.enabled = enabled


@contextmanager
def small_batch_kernels() -> Iterator[None]:
    """For one image or a few: one torch thread, and torch's own convolutions instead of oneDNN's, whose set-up on
    each call costs more than a small batch's arithmetic (the default model's forward pass on one image: 0.40 ms ->
    0.23 ms; bench/README.md, "Prediction on torch's own kernels"). See _lowered for overlapping blocks."""
    with at_most_threads(1), _lowered(lambda: torch.backends.mkldnn.enabled, _set_onednn, False):
        yield


DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def _flat(layers: Iterable[nn.Module]) -> Iterator[nn.Module]:
    """The layers in order, nested plain sequences opened (a subclass may have a forward of its own)."""
    for layer in layers:
        if type(layer) is nn.Sequential:
            yield from _flat(layer)
        else:
            yield layer


def _folded(layers: Iterable[nn.Module]) -> list[nn.Module]:
    """The layers in order (_flat), each batch norm in eval mode folded into the convolution or linear layer before
    it, and dropout (nothing in eval mode) left out."""
    folded: list[nn.Module] = []
    for layer in _flat(layers):
        before = folded[-1] if folded else None
        if isinstance(layer, DROPOUTS) and not layer.training:
            continue
        if isinstance(before, nn.Conv2d) and _foldable(before, layer, nn.BatchNorm2d):
            folded[-1] = _fused_conv(before, layer)
        elif isinstance(before, nn.Linear) and _foldable(before, layer, nn.BatchNorm1d):
            folded[-1] = _fused_linear(before, layer)
        else:
            folded.append(layer)
    return folded


def _foldable(before: nn.Module, layer: nn.Module, norm: type[nn.Module]) -> bool:
    return isinstance(layer, norm) and not (before.training or layer.training) \
        and layer.running_mean is not None and layer.running_var is not None


# New modules, not copies (torch's fuse_*_eval deep-copy the layer, hooks and all: core.inside adds and removes hooks
# on the same shared model from other sessions' threads)
def _fused_conv(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                      conv.groups, bias=True, padding_mode=conv.padding_mode)
    fused.weight, fused.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                                    norm.eps, norm.weight, norm.bias)
    return fused.eval()


def _fused_linear(linear: nn.Linear, norm: nn.BatchNorm1d) -> nn.Linear:
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True)
    fused.weight, fused.bias = fuse_linear_bn_weights(linear.weight, linear.bias, norm.running_mean, norm.running_var,
                                                      norm.eps, norm.weight, norm.bias)
    return fused.eval()


_ANSWERING_LAYERS: weakref.WeakKeyDictionary[nn.Module, tuple[nn.Module, ...]] = weakref.WeakKeyDictionary()


def _answering_layers(model: nn.Module) -> tuple[nn.Module, ...]:
    """What answers for a model in eval mode: its layers _folded when it is a sequence (every model of the zoo), made
    once per model, so a loaded run's model must not change after its first answer (none does: fine-tuning trains a
    copy). The same function to float rounding (2e-6 in the default model's logits), and a forward pass on one image
    a quarter shorter: fewer layers, each called without the hook machinery of nn.Module.__call__ (bench/README.md,
    "Prediction: folded batch norms")."""
    if type(model) is not nn.Sequential or model.training:
        return (model,)
    if model not in _ANSWERING_LAYERS:
        with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, whatever mode the first caller is in
            _ANSWERING_LAYERS[model] = tuple(_folded(model))
    return _ANSWERING_LAYERS[model]


def model_output(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The model's output for `inputs`, through its _answering_layers (call under torch.inference_mode)."""
    layers = _answering_layers(model)
    if len(layers) == 1:
        return layers[0](inputs)
    for layer in layers:
        inputs = layer.forward(inputs)
    return inputs


def predict_proba(run: LoadedRun, pixels: np.ndarray | torch.Tensor, batch_size: int = EVALUATION_BATCH) -> np.ndarray:
    """Class probabilities (N, classes) for a batch of preprocessed images (N, H, W)."""
    inputs = model_inputs(run, pixels)
    chunks = []
    with torch.inference_mode(), small_batch_kernels() if len(inputs) <= SMALL_BATCH else nullcontext():
        for start in range(0, len(inputs), batch_size):
            chunks.append(to_probs(model_output(run.model, inputs[start:start + batch_size]), run.output))
    return torch.cat(chunks).numpy() if chunks else np.zeros((0, len(run.class_names)), dtype=np.float32)


def predict(run: LoadedRun, pixels: np.ndarray | torch.Tensor) -> np.ndarray:
    """The most likely class index of each image."""
    return predict_proba(run, pixels).argmax(axis=1)


def saliency(run: LoadedRun, pixels: np.ndarray, target: int | None = None, *, samples: int = 1,
             noise: float = 0.15, seed: int = 0) -> np.ndarray:
    """|d log p(target) / d input| for one image (H, W), scaled to 0..1: which pixels drove the answer.

    With samples > 1 the gradient is averaged over noisy copies of the input (SmoothGrad), which keeps the
    shape of the map and drops the speckle a single gradient has. The model's parameters are left untouched.
    """
    inputs = model_inputs(run, pixels)[:1]
    batch = inputs.repeat(samples, 1, 1, 1)
    if samples > 1:
        spread = float(inputs.max() - inputs.min()) or 1.0
        generator = torch.Generator().manual_seed(seed)  # the same map for the same input, rerun after rerun
        batch[1:] += torch.randn(batch[1:].shape, generator=generator) * (noise * spread)  # copy 0 stays clean
    with torch.inference_mode(False), torch.enable_grad(), small_batch_kernels():
        batch = batch.clone().requires_grad_(True)
        log_probs = to_log_probs(run.model(batch), run.output)  # log p: same direction as p, never saturated to 0
        chosen = int(log_probs[0].argmax()) if target is None else target
        (grad,) = torch.autograd.grad(log_probs[:, chosen].sum(), batch)  # not .backward(): the cached model is shared
    strength = grad.abs().mean(dim=0)[0].numpy()
    peak = float(strength.max())
    return strength / peak if peak > 0 else strength


@dataclass(frozen=True)
class Guess:
    """One class the model considers, with its probability."""

    label: int
    probability: float


@dataclass(frozen=True)
class ImagePrediction:
    """One image's answer: what the model saw and what it thinks (None when there is nothing to read)."""

    preprocessed: Preprocessed
    probabilities: np.ndarray | None

    @property
    def blank(self) -> bool:
        """No answer: no ink, or ink that is no digit (then `refusal` says why)."""
        return self.probabilities is None

    @property
    def refusal(self) -> str | None:
        """One sentence for the user when the ink is no digit (a dot, a speck, a flat line), asking for a bigger one."""
        return self.preprocessed.refusal

    @property
    def top_two(self) -> tuple[Guess, ...]:
        """The two likeliest classes, likeliest first (empty when blank): what an unsure answer shows."""
        if self.probabilities is None:
            return ()
        best = np.argsort(-self.probabilities, kind="stable")[:2]
        return tuple(Guess(int(label), float(self.probabilities[label])) for label in best)

    @property
    def label(self) -> int | None:
        return None if self.probabilities is None else int(self.probabilities.argmax())

    @property
    def confidence(self) -> float | None:
        return None if self.probabilities is None else float(self.probabilities.max())

    @property
    def unsure(self) -> bool:
        """The model's best guess has less than LOW_CONFIDENCE probability."""
        return self.probabilities is not None and float(self.probabilities.max()) < LOW_CONFIDENCE


def predict_preprocessed(run: LoadedRun, processed: Preprocessed) -> ImagePrediction:
    """Predict an already preprocessed image (in the run's input format) unless it is blank."""
    if processed.blank:
        return ImagePrediction(processed, None)
    return ImagePrediction(processed, predict_proba(run, processed.pixels[None])[0])


def predict_preprocessed_many(run: LoadedRun, processed: Sequence[Preprocessed]) -> list[ImagePrediction]:
    """Several images already preprocessed in the run's input format, the readable ones answered in one batch."""
    readable = [item.pixels for item in processed if not item.blank]
    rows = iter(predict_proba(run, np.stack(readable)) if readable else ())
    return [ImagePrediction(item, None if item.blank else next(rows)) for item in processed]


def predict_image(run: LoadedRun, image: Image.Image | np.ndarray) -> ImagePrediction:
    """Preprocess an image the way the run's data was made, then predict it unless it is blank."""
    return predict_preprocessed(run, preprocess(image, run.input_format))


@dataclass(frozen=True)
class NumberReading:
    """Several digits in a row read left to right; no digits when the image is blank."""

    digits: tuple[ImagePrediction, ...]
    class_names: tuple[str, ...]

    @property
    def blank(self) -> bool:
        return not self.digits

    @property
    def text(self) -> str:
        """The number as read, e.g. "1970" (class names joined by spaces when they are words)."""
        names = [self.class_names[digit.label] for digit in self.digits]
        return ("" if all(len(name) == 1 for name in names) else " ").join(names)

    @property
    def confidence(self) -> float:
        """The probability that every digit is right, taking the digits as independent."""
        return float(np.prod([digit.confidence for digit in self.digits])) if self.digits else 0.0

    @property
    def unsure(self) -> bool:
        """At least one digit is below LOW_CONFIDENCE."""
        return any(digit.unsure for digit in self.digits)


def read_preprocessed_digits(run: LoadedRun, parts: Sequence[Preprocessed]) -> NumberReading:
    """Predict digits already split and preprocessed in the run's input format, in one batch."""
    if not parts:
        return NumberReading((), run.class_names)
    probabilities = predict_proba(run, np.stack([part.pixels for part in parts]))
    return NumberReading(tuple(ImagePrediction(part, row) for part, row in zip(parts, probabilities)),
                         run.class_names)


def read_number(run: LoadedRun, image: Image.Image | np.ndarray) -> NumberReading:
    """Split an image of digits written in a row (left to right) and read each one."""
    return read_preprocessed_digits(run, split_digits(image, run.input_format))


def _each_format(runs: Sequence[LoadedRun], image: Image.Image | np.ndarray,
                 prepare: Callable[[Image.Image | np.ndarray, InputFormat], Any],
                 answer: Callable[[LoadedRun, Any], Result]) -> list[Result]:
    """`answer(run, prepare(image, format))` for each run, preparing the image once per input format."""
    prepared: dict[InputFormat, Any] = {}
    results = []
    for run in runs:
        if run.input_format not in prepared:
            prepared[run.input_format] = prepare(image, run.input_format)
        results.append(answer(run, prepared[run.input_format]))
    return results


def predict_each(runs: Sequence[LoadedRun], image: Image.Image | np.ndarray) -> list[ImagePrediction]:
    """One image through several runs (MNIST-style and 8x8 alike), preprocessed once per input format."""
    return _each_format(runs, image, preprocess, predict_preprocessed)


def read_number_each(runs: Sequence[LoadedRun], image: Image.Image | np.ndarray) -> list[NumberReading]:
    """One row of digits read by several runs, split once per input format."""
    return _each_format(runs, image, split_digits, read_preprocessed_digits)


def load_default_model() -> LoadedRun:
    """The small MNIST model that ships with the app, so prediction works before any training."""
    return load_run_dir(DEFAULT_MODEL_DIR)
