"""From a finished stroke to the answer: preprocessing + prediction of one drawn 280x280 canvas, vs the bare model.

    python bench/bench_predict.py [--data-dir ../shared/data] [--rounds 50] [--repeats 10] [--threads N]
                                  [--before DIR] [--back-to-back 2000] [--pauses 40]

Interleaved A B C C2 D rounds, each timing `repeats` calls; the figures are the median and the 99th percentile per
call over all calls (many short rounds, so that the load other programs put on the machine falls on every variant
alike), in wall-clock time and in the process's CPU time (which a loaded machine stretches far less: a call that is
preempted waits without using CPU).
A: the bare default model's forward pass on an already preprocessed tensor, as C runs it: its batch norms folded
   (core.inference.model_output; the model itself in checkouts before it), on one thread and torch's own
   convolutions (core.inference.small_batch_kernels; one thread alone in checkouts before that).
B: core.preprocess.preprocess of the canvas (opaque black RGBA with white strokes, as the canvas sends it).
C: core.inference.predict_image: B, then the model (what the page does after each stroke). Small batches run on
   one torch thread and torch's own convolutions (core.inference.SMALL_BATCH).
C2: the same with all of torch's threads and oneDNN's convolutions, as before that rule: on a busy 2-core machine,
   waking the second thread after the numpy work of B can cost far more than the forward pass itself.
D: what else the page does for a drawing: decode the canvas's PNG and the SmoothGrad saliency map.
Then C alone, --back-to-back calls in a row (in the rounds, one call in --repeats is the first after another
action); C right after pauses of 0 to 200 ms, asleep or spinning (--pauses rounds): after a pause of 20 ms or more
even a spinning process finds its caches emptied by the machine's other work, and so does each drawing the page
answers; and batch prediction of the 10,000 MNIST test images (already 28x28) in images/s.

Each checkout is timed in a worker process of its own (its `core` imported from its folder, the same canvas for
all): with --before DIR (another checkout, e.g. `git worktree add /tmp/before <commit>`) the two workers take
turns action by action within each round, so before and after meet the same moments of a loaded machine.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GOAL_P99_MS = 2.0  # issue 18: preprocess + predict one drawing, 99th percentile
ACTIONS = ("A bare forward", "B preprocess", "C preprocess + predict", "C2 the same on all torch threads",
           "D decode PNG + preprocess + saliency")


def per_call_ms(action: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Milliseconds of each of `repeats` calls: wall-clock, and CPU time of the whole process (all its threads)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return wall, cpu


def percentile(values: list[float], share: float) -> float:
    return float(np.percentile(values, share))


# ---- the worker: one checkout's code, timed on request ----------------------------------------------------------

def worker_actions(root: Path, canvas_file: Path, threads: int | None) -> tuple[dict[str, Callable[[], object]], object]:
    """The timed actions with `root`'s core (imported from there), and its default model."""
    sys.path.insert(0, str(root))
    import torch
    from PIL import Image

    import core.inference
    from core.inference import at_most_threads, load_default_model, model_inputs, predict_image, saliency
    from core.preprocess import preprocess

    if threads:
        torch.set_num_threads(threads)
    run = load_default_model()
    canvas = np.load(canvas_file)
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, "PNG")
    png = buffer.getvalue()
    tensor = model_inputs(run, preprocess(canvas).pixels)

    kernels = getattr(core.inference, "small_batch_kernels", lambda: at_most_threads(1))  # older checkouts: 1 thread

    forward = getattr(core.inference, "model_output", lambda model, inputs: model(inputs))  # older: the model itself

    def bare_forward() -> None:
        with torch.inference_mode(), kernels():  # as C runs it
            forward(run.model, tensor)

    def all_threads() -> None:
        small_batch, core.inference.SMALL_BATCH = core.inference.SMALL_BATCH, 0
        try:
            predict_image(run, canvas)
        finally:
            core.inference.SMALL_BATCH = small_batch

    def page_extras() -> None:
        np.asarray(Image.open(io.BytesIO(png)))
        saliency(run, preprocess(canvas).pixels, samples=16, noise=0.1)

    actions = dict(zip(ACTIONS, (bare_forward, lambda: preprocess(canvas), lambda: predict_image(run, canvas),
                                 all_threads, page_extras)))
    for action in actions.values():
        action()  # warm up: first calls allocate
    return actions, run


PAUSES = (("sleep", 0), ("sleep", 2), ("sleep", 20), ("spin", 20), ("sleep", 200))  # (how, ms) before a call
WARM_CALLS = 4  # before each pause: the second and third call after a wait are still slower than the rest


def pause(how: str, ms: float) -> None:
    """Wait `ms`: asleep (the process off the CPU), or spinning on it (the CPU kept busy with a loop that touches
    almost no memory)."""
    if how == "sleep":
        time.sleep(ms / 1000)
        return
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def after_pauses(predict: Callable[[], object], rounds: int) -> dict[str, list[list[float]]]:
    """For each of PAUSES, interleaved round by round: the first and the second call's ms right after warm calls and
    the pause, i.e. a drawing answered after the user's pause, with the machine's other work in between."""
    times = {f"{how} {ms}": [[], []] for how, ms in PAUSES}
    for _ in range(rounds):
        for how, ms in PAUSES:
            for _ in range(WARM_CALLS):
                predict()
            pause(how, ms)
            for position in range(2):
                start = time.perf_counter()
                predict()
                times[f"{how} {ms}"][position].append((time.perf_counter() - start) * 1000)
    return times


def serve(root: Path, canvas_file: Path, threads: int | None) -> None:
    """Answer the driver's requests on stdin, one JSON line each: an action's timings, or batch images/s."""
    actions, run = worker_actions(root, canvas_file, threads)
    from core.inference import predict_proba

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "action" in request:
            print(json.dumps(per_call_ms(actions[request["action"]], request["repeats"])), flush=True)
        elif "pauses" in request:
            print(json.dumps(after_pauses(actions[ACTIONS[2]], request["pauses"])), flush=True)
        else:
            images = np.load(request["images"])
            times = []
            for _ in range(request["rounds"]):
                start = time.perf_counter()
                predict_proba(run, images)
                times.append(time.perf_counter() - start)
            print(json.dumps(len(images) / statistics.median(times)), flush=True)


# ---- the driver ------------------------------------------------------------------------------------------------

class Worker:
    """One checkout's worker process."""

    def __init__(self, root: Path, canvas_file: Path, threads: int | None) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", str(root), "--canvas", str(canvas_file)]
        if threads:
            command += ["--threads", str(threads)]
        self.process = subprocess.Popen(command, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ask_raw(None)

    def ask_raw(self, request: dict | None):
        if request is not None:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker for {self.process.args[3]} stopped")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def mnist_test_images(data_dir: Path) -> np.ndarray | None:
    path = data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    if not path.exists():
        return None
    return np.frombuffer(path.read_bytes(), np.uint8, offset=16).reshape(-1, 28, 28)


def report(name: str, after: list[float], before: list[float] | None) -> str:
    line = f"  {name:<38} {statistics.median(after):7.2f} ms median {percentile(after, 99):7.2f} ms p99"
    if before:
        line += (f" | before {statistics.median(before):7.2f} / {percentile(before, 99):7.2f} ms"
                 f" | after/before {statistics.median(after) / statistics.median(before):.2f}x median,"
                 f" {percentile(after, 99) / percentile(before, 99):.2f}x p99")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--before", type=Path, help="another checkout, timed in the same rounds")
    parser.add_argument("--back-to-back", type=int, default=2000, metavar="N",
                        help="then C alone, N calls in a row per checkout (0: skip): its p99 without calls that come "
                             "first after another action, as one in `repeats` does in the rounds")
    parser.add_argument("--pauses", type=int, default=40, metavar="ROUNDS",
                        help="then C right after pauses of 0-200 ms, asleep or spinning (0: skip): how much a call "
                             "that comes after a wait costs, as each drawing does")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--canvas", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(args.worker, args.canvas, args.threads)
        return
    sys.path.insert(0, str(REPO))
    from tests.drawn_digits import drawn

    with tempfile.TemporaryDirectory() as scratch:
        canvas_file = Path(scratch) / "canvas.npy"
        np.save(canvas_file, np.asarray(drawn(7)))  # 280x280 RGBA, white strokes 18 px wide on opaque black
        roots = {"after": REPO} | ({"before": args.before.resolve()} if args.before else {})
        workers = {name: Worker(root, canvas_file, args.threads) for name, root in roots.items()}
        timings = {name: {action: [] for action in ACTIONS} for name in workers}
        cpu_times = {name: {action: [] for action in ACTIONS} for name in workers}
        for _ in range(args.rounds):
            for action in ACTIONS:
                for name, worker in workers.items():
                    wall, cpu = worker.ask_raw({"action": action, "repeats": args.repeats})
                    timings[name][action] += wall
                    cpu_times[name][action] += cpu
        steady = {name: worker.ask_raw({"action": ACTIONS[2], "repeats": args.back_to_back})[0]
                  for name, worker in workers.items()} if args.back_to_back else {}
        paused = {name: {f"{how} {ms}": [[], []] for how, ms in PAUSES} for name in workers} if args.pauses else {}
        for _ in range(args.pauses):  # a round each in turn: the machine's moments fall on both checkouts alike
            for name, worker in workers.items():
                for label, (first, second) in worker.ask_raw({"pauses": 1}).items():
                    paused[name][label][0] += first
                    paused[name][label][1] += second
        images = mnist_test_images(args.data_dir)
        batch = {}
        if images is not None:
            np.save(Path(scratch) / "images.npy", images)
            batch = {name: worker.ask_raw({"images": str(Path(scratch) / "images.npy"), "rounds": 3})
                     for name, worker in workers.items()}
        for worker in workers.values():
            worker.close()
    print(f"{args.rounds} rounds x {args.repeats} calls; after: {REPO}" + (f", before: {args.before}" if args.before else ""))
    print("wall-clock per call:")
    for action in ACTIONS:
        print(report(action, timings["after"][action], timings.get("before", {}).get(action)))
    print("CPU time per call (the process's, all threads: what other programs' load does not stretch):")
    for action in ACTIONS:
        print(report(action, cpu_times["after"][action], cpu_times.get("before", {}).get(action)))
    total = timings["after"]["C preprocess + predict"]
    p99 = percentile(total, 99)
    print(f"preprocess + predict: {statistics.median(total):.2f} ms median, {p99:.2f} ms p99 = "
          f"{statistics.median(total) / statistics.median(timings['after']['A bare forward']):.1f}x the bare forward "
          f"pass (goal p99 < {GOAL_P99_MS:g} ms: {'met' if p99 < GOAL_P99_MS else 'NOT met'})")
    for name, wall in steady.items():
        print(f"preprocess + predict, {len(wall):,} calls back to back, {name}: {statistics.median(wall):.2f} ms median, "
              f"{percentile(wall, 99):.2f} ms p99 (goal p99 < {GOAL_P99_MS:g} ms: "
              f"{'met' if percentile(wall, 99) < GOAL_P99_MS else 'NOT met'})")
    for name, times in paused.items():
        warm = statistics.median(times["sleep 0"][0])
        print(f"preprocess + predict after a pause, {name} ({args.pauses} rounds): first call median / p90, "
              f"second call median, first call / no pause:")
        for label, (first, second) in times.items():
            print(f"  {label + ' ms':<13} {statistics.median(first):5.2f} / {percentile(first, 90):5.2f} ms, "
                  f"{statistics.median(second):5.2f} ms, {statistics.median(first) / warm:.2f}x")
    for name, speed in batch.items():
        print(f"batch prediction of the {len(images):,} MNIST test images, {name}: {speed:,.0f} images/s")
    if images is None:
        print(f"no MNIST test images under {args.data_dir}: batch prediction skipped")


if __name__ == "__main__":
    main()
