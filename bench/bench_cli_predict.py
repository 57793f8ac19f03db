"""`python -m core predict` on many files: time per image beyond the start-up, this checkout against another.

    python bench/bench_cli_predict.py [--before DIR] [--rounds 5] [--files 60] [--mnist 2000]

Per kind of file and checkout, each round runs the command on 1 file and on `--files` files (fresh processes); the
time per image beyond start-up is (t(N) - t(1)) / (N - 1), in wall-clock and in the child's CPU time (user + sys,
which a loaded machine stretches far less). Rounds interleave kinds and checkouts (after, before, ...); medians.
Kinds: a 280x280 canvas PNG (white strokes on opaque black, as the Predict page's canvas gives it), a 400x300
photo JPEG (dark ink, uneven light, noise: tests/drawn_digits.photo_of) and a 12-megapixel phone JPEG
(4032x3024, 2.8 MB: tests/drawn_digits.phone_photo, a tenth as many files).
With --mnist N, the first N MNIST test digits are written as 28x28 PNGs and read by each checkout's command with
--json: the accuracy through the CLI, and how many answers the two checkouts share.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.drawn_digits import drawn, encoded, phone_photo, photo_of  # noqa: E402

GOALS_MS = {"canvas PNG": 3.0, "photo JPEG": 10.0}  # issue 18, per image beyond start-up


def write_files(folder: Path, count: int) -> dict[str, list[Path]]:
    """`count` files of each kind (a tenth as many phone photos), digits 0-9 in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, list[Path]] = {"canvas PNG": [], "photo JPEG": [], "phone JPEG": []}
    for index in range(count):
        digit = index % 10
        path = folder / f"canvas-{index}.png"
        drawn(digit, width=(10, 18, 26)[index % 3]).save(path)
        kinds["canvas PNG"].append(path)
        path = folder / f"photo-{index}.jpg"
        path.write_bytes(encoded(photo_of(digit, seed=index), "JPEG", quality=90))
        kinds["photo JPEG"].append(path)
    for index in range(max(2, count // 10)):
        path = folder / f"phone-{index}.jpg"
        path.write_bytes(phone_photo(index % 10, seed=index))
        kinds["phone JPEG"].append(path)
    return kinds


def timed_predict(root: Path, paths: list[Path]) -> tuple[float, float]:
    """Wall-clock and CPU seconds of `python -m core predict PATHS` run in checkout `root`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core", "predict", *map(str, paths)], cwd=root, check=True,
                   stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(root)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def per_image_ms(root: Path, paths: list[Path]) -> tuple[float, float]:
    """Milliseconds per image beyond start-up, wall-clock and CPU: (t(N) - t(1)) / (N - 1)."""
    one_wall, one_cpu = timed_predict(root, paths[:1])
    all_wall, all_cpu = timed_predict(root, paths)
    return 1000 * (all_wall - one_wall) / (len(paths) - 1), 1000 * (all_cpu - one_cpu) / (len(paths) - 1)


def mnist_answers(root: Path, folder: Path, count: int, data_dir: Path) -> tuple[list[int | None], np.ndarray]:
    """The command's digit for each of the first `count` MNIST test images (written as PNGs), and the labels."""
    raw = data_dir / "MNIST" / "raw"
    images = np.frombuffer((raw / "t10k-images-idx3-ubyte").read_bytes(), np.uint8, offset=16).reshape(-1, 28, 28)
    labels = np.frombuffer((raw / "t10k-labels-idx1-ubyte").read_bytes(), np.uint8, offset=8)
    folder.mkdir(exist_ok=True)
    paths = [folder / f"{index}.png" for index in range(count)]
    for path, image in zip(paths, images):
        if not path.exists():
            Image.fromarray(image).save(path)
    done = subprocess.run([sys.executable, "-m", "core", "predict", "--json", *map(str, paths)], cwd=root, check=True,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    return [json.loads(line)["digit"] for line in done.stdout.splitlines()], labels[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout, measured in the same rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--mnist", type=int, default=0, help="also read this many MNIST test digits through the CLI")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    roots = {"after": REPO} | ({"before": args.before.resolve()} if args.before else {})
    with tempfile.TemporaryDirectory() as scratch:
        kinds = write_files(Path(scratch) / "files", args.files)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for round_number in range(args.rounds):
            for kind, paths in kinds.items():
                for name, root in roots.items():
                    results.setdefault((kind, name), []).append(per_image_ms(root, paths))
            print(f"round {round_number + 1}: " + ", ".join(
                f"{kind} {name} {values[-1][0]:.1f}/{values[-1][1]:.1f} ms" for (kind, name), values in results.items()),
                flush=True)
        print(f"per image beyond start-up ({args.rounds} rounds, medians; wall-clock / CPU):")
        for kind, paths in kinds.items():
            medians = {name: [statistics.median(v) for v in zip(*results[(kind, name)])] for name in roots}
            wall, cpu = medians["after"]
            line = f"  {kind:<11} x{len(paths):<3} after {wall:6.2f} / {cpu:6.2f} ms"
            if "before" in medians:
                old_wall, old_cpu = medians["before"]
                line += f" | before {old_wall:6.2f} / {old_cpu:6.2f} ms | after/before {wall / old_wall:.2f}x / {cpu / old_cpu:.2f}x"
            if kind in GOALS_MS:
                line += f" (goal <= {GOALS_MS[kind]:g} ms)"
            print(line)
        if args.mnist:
            answers = {name: mnist_answers(root, Path(scratch) / "mnist", args.mnist, args.data_dir)
                       for name, root in roots.items()}
            meta = json.loads((REPO / "core" / "default_model" / "meta.json").read_text())
            print(f"MNIST test digits through the CLI ({args.mnist:,} as 28x28 PNGs); the shipped model's recorded "
                  f"accuracy on all 10,000 as tensors: {meta.get('final', {}).get('test_accuracy')}")
            for name, (digits, labels) in answers.items():
                print(f"  {name}: accuracy {np.mean(np.array(digits, dtype=float) == labels):.4f}")
            if "before" in answers:
                same = sum(a == b for a, b in zip(answers["after"][0], answers["before"][0]))
                print(f"  the same answer in both: {same:,} of {args.mnist:,}")


if __name__ == "__main__":
    main()
