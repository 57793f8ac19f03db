"""Every preset against its published result, like for like: the same number of optimizer steps.

    python bench/bench_recipes.py [--data-dir ../shared/data] [--presets lenet5 net-10-20] [--seeds 0 1 2]
                                  [--pipeline-seeds 0] [--ablations] [--out bench/results/recipes.jsonl]
    python bench/bench_recipes.py --estimate              # one epoch of each, engine and pipeline: the cost
    python bench/bench_recipes.py --report                # the table from what --out already holds

Each MNIST preset runs as many optimizer steps as its published run took on full MNIST (60,000 training images:
ceil(60,000 / batch) steps an epoch). On the offline 14,262-image subset an epoch is ~4.2 times shorter, so the
preset runs ~4.2 times as many epochs; with full MNIST in --data-dir the published epochs run as they are.
digits-cnn trains on the same data as published (scikit-learn digits), and fast-cnn-99 (ours, nothing published)
runs its own settings. Test accuracy is on all 10,000 MNIST test images (450 for digits).

Kinds of run, each a JSON line in --out as soon as it ends (runs already there are skipped: resume, or run
presets in separate processes and read them together with --report):
- engine: core.training with the preset's settings; its test accuracy after every epoch is kept, so the figure
  at the preset's own epoch count (what one click of the preset trains) comes from the same runs;
- pipeline: the reference script's own pipeline, reimplemented small and faithfully from ../shared/RECIPES.md
  (torchvision MNIST, per-sample PIL transforms, DataLoader with 0 workers, the model as the script defines it,
  its loop and loss), the same steps; its test accuracy at the end and at the preset's own epoch count;
- ablation (--ablations): the engine with one published choice undone (lenet5 without its horizontal flip).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_time_to_99 import _test_accuracy as test_accuracy  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.recipes import RECIPES, FULL_MNIST_TRAIN_IMAGES, Recipe, like_steps_epochs  # noqa: E402
from core.training import EpochEnd, Finished, Training  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "recipes.jsonl"
# One published choice undone, or half the training images for as many steps (what fewer distinct images cost).
ABLATIONS: dict[str, tuple[str, dict]] = {"lenet5": ("no-flip", {"augment_flip": False}),
                                          "net-10-20": ("half-data", {"train_limit": 7_131})}


@dataclass(frozen=True)
class Plan:
    """One preset's like-for-like run on the data at hand."""

    recipe: Recipe
    train_size: int
    epochs: int  # here, for as many steps as the published run

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.train_size / self.recipe.config.batch_size)

    @property
    def steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def published_steps(self) -> int | None:
        return self.recipe.published_steps


def plan(recipe: Recipe, data_dir: str) -> Plan:
    train_size = len(load_dataset(recipe.config.dataset, data_dir).train_labels)
    return Plan(recipe, train_size, like_steps_epochs(recipe, train_size))


# ---- the engine ------------------------------------------------------------------------------------------------

def run_engine(config: TrainConfig) -> dict:
    """Train `config` with core.training; its test accuracy per epoch, time and speed."""
    start = time.perf_counter()
    history: list[float] = []
    finished: Finished | None = None
    for event in Training(config).events():
        if isinstance(event, EpochEnd):
            history.append(event.test_accuracy)
        elif isinstance(event, Finished):
            finished = event
    if finished is None or finished.status != "done":
        raise RuntimeError(f"the engine's run ended {finished.status if finished else 'without a Finished event'}: "
                           f"{finished.reason if finished else ''}")
    return {"test_accuracy": history[-1], "per_epoch": history, "train_seconds": finished.elapsed_seconds,
            "wall_seconds": time.perf_counter() - start, "images_per_second": finished.images_per_second}


# ---- the reference pipelines, as RECIPES.md describes the scripts --------------------------------------------------

class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 16, 5, 1, 2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2))
        self.out = nn.Linear(256, 10)

    def forward(self, x):
        return F.softmax(self.out(self.conv(x).flatten(1)), dim=1)


class DigitNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 10, 5), nn.Conv2d(10, 20, 3)
        self.fc1, self.fc2 = nn.Linear(2000, 500), nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.relu(self.conv2(x)).flatten(1)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


class LeNet5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(self.conv2(x), 2, 2).flatten(1)  # no ReLU after conv2, as the script has it
        return F.log_softmax(self.fc3(F.relu(self.fc2(F.relu(self.fc1(x))))), dim=1)


class CNN5x5(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 16, 5, padding=2), nn.Conv2d(16, 32, 5, padding=2)
        self.fc1, self.fc2 = nn.Linear(1568, 256), nn.Linear(256, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


class Net1020(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 10, 5), nn.Conv2d(10, 20, 5)
        self.fc1, self.fc2 = nn.Linear(320, 50), nn.Linear(50, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2).flatten(1)
        return self.fc2(self.fc1(x))  # no activation between the two, as written


@dataclass(frozen=True)
class Reference:
    """What a reference script does: its model, loss on the model's output, and how it reads MNIST."""

    model: Callable[[], nn.Module]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    resize: int | None = None
    flip: bool = False
    test_batch: int = 1000  # its test loader's batch (the PyTorch example's --test-batch-size), as measured before


def _bce_one_hot(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy(output, F.one_hot(labels, 10).float())


REFERENCES: dict[str, Reference] = {
    "digits-cnn": Reference(DigitsCNN, _bce_one_hot),
    "digit-net": Reference(DigitNet, F.nll_loss),
    "lenet5": Reference(LeNet5, F.nll_loss, resize=32, flip=True, test_batch=32),
    "cnn-5x5": Reference(CNN5x5, F.cross_entropy),
    "net-10-20": Reference(Net1020, F.cross_entropy),
}


def _mnist_loaders(config: TrainConfig, reference: Reference, data_dir: str):
    from torchvision import datasets, transforms

    mean = 0.1307 if config.normalize_mean is None else config.normalize_mean
    std = 0.3081 if config.normalize_std is None else config.normalize_std
    resize = [transforms.Resize((reference.resize, reference.resize))] if reference.resize else []
    flip = [transforms.RandomHorizontalFlip()] if reference.flip else []
    tail = [transforms.ToTensor(), transforms.Normalize((mean,), (std,))]
    train = datasets.MNIST(data_dir, train=True, transform=transforms.Compose(resize + flip + tail))
    test = datasets.MNIST(data_dir, train=False, transform=transforms.Compose(resize + tail))
    return (torch.utils.data.DataLoader(train, batch_size=config.batch_size, shuffle=True, num_workers=0),
            torch.utils.data.DataLoader(test, batch_size=reference.test_batch, num_workers=0))


def _digits_loaders(config: TrainConfig, reference: Reference):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(bunch.images, bunch.target, random_state=0)
    as_set = lambda x, y: torch.utils.data.TensorDataset(  # noqa: E731
        torch.tensor(x, dtype=torch.float32).unsqueeze(1), torch.tensor(y))  # raw pixel values 0..16
    return (torch.utils.data.DataLoader(as_set(x_train, y_train), batch_size=config.batch_size, shuffle=True),
            torch.utils.data.DataLoader(as_set(x_test, y_test), batch_size=reference.test_batch))


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    momentum = config.momentum if config.optimizer == "momentum" else 0.0
    return torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=momentum)


def run_pipeline(config: TrainConfig, tested_at: Iterable[int]) -> dict:
    """The reference script's pipeline for `config.epochs` epochs; test accuracy at the epochs in `tested_at`."""
    start = time.perf_counter()
    reference = REFERENCES[config.model]
    torch.manual_seed(config.seed)
    train_loader, test_loader = (_digits_loaders(config, reference) if config.dataset == "digits" else
                                 _mnist_loaders(config, reference, str(config.data_dir)))
    model = reference.model()
    optimizer = _optimizer(config, model)
    tested, images = {}, 0
    for epoch in range(1, config.epochs + 1):
        for batch, labels in train_loader:
            loss = reference.loss(model(batch), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            images += len(labels)
        if epoch in tested_at or epoch == config.epochs:
            tested[epoch] = test_accuracy(model, test_loader)
    seconds = time.perf_counter() - start
    return {"test_accuracy": tested[config.epochs], "tested_at": {str(k): v for k, v in tested.items()},
            "wall_seconds": seconds, "images_per_second": images / seconds}


# ---- results file ------------------------------------------------------------------------------------------------

def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a killed run: the others still count
            continue
    return rows


def append_result(path: Path, row: dict) -> None:
    """One JSON line, under a lock: several processes may write the same file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)


def _key(row: dict) -> tuple:
    return row["preset"], row["kind"], row["seed"], row["train_size"], row["epochs"]


def _config(job_plan: Plan, seed: int, data_dir: str, overrides: dict | None = None) -> TrainConfig:
    return job_plan.recipe.settings(**{"epochs": job_plan.epochs, "seed": seed, "data_dir": data_dir, **(overrides or {})})


def run_jobs(args: argparse.Namespace) -> None:
    for name in args.presets:
        job_plan = plan(RECIPES[name], args.data_dir)
        own_epochs = job_plan.recipe.config.epochs
        kinds: list[tuple[str, list[int]]] = [("engine", args.seeds)]
        if name in REFERENCES:
            kinds.append(("pipeline", args.pipeline_seeds))
        if args.ablations and name in ABLATIONS:
            kinds.append((f"engine:{ABLATIONS[name][0]}", args.ablation_seeds))
        for kind, seeds in kinds:
            for seed in seeds:
                base = {"preset": name, "kind": kind, "seed": seed, "train_size": job_plan.train_size,
                        "epochs": job_plan.epochs, "steps": job_plan.steps, "batch_size": job_plan.recipe.config.batch_size}
                if _key(base) in {_key(row) for row in read_results(args.out)}:  # read again: other processes add
                    print(f"{name} {kind} seed {seed}: already in {args.out}", flush=True)
                    continue
                print(f"{name} {kind} seed {seed}: as many steps as published ...", flush=True)
                if kind == "pipeline":
                    measured = run_pipeline(_config(job_plan, seed, args.data_dir), {own_epochs})
                else:
                    overrides = dict(ABLATIONS[name][1]) if kind.startswith("engine:") else {}
                    if "train_limit" in overrides:  # as many steps on fewer images: more epochs
                        fewer = Plan(job_plan.recipe, overrides["train_limit"],
                                     like_steps_epochs(job_plan.recipe, overrides["train_limit"]))
                        overrides["epochs"] = fewer.epochs
                        base.update(trained_images=fewer.train_size, trained_epochs=fewer.epochs,
                                    trained_steps=fewer.steps)
                    measured = run_engine(_config(job_plan, seed, args.data_dir, overrides))
                row = {**base, **measured, "threads": torch.get_num_threads(), "torch": torch.__version__,
                       "load_average": os.getloadavg(), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S")}
                append_result(args.out, row)
                print(f"  {measured['test_accuracy']:.2%} in {measured['wall_seconds']:.0f} s", flush=True)


def estimate(args: argparse.Namespace) -> None:
    """One epoch of each preset (engine, then pipeline), and what the like-for-like runs would cost."""
    for name in args.presets:
        job_plan = plan(RECIPES[name], args.data_dir)
        one = {"engine": run_engine(_config(job_plan, 0, args.data_dir, {"epochs": 1}))["wall_seconds"]}
        if name in REFERENCES:
            one["pipeline"] = run_pipeline(_config(job_plan, 0, args.data_dir, {"epochs": 1}), ())["wall_seconds"]
        costs = ", ".join(f"{kind} {seconds:.1f} s an epoch, ~{seconds * job_plan.epochs / 60:.0f} min a seed"
                          for kind, seconds in one.items())
        print(f"{name}: {job_plan.epochs} epochs x {job_plan.steps_per_epoch} steps; {costs}; load "
              f"{os.getloadavg()[0]:.1f}", flush=True)


# ---- the report ----------------------------------------------------------------------------------------------------

def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.2%} (1 seed)"
    return f"{mean:.2%} ({min(values):.2%}-{max(values):.2%}, {len(values)} seeds)"


def _at_epoch(row: dict, epoch: int) -> float | None:
    if "trained_epochs" in row:  # fewer images: its epochs are not the preset's
        return None
    if "per_epoch" in row:
        return row["per_epoch"][epoch - 1] if len(row["per_epoch"]) >= epoch else None
    return row.get("tested_at", {}).get(str(epoch))


def report(rows: list[dict], data_dir: str) -> None:
    """Markdown: one line per preset and kind, on the data at hand."""
    print("| preset | published | steps: published / here (epochs here) | kind | test accuracy, mean (range) | "
          "at the preset's own epochs | time a seed (median) |")
    print("|---|---|---|---|---|---|---|")
    for name, recipe in RECIPES.items():
        job_plan = plan(recipe, data_dir)
        mine = [row for row in rows if row["preset"] == name and row["train_size"] == job_plan.train_size
                and row["epochs"] == job_plan.epochs]
        kinds = sorted({row["kind"] for row in mine}, key=lambda kind: (kind != "engine", kind))
        published = f"{recipe.reported_accuracy:.2%}" if recipe.published and recipe.reported_accuracy else (
            "about 99%" if recipe.published and name == "digit-net" else "-")
        steps = f"{job_plan.published_steps:,}" if job_plan.published_steps else "-"
        for kind in kinds or ["(not run)"]:
            runs = sorted((row for row in mine if row["kind"] == kind), key=lambda row: row["seed"])
            if not runs:
                print(f"| `{name}` | {published} | {steps} / {job_plan.steps:,} ({job_plan.epochs}) | not run | | | |")
                continue
            own = recipe.config.epochs
            at_own = [value for value in (_at_epoch(row, own) for row in runs) if value is not None]
            own_text = (f"{_spread(at_own)} at {own} epochs" if at_own and own != job_plan.epochs else
                        "same" if own == job_plan.epochs else "-")
            seconds = statistics.median(row["wall_seconds"] for row in runs)
            if "trained_images" in runs[0]:
                kind += f" ({runs[0]['trained_images']:,} images, {runs[0]['trained_epochs']} epochs)"
            print(f"| `{name}` | {published} | {steps} / {job_plan.steps:,} ({job_plan.epochs}) | {kind} | "
                  f"{_spread([row['test_accuracy'] for row in runs])} | {own_text} | {seconds:.0f} s |")


def measured_literals(rows: list[dict], data_dir: str) -> None:
    """core/recipes.py's `measured=` for each preset, from the engine runs: at as many steps as published and at
    the preset's own epoch count (from the same runs' per-epoch test accuracy; a schedule's run has only its end)."""
    for name, recipe in RECIPES.items():
        job_plan = plan(recipe, data_dir)
        runs = [row for row in rows if (row["preset"], row["kind"], row["train_size"], row["epochs"]) ==
                (name, "engine", job_plan.train_size, job_plan.epochs)]
        if not runs:
            continue
        epochs = sorted({recipe.config.epochs, job_plan.epochs} if recipe.config.schedule == "none" else {job_plan.epochs})
        entries = []
        for epoch in epochs:
            values = [value for value in (_at_epoch(row, epoch) for row in runs) if value is not None]
            entries.append(f"Measured({job_plan.train_size:_}, {epoch}, {statistics.fmean(values):.4f}, "
                           f"{min(values):.4f}, {max(values):.4f}, {len(values)})")
        print(f"{name}: measured=({', '.join(entries)},)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--presets", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="engine runs")
    parser.add_argument("--pipeline-seeds", nargs="*", type=int, default=[0], help="reference pipeline runs")
    parser.add_argument("--ablations", action="store_true", help="also lenet5 without its horizontal flip")
    parser.add_argument("--ablation-seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON lines, appended as runs end")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: two processes side by side)")
    parser.add_argument("--estimate", action="store_true", help="time one epoch of each and stop")
    parser.add_argument("--report", action="store_true", help="print the table from --out and stop")
    parser.add_argument("--measured", action="store_true", help="print core/recipes.py's measured figures and stop")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, data {args.data_dir}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.estimate:
        estimate(args)
        return
    if args.measured:
        measured_literals(read_results(args.out), args.data_dir)
        return
    if not args.report:
        run_jobs(args)
    report(read_results(args.out), args.data_dir)


if __name__ == "__main__":
    main()
