"""Training throughput on 1 and 2 processes (torch.distributed, DDP on gloo): images/s, interleaved rounds, medians.

    python bench/bench_processes.py [--data-dir ../shared/data] [--rounds 3]

Each measurement is the command line itself, `python -m core train ... --processes N --json`, in a fresh process;
images/s is the run's own figure (images trained, all processes together, over the time from the first step to the
last epoch's end, evaluations included), the wall time adds starting Python, torch and the workers. Workloads:
digits-cnn on digits (3,018 parameters, batch 100: a step is mostly talk between processes) and fast-cnn on 6,000
MNIST images (about 0.2 M parameters, batch 128: more computing per step). Three setups: one process as the app
runs it (torch's threads on every core), one process on one thread (OMP_NUM_THREADS=1, as each of several workers
runs: it tells the threads' effect from the processes'), and two processes. Rounds rotate the order, so a machine
whose load changes weighs on all alike; the ratio is against the first setup in the same rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = {
    "digits-cnn, digits": ["--recipe", "digits-cnn", "--epochs", "10"],
    "fast-cnn, 6,000 MNIST images": ["--model", "fast-cnn", "--dataset", "mnist", "--batch-size", "128",
                                     "--epochs", "1", "--train-limit", "6000"],
}


SETUPS = {  # name: (processes, extra environment)
    "1 process, every core's thread": (1, {}),
    "1 process, 1 thread": (1, {"OMP_NUM_THREADS": "1"}),
    "2 processes, 1 thread each": (2, {}),  # torch.distributed.run's own default for several workers
}


def measure(arguments: list[str], setup: str, data_dir: str) -> tuple[float, float]:
    """(images/s of training, wall seconds of the whole command)."""
    processes, environment = SETUPS[setup]
    env = {name: value for name, value in os.environ.items() if name != "OMP_NUM_THREADS"}
    with tempfile.TemporaryDirectory() as runs:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "core", "train", *arguments, "--processes", str(processes),
                               "--data-dir", data_dir, "--runs-dir", runs, "--json"], cwd=REPO, capture_output=True,
                              text=True, timeout=1800, env={**env, **environment})
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{arguments}, {setup}: failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["images_per_second"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    for name, arguments in WORKLOADS.items():
        setups = list(SETUPS)
        results: dict[str, list[tuple[float, float]]] = {setup: [] for setup in setups}
        for round_number in range(args.rounds):
            for setup in setups[round_number % len(setups):] + setups[:round_number % len(setups)]:
                results[setup].append(measure(arguments, setup, args.data_dir))
        base = statistics.median(rate for rate, _ in results[setups[0]])
        print(f"\n{name} ({args.rounds} rounds, medians)", flush=True)
        for setup, runs in results.items():
            rate, wall = statistics.median(r for r, _ in runs), statistics.median(w for _, w in runs)
            print(f"  {setup:<31} {rate:8,.0f} images/s (x{rate / base:.2f}), {wall:5.1f} s wall; rounds: "
                  f"{', '.join(f'{r:,.0f}' for r, _ in runs)}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
