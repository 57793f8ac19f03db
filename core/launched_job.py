"""A training job on several processes: the command line's `train --processes N` run as a child process (which
starts the workers through torch.distributed.run), followed through the event log its run folder gets. Stop sends the child
SIGINT, as Ctrl-C would: every worker stops together and rank 0 saves the last complete epoch."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.jobs import EventRecord, Job, JobManager
    from core.recipes import Recipe
    from core.training import TrainConfig

REPO = Path(__file__).resolve().parents[1]
POLL_SECONDS = 0.5
LINE_CHARS = 300  # of the child's last line of errors, when it ended without a summary


def train_command(config: TrainConfig, recipe: Recipe | None, processes: int, runs_dir: Path, run_id: str) -> list[str]:
    """`python -m core train --processes N --settings JSON --runs-dir DIR --run-id ID --json [--recipe NAME]`."""
    return [sys.executable, "-m", "core", "train", "--processes", str(processes), "--settings",
            json.dumps(config.to_dict()), "--runs-dir", str(Path(runs_dir).resolve()), "--run-id", run_id, "--json",
            *(["--recipe", recipe.name] if recipe else [])]


class RunFollower:
    """The run's training events as its event log (core.runlog) tells them, each once: what the job's live panel
    folds, the batch progress included."""

    def __init__(self, run_dir: Path) -> None:
        from core.runlog import RunLogTail

        self.tail = RunLogTail(run_dir)

    def new_events(self) -> list[EventRecord]:
        try:
            return self.tail.poll()
        except OSError:  # not written yet (UnreadableLog, an OSError too: a log that is not the run's own)
            return []


def run_launched(job: Job, manager: JobManager) -> None:
    """Train `job` on job.processes processes through the command line, folding the run's progress into the job,
    and end the job as the run ended (its summary line), or failed with the child's last line of errors."""
    from core.store import RunStore

    store = RunStore(manager.runs_dir)
    run_id = store.new_run_id(job.config.model, job.config.dataset)
    command = train_command(job.config, job.recipe, job.processes, manager.runs_dir, run_id)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True,
                                   start_new_session=True)  # the server's own Ctrl-C reaches it through Stop only
        manager.set_run(job, run_id)
        _follow(process, job, manager, RunFollower(store.run_dir(run_id)))
        out.seek(0)
        err.seek(0)
        status, message = outcome(out.read(), err.read(), process.returncode)
    manager.finish(job, status, message)


def _follow(process: subprocess.Popen, job: Job, manager: JobManager, follower: RunFollower) -> None:
    interrupted = False
    while process.poll() is None:
        if job.stop_requested.is_set() and not interrupted:
            process.send_signal(signal.SIGINT)
            interrupted = True
        for event in follower.new_events():
            manager.record(job, event)
        time.sleep(POLL_SECONDS)
    while events := follower.new_events():  # the rest of the log, read in parts when long
        for event in events:
            manager.record(job, event)


def outcome(stdout: str, stderr: str, code: int) -> tuple[str, str]:
    """The job's status and message from the child's output: its JSON summary, else its last line of errors."""
    lines = stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1]) if lines else None
    except ValueError:
        summary = None
    if isinstance(summary, dict) and summary.get("status") in ("done", "stopped", "failed", "diverged"):
        return summary["status"], str(summary.get("reason") or "")
    errors = [line for line in stderr.strip().splitlines() if line.strip()]
    last = errors[-1].removeprefix("error: ")[:LINE_CHARS] if errors else f"the training ended with code {code}"
    return "failed", last
