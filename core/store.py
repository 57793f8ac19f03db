"""Training runs on disk: one folder per run, weights as safetensors, metadata as JSON. Nothing is unpickled."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import SafetensorError

from core.preprocess import InputFormat

if TYPE_CHECKING:  # torch is imported by the functions that need it: listing runs must not cost its 2 s import
    import torch
    from torch import nn

    from core.models import Output

RUNS_ENV = "DIGIT_STUDIO_RUNS"
META_FILE = "meta.json"
FORMAT_NAME = "digit-studio-run"
FORMAT_VERSION = 1
MAX_META_BYTES = 8 * 1024 * 1024
MAX_WEIGHTS_BYTES = 256 * 1024 * 1024
MAX_CLASSES = 1000  # more would only make loading build a huge output layer
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")  # \Z, not $: "$" lets a trailing newline through
WEIGHTS_PATTERN = re.compile(r"^weights-\d{6}\.safetensors\Z")
TEMP_PATTERN = re.compile(r"^\..+\.(\d+)\.[0-9a-f]+\.tmp\Z")


class RunError(ValueError):
    """A run that cannot be used (damaged, foreign, tampered or missing); str() says which and why."""


class StoreWriteError(OSError):
    """Saving failed (read-only folder, disk full...): nothing that was saved before has changed."""


def default_runs_dir() -> Path:
    """The runs folder: $DIGIT_STUDIO_RUNS, else ./runs."""
    return Path(os.environ.get(RUNS_ENV) or "runs")


def utc_now() -> str:
    """The current time as an ISO 8601 string, for metadata."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id is running on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start_time(pid: int) -> str | None:
    """When process `pid` started, as an opaque token that tells it from a later process given the same id.

    None when there is no such process or this system cannot say.
    """
    if Path("/proc/self/stat").exists():  # Linux: field 22 of /proc/<pid>/stat, in clock ticks since boot
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]  # the name before ")" may hold spaces
        except (OSError, IndexError):
            return None
    return _ps_start_time(pid)


def _ps_start_time(pid: int) -> str | None:
    """The start time `ps` gives (macOS and other Unixes without /proc), to the second."""
    try:
        done = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def process_running(pid: Any, started: Any = None) -> bool:
    """Whether the process recorded as `pid` (started at `started`, when known) is still the one running."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not pid_alive(pid):
        return False
    if started is None:  # runs saved before start times were recorded
        return True
    now = process_start_time(pid)
    return now is None or now == str(started)  # a different start time: the id was reused by a new process


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except OSError as error:
        temp.unlink(missing_ok=True)
        raise StoreWriteError(error.errno, f"Could not save {path.name} in {path.parent}: {error.strerror or error}") from None


@dataclass(frozen=True)
class RunInfo:
    """A run as listed: its metadata, or the reason it cannot be read."""

    run_id: str
    path: Path
    meta: dict[str, Any] | None
    error: str | None = None

    @property
    def status(self) -> str:
        """done, stopped, failed, running, interrupted (its process died) or damaged."""
        if self.meta is None:
            return "damaged"
        status = str(self.meta.get("status", "damaged"))
        if status == "running" and not process_running(self.meta.get("pid"), self.meta.get("pid_started")):
            return "interrupted"
        return status

    @property
    def has_weights(self) -> bool:
        return bool(self.meta and self.meta.get("weights_file"))

    def get(self, key: str, default: Any = None) -> Any:
        """A metadata field, or `default` (damaged runs have none)."""
        return (self.meta or {}).get(key, default)


@dataclass(frozen=True)
class LoadedRun:
    """A run ready for inference: the rebuilt model in eval mode and how to feed it."""

    run_id: str
    path: Path
    meta: dict[str, Any]
    model: nn.Module
    output: Output
    input_format: InputFormat
    pixel_scale: float
    mean: float
    std: float
    class_names: tuple[str, ...]

    @property
    def title(self) -> str:
        accuracy = self.meta.get("final", {}).get("test_accuracy")
        score = f", {accuracy:.2%}" if isinstance(accuracy, (int, float)) else ""
        return f"{self.meta['model']} on {self.meta['dataset']}{score}"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise RunError(message)


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_inside(path: Path, folder: Path, message: str) -> None:
    """Refuse a path that a symbolic link takes outside `folder`."""
    _check(path.resolve().is_relative_to(folder.resolve()), message)


def _read_capped(path: Path, limit: int, too_large: str) -> bytes:
    """A file's bytes, refused before parsing when over `limit` bytes."""
    _check(path.stat().st_size <= limit, too_large)
    with open(path, "rb") as stream:
        data = stream.read(limit + 1)  # the file may have grown since stat
    _check(len(data) <= limit, too_large)
    return data


def read_meta(run_dir: Path) -> dict[str, Any]:
    """Read and check a run's metadata; RunError says what is wrong with it."""
    path = run_dir / META_FILE
    _check(path.is_file(), f"{run_dir.name}: {META_FILE} is missing.")
    _check_inside(path, run_dir, f"{run_dir.name}: {META_FILE} is a link to a file outside the run's folder.")
    data = _read_capped(path, MAX_META_BYTES, f"{run_dir.name}: {META_FILE} is too large to be a run's metadata.")
    try:
        meta = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # also bad UTF-8, 5,000-digit numbers, [[[[... nested too deep
        raise RunError(f"{run_dir.name}: {META_FILE} is not valid JSON ({str(error)[:120]}).") from None
    _check(isinstance(meta, dict) and meta.get("format") == FORMAT_NAME,
           f"{run_dir.name}: {META_FILE} is not a Digit Studio run.")
    _check_meta_fields(run_dir.name, meta)
    return meta


def _check_meta_fields(name: str, meta: dict[str, Any]) -> None:
    _check(isinstance(meta.get("model"), str) and isinstance(meta.get("dataset"), str), f"{name}: model or dataset missing.")
    names = meta.get("class_names")
    _check(isinstance(names, list) and 2 <= len(names) <= MAX_CLASSES and all(isinstance(n, str) for n in names),
           f"{name}: class names are missing or malformed.")
    history = meta.get("history", [])
    _check(isinstance(history, list) and all(isinstance(epoch, dict) for epoch in history)
           and isinstance(meta.get("final", {}), dict) and isinstance(meta.get("settings", {}), dict)
           and isinstance(meta.get("status", ""), str), f"{name}: its history, settings or status are malformed.")
    norm = meta.get("normalization", {})
    _check(isinstance(norm, dict) and _finite_number(norm.get("mean")) and _finite_number(norm.get("std"))
           and norm["std"] > 0 and _finite_number(meta.get("pixel_scale")) and meta["pixel_scale"] > 0,
           f"{name}: normalisation is missing or not a finite positive number.")
    fmt = meta.get("input_format", {})
    _check(isinstance(fmt, dict) and fmt.get("size") in (8, 28) and fmt.get("max_value") in (16, 255)
           and fmt.get("style") in ("mnist", "digits"), f"{name}: input format is missing or unknown.")
    weights = meta.get("weights_file")
    _check(weights is None or (isinstance(weights, str) and WEIGHTS_PATTERN.match(weights) is not None),
           f"{name}: the weights file name is not one this app writes.")


def _read_weights(run_dir: Path, file_name: str) -> dict[str, torch.Tensor]:
    path = run_dir / file_name
    _check(path.is_file(), f"{run_dir.name}: its weights file {file_name} is missing.")
    _check_inside(path, run_dir, f"{run_dir.name}: its weights file is a link to a file outside the run's folder.")
    data = _read_capped(path, MAX_WEIGHTS_BYTES, f"{run_dir.name}: its weights file is too large.")
    from safetensors.torch import load as load_safetensors

    try:
        return load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError, OSError) as error:
        raise RunError(f"{run_dir.name}: the weights are damaged or not safetensors ({error}).") from None


def _rebuild(run_dir: Path, meta: dict[str, Any], weights: dict[str, torch.Tensor]) -> nn.Module:
    import torch

    from core.models import build_model, model_spec

    name = run_dir.name
    try:
        model_spec(meta["model"])
    except ValueError:
        raise RunError(f"{name}: architecture {meta['model']!r} is not in this app's model zoo.") from None
    size, classes = meta["input_format"]["size"], len(meta["class_names"])
    model = build_model(meta["model"], image_size=size, num_classes=classes)
    expected = model.state_dict()
    _check(set(weights) == set(expected), f"{name}: the weights do not match a {meta['model']} model (different layers).")
    for key, tensor in weights.items():
        _check(tuple(tensor.shape) == tuple(expected[key].shape),
               f"{name}: tensor {key} has shape {tuple(tensor.shape)}, a {meta['model']} with {classes} classes "
               f"needs {tuple(expected[key].shape)}.")
        _check(bool(torch.isfinite(tensor).all()) if tensor.is_floating_point() else True,
               f"{name}: tensor {key} holds NaN or infinite values.")
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:  # e.g. a dtype that cannot be copied into the layer
        raise RunError(f"{name}: the weights do not fit a {meta['model']} model ({str(error)[:200]}).") from None
    return model.eval()


def load_run_dir(run_dir: Path) -> LoadedRun:
    """Load a run folder for inference, checking metadata, file names, tensor names and shapes."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    _check(bool(meta.get("weights_file")), f"{run_dir.name}: this run stopped before its first epoch, so it has no weights.")
    from core.models import model_spec

    model = _rebuild(run_dir, meta, _read_weights(run_dir, meta["weights_file"]))
    fmt = InputFormat(**meta["input_format"])
    norm = meta["normalization"]
    return LoadedRun(run_dir.name, run_dir, meta, model, model_spec(meta["model"]).output, fmt,
                     float(meta["pixel_scale"]), float(norm["mean"]), float(norm["std"]), tuple(meta["class_names"]))


class RunStore:
    """The runs folder: save, list, load and delete runs by id. Ids never reach outside the folder."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root else default_runs_dir()

    def run_dir(self, run_id: str) -> Path:
        """The folder of `run_id`; RunError for an id or a link that could reach outside the runs folder."""
        run_dir = self._named(run_id)
        self._check_in_root(run_dir)
        return run_dir

    def _named(self, run_id: str) -> Path:
        _check(isinstance(run_id, str) and RUN_ID_PATTERN.match(run_id) is not None and ".." not in run_id,
               f"{run_id!r} is not a valid run id.")
        return self.root / run_id

    def _check_in_root(self, run_dir: Path) -> None:
        _check_inside(run_dir, self.root, f"{run_dir.name}: this run folder is a link to somewhere outside {self.root}.")

    def new_run_id(self, model: str, dataset: str) -> str:
        """A fresh, sortable, unique id such as 20261123-101500-lenet5-mnist-3fa2."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        return f"{stamp}-{model}-{dataset}-{secrets.token_hex(2)}"

    def save(self, run_id: str, meta: dict[str, Any], weights: dict[str, torch.Tensor] | None) -> str | None:
        """Write a run's weights (if given) and then its metadata, each atomically.

        New weights go to a new file name and the metadata, written last, points to them:
        a crash at any moment leaves the previous version loadable. Without new weights the metadata
        keeps its "weights_file". Returns the weights file the run now points to.
        """
        run_dir = self.run_dir(run_id)
        new = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreWriteError(error.errno, f"Could not create {run_dir}: {error.strerror or error}") from None
        try:
            return self._write_version(run_dir, run_id, meta, weights)
        except StoreWriteError:
            if new:  # a run whose first save failed leaves no empty folder to list as damaged
                shutil.rmtree(run_dir, ignore_errors=True)
            raise

    def _write_version(self, run_dir: Path, run_id: str, meta: dict[str, Any],
                       weights: dict[str, torch.Tensor] | None) -> str | None:
        meta = {**meta, "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "run_id": run_id, "updated_at": utc_now()}
        if weights is not None:
            meta["weights_file"] = f"weights-{int(meta.get('epochs_completed', 0)):06d}.safetensors"
            from safetensors.torch import save as save_safetensors

            contiguous = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
            atomic_write(run_dir / meta["weights_file"], save_safetensors(contiguous))
        atomic_write(run_dir / META_FILE, json.dumps(meta, indent=1).encode("utf-8"))
        self._remove_unreferenced_weights(run_dir, meta.get("weights_file"))
        return meta.get("weights_file")

    def _remove_unreferenced_weights(self, run_dir: Path, keep: str | None) -> None:
        for path in run_dir.glob("weights-*.safetensors"):
            if path.name != keep:
                path.unlink(missing_ok=True)

    def list_runs(self) -> list[RunInfo]:
        """Every run folder, newest first; damaged ones are listed with their error, not hidden."""
        if not self.root.is_dir():
            return []
        runs = [self._info(path) for path in self.root.iterdir()
                if path.is_dir() and RUN_ID_PATTERN.match(path.name)]
        return sorted(runs, key=lambda info: info.run_id, reverse=True)

    def _info(self, run_dir: Path) -> RunInfo:
        try:
            self._check_in_root(run_dir)
            return RunInfo(run_dir.name, run_dir, read_meta(run_dir))
        except (RunError, OSError) as error:
            return RunInfo(run_dir.name, run_dir, None, str(error))

    def info(self, run_id: str) -> RunInfo:
        """One run's listing entry."""
        run_dir = self.run_dir(run_id)
        _check(run_dir.is_dir(), f"There is no run called {run_id!r} in {self.root}.")
        return self._info(run_dir)

    def load(self, run_id: str) -> LoadedRun:
        """Load a run for inference; RunError with a specific reason when it cannot be used."""
        run_dir = self.run_dir(run_id)
        _check(run_dir.is_dir(), f"There is no run called {run_id!r} in {self.root}.")
        return load_run_dir(run_dir)

    def delete(self, run_id: str) -> None:
        """Remove a run's folder and everything in it; a run that is a link loses the link, never its target."""
        run_dir = self._named(run_id)
        if run_dir.is_symlink():
            run_dir.unlink()
            return
        _check(run_dir.is_dir(), f"There is no run called {run_id!r} in {self.root}.")
        shutil.rmtree(run_dir)

    def sweep(self) -> int:
        """Delete temp files left by writers that died mid-save; returns how many went."""
        if not self.root.is_dir():
            return 0
        removed = 0
        folders = [path for path in self.root.iterdir() if path.is_dir() and not path.is_symlink()]  # never outside
        for temp in (temp for folder in folders for temp in folder.glob(".*.tmp")):
            match = TEMP_PATTERN.match(temp.name)
            if match and not pid_alive(int(match.group(1))):
                temp.unlink(missing_ok=True)
                removed += 1
        return removed

