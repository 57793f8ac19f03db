"""Inside the network: what the layer views cost on top of a plain prediction of one 28x28 input.

    python bench/bench_inside.py [--rounds 30] [--repeats 10] [--threads N]

Interleaved rounds (as bench_predict.py), each timing `repeats` calls; medians per call, the shipped model, one
drawn digit already preprocessed to 28x28 (what the page holds after a stroke).
A: core.inference.predict_proba of the one image: the plain prediction (goal < 5 ms).
B: core.inside.look_inside of the same image: every layer's activations by forward hooks, the first conv's
   filters and the probabilities (the layer views' engine; goal: B - A < 50 ms).
C: ui.inside.inside_figures of B's result: building the plotly figures (the page caches them per drawing); their
   size as plotly JSON is printed too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_predict import interleaved  # noqa: E402  (bench/ is the script's folder)
from core.inference import load_default_model, predict_proba  # noqa: E402
from core.inside import look_inside  # noqa: E402
from core.preprocess import preprocess  # noqa: E402
from tests.drawn_digits import drawn  # noqa: E402
from ui.inside import inside_figures  # noqa: E402

PREDICT_GOAL_MS = 5.0  # issue 14: one 28x28 prediction with the layer views off
INSIDE_GOAL_MS = 50.0  # issue 14: what the layer views may add


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run = load_default_model()
    pixels = preprocess(drawn(3)).pixels
    view = look_inside(run, pixels)
    medians = interleaved({"A plain prediction": lambda: predict_proba(run, pixels[None]),
                           "B look_inside": lambda: look_inside(run, pixels),
                           "C figures of B": lambda: inside_figures(view, run.class_names)},
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


if __name__ == "__main__":
    main()
