"""Inside the network: what the layer views cost on top of a plain prediction of one 28x28 input.

    python bench/bench_inside.py [--rounds 30] [--repeats 10] [--threads N]

Interleaved rounds (as bench_predict.py), each timing `repeats` calls; medians per call, the shipped model, one
drawn digit already preprocessed to 28x28 (what the page holds after a stroke).
A: core.inference.predict_proba of the one image: the plain prediction (goal < 5 ms).
B: core.inside.look_inside of the same image: every layer's activations by forward hooks, the first conv's
   filters and the probabilities (the layer views' engine; goal: B - A < 50 ms).
C: ui.inside.inside_figures of B's result: building the plotly figures (the page caches them per drawing); their
   size as plotly JSON is printed too.
D: core.inference.saliency with 16 noisy copies, as the page made its map before (gradient SmoothGrad).
E: core.saliency.saliency_map with its defaults (Captum: Integrated Gradients under SmoothGrad).
F: core.inference.predict_image of the 280x280 canvas the digit was drawn on: preprocessing (with the checks for
   ink that is no digit) and the prediction, what the page does after each stroke.
Then, for a drawn digit of each class, the share of each map's mass on the ink or within 2 px of it: the plain
gradient, D, E, and Captum's Grad-CAM on the last conv block (measured to choose between them; not in core).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_predict import interleaved  # noqa: E402  (bench/ is the script's folder)
from core.inference import load_default_model, model_inputs, predict_image, predict_proba, saliency  # noqa: E402
from core.inside import look_inside  # noqa: E402
from core.models import to_log_probs  # noqa: E402
from core.preprocess import preprocess  # noqa: E402
from core.saliency import saliency_map  # noqa: E402
from tests.drawn_digits import drawn  # noqa: E402
from ui.inside import inside_figures  # noqa: E402

PREDICT_GOAL_MS = 5.0  # issue 14: one 28x28 prediction with the layer views off
INSIDE_GOAL_MS = 50.0  # issue 14: what the layer views may add


def share_near_ink(pixels: np.ndarray, strength: np.ndarray) -> float:
    """The share of a map's mass on ink pixels or within 2 px of one (as tests/test_saliency.py)."""
    near_ink = ndimage.binary_dilation(pixels > 0, structure=np.ones((5, 5), dtype=bool))
    return float(np.abs(strength)[near_ink].sum() / max(float(np.abs(strength).sum()), 1e-12))


def grad_cam(run, pixels: np.ndarray, target: int) -> np.ndarray:
    """Captum's Grad-CAM on the shipped model's last conv block (its last pooling layer, 5x5), upsampled."""
    from captum.attr import LayerGradCam

    inputs = model_inputs(run, pixels)
    explainer = LayerGradCam(lambda batch: to_log_probs(run.model(batch), run.output), run.model[7])
    cam = explainer.attribute(inputs, target=target, relu_attributions=True)
    return F.interpolate(cam, size=pixels.shape, mode="bilinear", align_corners=False)[0, 0].detach().numpy()


def ink_shares(run) -> None:
    """Per class, how much of each kind of map lies on the ink."""
    kinds = {"plain gradient": lambda px, digit: saliency(run, px),
             "D gradient SmoothGrad x16": lambda px, digit: saliency(run, px, samples=16, noise=0.1),
             "E Captum IG + SmoothGrad": lambda px, digit: saliency_map(run, px),
             "Grad-CAM, last conv block": lambda px, digit: grad_cam(run, px, digit)}
    drawings = [preprocess(drawn(digit)).pixels for digit in range(10)]
    print("share of the map's mass on the ink or within 2 px, digits 0-9 drawn on the canvas:")
    for name, make in kinds.items():
        shares = [share_near_ink(pixels, make(pixels, digit)) for digit, pixels in enumerate(drawings)]
        print(f"  {name:<28} min {min(shares):.0%}, mean {np.mean(shares):.0%}: "
              + " ".join(f"{share:.0%}" for share in shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run = load_default_model()
    canvas = np.asarray(drawn(3))  # 280x280 RGBA, white strokes 18 px wide on opaque black
    pixels = preprocess(canvas).pixels
    view = look_inside(run, pixels)
    medians = interleaved({"A plain prediction": lambda: predict_proba(run, pixels[None]),
                           "B look_inside": lambda: look_inside(run, pixels),
                           "C figures of B": lambda: inside_figures(view, run.class_names),
                           "D old saliency x16": lambda: saliency(run, pixels, samples=16, noise=0.1),
                           "E saliency_map": lambda: saliency_map(run, pixels),
                           "F predict_image (canvas)": lambda: predict_image(run, canvas)},
                          args.rounds, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.rounds} rounds x {args.repeats} calls")
    for name, value in medians.items():
        print(f"  {name:<24} {value:8.2f} ms median")
    sizes = [len(figure.to_json()) for figure in inside_figures(view, run.class_names)]
    print(f"  {len(sizes)} figures, {sum(sizes) / 1000:.0f} kB of plotly JSON (largest {max(sizes) / 1000:.0f} kB)")
    plain, inside = medians["A plain prediction"], medians["B look_inside"]
    added = inside - plain
    print(f"plain prediction {plain:.2f} ms (goal < {PREDICT_GOAL_MS:g} ms: "
          f"{'met' if plain < PREDICT_GOAL_MS else 'NOT met'}); the layer views add {added:.2f} ms "
          f"= {inside / plain:.2f}x the plain prediction (goal < {INSIDE_GOAL_MS:g} ms: "
          f"{'met' if added < INSIDE_GOAL_MS else 'NOT met'})")
    ink_shares(run)


if __name__ == "__main__":
    main()
