"""The whole process, net-10-20: start to saved run with the CLI against the recipe's own script, the same epochs.

    python bench/bench_whole_process.py [--data-dir ../shared/data] [--epochs 10] [--rounds 3] [--before DIR]

A: `python -m core train --recipe net-10-20 --epochs E --data-dir ROOT --runs-dir TMP --json`, a fresh process:
   imports, data, training, a test after every epoch, the run saved (safetensors + meta.json).
B: the recipe's own script in a fresh process (../shared/RECIPES.md, net-10-20): torchvision MNIST + ToTensor +
   Normalize + DataLoader (batch 64, shuffle, 0 workers), the same network, SGD lr 0.01 momentum 0.5, the running
   loss every 300 batches, a test through a DataLoader (batch 1000) after every epoch, `torch.save(model)` at the end.
With --before DIR (another checkout, e.g. `git worktree add /tmp/before <commit>`), that checkout's CLI runs too, in
the same rounds: before and after on a machine whose load varies. Rounds interleave B, A (and A before); each
process is timed from its start to its exit (wall) and by the CPU it used (user + system, its threads together).
The ratio is B / A: how many times sooner our process has a saved run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL = 3.0
RECIPE = "net-10-20"


def recipe_script(root: str, epochs: int, out: str) -> None:
    """net-10-20 as its tutorial writes it (run with --recipe-worker: a process of its own)."""
    import torch
    import torch.nn.functional as F
    from torchvision import datasets, transforms

    sys.path.insert(0, str(REPO))
    from core.models import build_model

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_loader = torch.utils.data.DataLoader(datasets.MNIST(root, train=True, transform=transform),
                                               batch_size=64, shuffle=True, num_workers=0)
    test_loader = torch.utils.data.DataLoader(datasets.MNIST(root, train=False, transform=transform),
                                              batch_size=1000, num_workers=0)
    torch.manual_seed(0)
    model = build_model(RECIPE, image_size=28)  # net-10-20 ends in log_softmax: nll_loss, as the tutorial
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    for epoch in range(1, epochs + 1):
        model.train()
        running = 0.0
        for batch, (images, labels) in enumerate(train_loader, 1):
            optimizer.zero_grad()
            loss = F.nll_loss(model(images), labels)
            loss.backward()
            optimizer.step()
            running += loss.item()
            if batch % 300 == 0:
                print(f"epoch {epoch} batch {batch} loss {running / 300:.4f}", flush=True)
                running = 0.0
        model.eval()
        correct = 0
        with torch.no_grad():
            for images, labels in test_loader:
                correct += int((model(images).argmax(1) == labels).sum())
        print(f"epoch {epoch}: test accuracy {correct / len(test_loader.dataset):.2%}", flush=True)
    torch.save(model, out)


def _timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one child process from its start to its exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def ours(checkout: Path, root: str, epochs: int, scratch: Path) -> tuple[float, float]:
    runs = tempfile.mkdtemp(dir=scratch)
    return _timed([sys.executable, "-m", "core", "train", "--recipe", RECIPE, "--epochs", str(epochs),
                   "--data-dir", root, "--runs-dir", runs, "--json"], checkout)


def theirs(root: str, epochs: int, scratch: Path) -> tuple[float, float]:
    out = str(Path(tempfile.mkdtemp(dir=scratch)) / "model.pt")
    return _timed([sys.executable, str(Path(__file__).resolve()), "--recipe-worker", "--data-dir", root,
                   "--epochs", str(epochs), "--out", out], REPO)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--epochs", type=int, default=10, help="the recipe's own: 10")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout whose CLI runs in the same rounds")
    parser.add_argument("--recipe-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.recipe_worker:
        recipe_script(args.data_dir, args.epochs, args.out)
        return
    sys.path.insert(0, str(REPO))
    from bench.bench_engine import torchvision_root  # both read it: torchvision wants unzipped files in MNIST/raw

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        root = torchvision_root("mnist", args.data_dir, scratch / "data")
        ways = {"recipe": lambda: theirs(root, args.epochs, scratch),
                "ours": lambda: ours(REPO, root, args.epochs, scratch)}
        if args.before:
            ways["ours, before"] = lambda: ours(args.before.resolve(), root, args.epochs, scratch)
        print(f"{RECIPE}, {args.epochs} epochs, {args.rounds} interleaved rounds, medians; wall / CPU seconds",
              flush=True)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for round_number in range(1, args.rounds + 1):
            for name, run in ways.items():
                results[name].append(run())
                wall, cpu = results[name][-1]
                print(f"  round {round_number} {name:<13} {wall:6.1f} s wall {cpu:6.1f} s CPU", flush=True)
        _report(results)


def _report(results: dict[str, list[tuple[float, float]]]) -> None:
    median = {name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
              for name, values in results.items()}
    recipe_wall, recipe_cpu = median["recipe"]
    for name, (wall, cpu) in median.items():
        line = f"{name:<13} {wall:6.1f} s wall {cpu:6.1f} s CPU"
        if name != "recipe":
            line += f" | recipe / {name}: {recipe_wall / wall:.2f}x wall, {recipe_cpu / cpu:.2f}x CPU (goal {GOAL:g}x)"
        print(line)
    ratios = [r_wall / o_wall for (r_wall, _), (o_wall, _) in zip(results["recipe"], results["ours"])]
    print("per round, recipe / ours (wall): " + ", ".join(f"{ratio:.2f}x" for ratio in ratios))


if __name__ == "__main__":
    main()
