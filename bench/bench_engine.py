"""Engine vs the recipes' own data pipeline vs a bare training loop: images/s, interleaved A B C, medians.

    python bench/bench_engine.py [--data-dir ../shared/data] [--steps 200] [--rounds 3]

A: core.training (whole dataset in memory as tensors, batches by indexing).
B: the recipe pipeline: torchvision MNIST + ToTensor + Normalize + DataLoader (batch 64, shuffle, 0 workers).
C: the limit: forward, backward and optimizer step on batches already in memory, nothing else.
Same model, optimizer (SGD lr 0.01 momentum 0.5), batch size and number of steps in all three.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data import load_dataset  # noqa: E402
from core.models import build_model, model_spec, to_log_probs  # noqa: E402
from core.training import BatchProgress, Started, TrainConfig, Training  # noqa: E402

BATCH = 64


def engine(model: str, data_dir: str, steps: int) -> float:
    config = TrainConfig(model=model, dataset="mnist", data_dir=data_dir, epochs=1, batch_size=BATCH,
                         optimizer="momentum", learning_rate=0.01, momentum=0.5, train_limit=steps * BATCH,
                         progress_every=steps)
    started = None
    for event in Training(config).events():
        if isinstance(event, Started):
            started = time.perf_counter()
        if isinstance(event, BatchProgress) and event.step == steps:
            return steps * BATCH / (time.perf_counter() - started)
    raise RuntimeError("the engine did not reach the last step")


def _sgd_steps(model_name: str, batches, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(model_name, image_size=28)
    kind = model_spec(model_name).output
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
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


def recipe_pipeline(model: str, data_dir: str, steps: int) -> float:
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    dataset = datasets.MNIST(data_dir, train=True, download=False, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0)
    return _sgd_steps(model, loader, steps)


def bare_loop(model: str, data_dir: str, steps: int) -> float:
    data = load_dataset("mnist", data_dir)
    inputs = (data.train_images.unsqueeze(1).float() / 255 - 0.1307) / 0.3081
    generator = torch.Generator().manual_seed(0)
    batches = [(inputs[i], data.train_labels[i]) for i in
               (torch.randint(0, len(inputs), (BATCH,), generator=generator) for _ in range(steps))]
    return _sgd_steps(model, batches, steps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    available = len(load_dataset("mnist", args.data_dir).train_labels) // BATCH  # loading is not what is measured
    args.steps = min(args.steps, available)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, {args.steps} steps, "
          f"{args.rounds} interleaved rounds, medians")
    for model in ("net-10-20", "lenet5"):
        results: dict[str, list[float]] = {"engine": [], "recipe": [], "bare": []}
        for _ in range(args.rounds):
            for name, run in (("engine", engine), ("recipe", recipe_pipeline), ("bare", bare_loop)):
                results[name].append(run(model, args.data_dir, args.steps))
        median = {name: statistics.median(values) for name, values in results.items()}
        print(f"{model:<10} engine {median['engine']:7,.0f} img/s | recipe pipeline {median['recipe']:7,.0f} | "
              f"bare loop {median['bare']:7,.0f} | engine/recipe {median['engine'] / median['recipe']:.2f}x "
              f"(goal 3) | engine/bare {median['engine'] / median['bare']:.2f} (goal 0.9)")


if __name__ == "__main__":
    main()
