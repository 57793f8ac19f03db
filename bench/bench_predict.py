"""From a finished stroke to the answer: preprocessing + prediction of one drawn 280x280 canvas, vs the bare model.

    python bench/bench_predict.py [--data-dir ../shared/data] [--rounds 30] [--repeats 10] [--threads N]

Interleaved A B C C2 D rounds, each timing `repeats` calls; the figure is the median per call over all calls
(many short rounds, so that the load other programs put on the machine falls on every variant alike).
A: the bare default model's forward pass on an already preprocessed tensor, one thread as in C (the baseline).
B: core.preprocess.preprocess of the canvas (opaque black RGBA with white strokes, as the canvas sends it).
C: core.inference.predict_image: B, then the model (what the page does after each stroke). Small batches run on
   one torch thread (core.inference.SMALL_BATCH).
C2: the same with all of torch's threads, as before that rule: on a busy 2-core machine, waking the second
   thread after the numpy work of B can cost far more than the forward pass itself.
D: what else the page does for a drawing: decode the canvas's PNG and the SmoothGrad saliency map.
Then batch prediction of the 10,000 MNIST test images (already 28x28) in images/s.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import core.inference
from core.inference import (
    at_most_threads,
    load_default_model,
    model_inputs,
    predict_image,
    predict_proba,
    saliency,
)
from core.preprocess import preprocess
from tests.drawn_digits import drawn, encoded

GOAL_MS = 5.0  # the Speed issue's goal for preprocessing + prediction, median
LIMIT_MS = 20.0  # "feels instant"


def per_call_ms(action: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds of each of `repeats` calls."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        timings.append((time.perf_counter() - start) * 1000)
    return timings


def interleaved(actions: dict[str, Callable[[], object]], rounds: int, repeats: int) -> dict[str, float]:
    """Median ms per call of each action, timed A B C D, A B C D ... so that load on the machine hits all alike."""
    for action in actions.values():
        action()  # warm up: first calls allocate
    timings: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(rounds):
        for name, action in actions.items():
            timings[name] += per_call_ms(action, repeats)
    return {name: statistics.median(values) for name, values in timings.items()}


def mnist_test_images(data_dir: Path) -> np.ndarray | None:
    path = data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    if not path.exists():
        return None
    return np.frombuffer(path.read_bytes(), np.uint8, offset=16).reshape(-1, 28, 28)


def batch_images_per_second(run, images: np.ndarray, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        predict_proba(run, images)
        times.append(time.perf_counter() - start)
    return len(images) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    run = load_default_model()
    canvas = np.asarray(drawn(7))  # 280x280 RGBA, white strokes 18 px wide on opaque black
    png = encoded(drawn(7), "PNG")
    tensor = model_inputs(run, preprocess(canvas).pixels)

    def bare_forward() -> None:
        with torch.inference_mode(), at_most_threads(1):  # as C runs it
            run.model(tensor)

    def all_threads() -> None:
        small_batch, core.inference.SMALL_BATCH = core.inference.SMALL_BATCH, 0
        try:
            predict_image(run, canvas)
        finally:
            core.inference.SMALL_BATCH = small_batch

    def page_extras() -> None:
        np.asarray(Image.open(io.BytesIO(png)))
        saliency(run, preprocess(canvas).pixels, samples=16, noise=0.1)

    medians = interleaved({"A bare forward": bare_forward, "B preprocess": lambda: preprocess(canvas),
                           "C preprocess + predict": lambda: predict_image(run, canvas),
                           "C2 the same on all torch threads": all_threads,
                           "D decode PNG + preprocess + saliency": page_extras}, args.rounds, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.rounds} rounds x {args.repeats} calls")
    for name, value in medians.items():
        print(f"  {name:<38} {value:7.2f} ms median")
    total, bare = medians["C preprocess + predict"], medians["A bare forward"]
    print(f"preprocess + predict: {total:.2f} ms = {total / bare:.1f}x the bare forward pass "
          f"(goal < {GOAL_MS:g} ms: {'met' if total < GOAL_MS else 'NOT met'}; "
          f"< {LIMIT_MS:g} ms: {'met' if total < LIMIT_MS else 'NOT met'})")
    images = mnist_test_images(args.data_dir)
    if images is None:
        print(f"no MNIST test images under {args.data_dir}: batch prediction skipped")
        return
    print(f"batch prediction of the {len(images):,} MNIST test images: "
          f"{batch_images_per_second(run, images, 3):,.0f} images/s")


if __name__ == "__main__":
    main()
