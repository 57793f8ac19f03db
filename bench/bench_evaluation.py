"""Reading a whole test set: batches of 1,000 images (before) vs EVALUATION_BATCH (now), interleaved rounds, medians.

    python bench/bench_evaluation.py [--data-dir ../shared/data] [--rounds 5] [--threads N] [--models ...]
                                     [--fine-tune]

Per model: core.training.evaluation_sums over MNIST's 10,000 test images, as each epoch's test does (A: batch
1,000, B: core.config.EVALUATION_BATCH), with the model's freshly initialised weights; both must count the same
right answers. With --fine-tune: the default fine-tune of the shipped model (8 epochs, each testing the 10,000
MNIST images and a 150-image collection's held-out part) with test_batch_size 1,000 vs the default, whole, and
the accuracies it ends with, which must be the same.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import EVALUATION_BATCH, TrainConfig  # noqa: E402
from core.models import list_models  # noqa: E402
from core.training import Training, evaluation_sums  # noqa: E402

BEFORE = 1000
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def seconds(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def test_inputs(model: str, data_dir: str) -> tuple[Training, torch.Tensor, torch.Tensor]:
    """A Training of `model` on MNIST, and its test images as it feeds them to the model."""
    torch.manual_seed(0)
    training = Training(TrainConfig(model=model, dataset="mnist", data_dir=data_dir, epochs=1))
    _, _, test_x, test_y = training._tensors()
    return training, test_x, test_y


def compare_model(model: str, data_dir: str, rounds: int) -> tuple[float, float]:
    training, images, labels = test_inputs(model, data_dir)
    read = lambda batch: evaluation_sums(training.model, images, labels, training.output,  # noqa: E731
                                         training.config.loss, batch)
    assert read(BEFORE)[1] == read(EVALUATION_BATCH)[1], f"{model}: the two batch sizes disagree"
    before, now = [], []
    for _ in range(rounds):
        before.append(seconds(lambda: read(BEFORE)))
        now.append(seconds(lambda: read(EVALUATION_BATCH)))
    return statistics.median(before), statistics.median(now)


def fine_tune(test_batch: int, data_dir: str, folder: Path) -> tuple[float, tuple]:
    from core.config import fine_tune_config
    from core.inference import load_default_model

    shipped = load_default_model()
    config = replace(fine_tune_config("default", shipped.meta, str(folder), data_dir=data_dir),
                     test_batch_size=test_batch)
    start = time.perf_counter()
    finished = list(Training(config).events())[-1]
    return time.perf_counter() - start, (finished.test_accuracy, finished.collection_accuracy)


def compare_fine_tune(data_dir: str, rounds: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from font_digits import write_collection

    folder = Path(tempfile.mkdtemp()) / "wide-hand"
    write_collection(folder, per_class=15, seed=0)  # the fine-tune test's 150 digits
    before, now, ends = [], [], set()
    for _ in range(rounds):
        for batch, times in ((BEFORE, before), (EVALUATION_BATCH, now)):
            took, end = fine_tune(batch, data_dir, folder)
            times.append(took)
            ends.add(end)
    assert len(ends) == 1, f"the fine-tunes ended differently: {ends}"
    b, n = statistics.median(before), statistics.median(now)
    print(f"fine-tune of the shipped model, 8 epochs: {b:.2f} s -> {n:.2f} s, {b / n:.2f}x "
          f"(MNIST test {ends.pop()[0]:.2%} both ways; {rounds} rounds)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--fine-tune", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MNIST's 10,000 test images; "
          f"batch {BEFORE:,} -> {EVALUATION_BATCH}; medians of {args.rounds} interleaved rounds")
    for model in args.models:
        before, now = compare_model(model, args.data_dir, args.rounds)
        print(f"{model:12s} {before * 1000:7.0f} ms -> {now * 1000:6.0f} ms  {before / now:.2f}x")
    if args.fine_tune:
        compare_fine_tune(args.data_dir, max(1, args.rounds // 2))


if __name__ == "__main__":
    main()
