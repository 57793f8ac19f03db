"""Engine vs the recipes' own data pipeline vs bare training loops: images/s, interleaved A B C D rounds, medians.

    python bench/bench_engine.py [--data-dir ../shared/data] [--steps 200] [--rounds 3] [--datasets mnist fashion-mnist]
                                 [--threads N]

A: core.training (whole dataset in memory as tensors, prepared once, batches by indexing).
B: the recipe pipeline: torchvision dataset + ToTensor + Normalize + DataLoader (batch 64, shuffle, 0 workers)
   and the recipe's own loop (torch.optim.SGD as the recipes write it).
C: the limit: forward, backward and step on batches already in memory, with the engine's compute choices
   (channels-last weights, fused optimizer step, inputs already at the model's own size), nothing else.
D: the plain bare loop: C as the recipes write it (default layout, unfused SGD, the model resizes every batch).
Same model, optimizer (SGD lr 0.01 momentum 0.5), batch size 64 and number of steps in all four; each run
trains on the whole training split (MNIST: the subset in --data-dir; Fashion-MNIST: the full 60,000).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import DATASETS, IDX_STEMS, dataset_spec, is_available, load_dataset  # noqa: E402
from core.models import build_model, leading_resize, model_spec, to_log_probs  # noqa: E402
from core.training import BatchProgress, Started, TrainConfig, Training, normalized, scaled_pixels  # noqa: E402

BATCH = 64
MODELS = ("net-10-20", "lenet5")
TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def engine(model: str, dataset: str, root: str, steps: int) -> float:
    config = TrainConfig(model=model, dataset=dataset, data_dir=root, epochs=1, batch_size=BATCH,
                         optimizer="momentum", learning_rate=0.01, momentum=0.5, progress_every=steps)
    stop, started = threading.Event(), 0.0
    for event in Training(config).events(stop):
        if isinstance(event, Started):
            started = time.perf_counter()
        if isinstance(event, BatchProgress) and event.step == steps:
            stop.set()  # the rest of the epoch is not measured
            return steps * BATCH / (time.perf_counter() - started)
    raise RuntimeError("the engine did not reach the last step")


def _sgd_steps(model: torch.nn.Module, kind: str, batches, steps: int, fused: bool) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5, **({"fused": True} if fused else {}))
    start, done = time.perf_counter(), 0
    for images, labels in batches:
        loss = F.nll_loss(to_log_probs(model(images), kind), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += 1
        if done == steps:
            break
    return steps * BATCH / (time.perf_counter() - start)


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, image_size=28)


def recipe_pipeline(model: str, dataset: str, root: str, steps: int) -> float:
    from torchvision import datasets, transforms

    spec = dataset_spec(dataset)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((spec.mean,), (spec.std,))])
    source = datasets.MNIST if dataset == "mnist" else datasets.FashionMNIST
    loader = torch.utils.data.DataLoader(source(root, train=True, download=False, transform=transform),
                                         batch_size=BATCH, shuffle=True, num_workers=0)
    return _sgd_steps(_model(model), model_spec(model).output, loader, steps, fused=False)


def _memory_batches(model: torch.nn.Module, dataset: str, root: str, steps: int, at_model_size: bool):
    data = load_dataset(dataset, root)
    generator = torch.Generator().manual_seed(0)
    picks = [torch.randint(0, len(data.train_labels), (BATCH,), generator=generator) for _ in range(steps)]
    resize = leading_resize(model) if at_model_size else None
    batches = []
    for pick in picks:
        images = scaled_pixels(data.train_images[pick], 255.0)
        if resize is not None:
            images = resize(images)
        batches.append((normalized(images, data.mean, data.std), data.train_labels[pick]))
    return batches


def bare_loop(model: str, dataset: str, root: str, steps: int) -> float:
    network = _model(model).to(memory_format=torch.channels_last)
    batches = _memory_batches(network, dataset, root, steps, at_model_size=True)
    return _sgd_steps(network, model_spec(model).output, batches, steps, fused=True)


def plain_bare_loop(model: str, dataset: str, root: str, steps: int) -> float:
    network = _model(model)
    batches = _memory_batches(network, dataset, root, steps, at_model_size=False)
    return _sgd_steps(network, model_spec(model).output, batches, steps, fused=False)


PIPELINES = {"engine": engine, "recipe": recipe_pipeline, "bare": bare_loop, "plain bare": plain_bare_loop}


def torchvision_root(dataset: str, data_dir: str, scratch: Path) -> str:
    """A root that both core.data and torchvision read: torchvision wants unzipped files in <Name>/raw."""
    folder = DATASETS[dataset].locator(Path(data_dir))
    raw = scratch / TORCHVISION_FOLDERS[dataset] / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for stem in IDX_STEMS:
        source = next(path for path in (folder / stem, folder / f"{stem}.gz") if path.is_file())
        opener = gzip.open if source.suffix == ".gz" else open
        with opener(source, "rb") as packed, open(raw / stem, "wb") as unpacked:
            shutil.copyfileobj(packed, unpacked)
    return str(scratch)


def measure(dataset: str, root: str, steps: int, rounds: int) -> None:
    data = load_dataset(dataset, root)  # loading is not what is measured
    steps = min(steps, len(data.train_labels) // BATCH)
    print(f"{dataset}: {len(data.train_labels):,} training images, {steps} steps", flush=True)
    for model in MODELS:
        results: dict[str, list[float]] = {name: [] for name in PIPELINES}
        for _ in range(rounds):
            for name, run in PIPELINES.items():
                results[name].append(run(model, dataset, root, steps))
        median = {name: statistics.median(values) for name, values in results.items()}
        print(f"  {model:<10} engine {median['engine']:7,.0f} img/s | recipe pipeline {median['recipe']:7,.0f} | "
              f"bare loop {median['bare']:7,.0f} | plain bare loop {median['plain bare']:7,.0f} | "
              f"engine/recipe {median['engine'] / median['recipe']:.2f}x (goal 3) | "
              f"engine/bare {median['engine'] / median['bare']:.2f} (goal 0.9) | "
              f"engine/plain bare {median['engine'] / median['plain bare']:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"], choices=TORCHVISION_FOLDERS)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default (physical cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, "
          f"{args.rounds} interleaved rounds, medians")
    for dataset in args.datasets:
        if not is_available(dataset, Path(args.data_dir)):
            print(f"{dataset}: not on this machine, skipped")
            continue
        with tempfile.TemporaryDirectory() as scratch:
            measure(dataset, torchvision_root(dataset, args.data_dir, Path(scratch)), args.steps, args.rounds)


if __name__ == "__main__":
    main()
