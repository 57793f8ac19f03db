"""Training runs on disk: one folder per run, weights as safetensors, metadata as JSON. Nothing is unpickled."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import time
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from safetensors import SafetensorError

from core.formats import DIGITS_FORMAT, MNIST_FORMAT, NORMALIZATION_LIMIT, InputFormat

if TYPE_CHECKING:  # torch is imported by the functions that need it: listing runs must not cost its 2 s import
    import torch
    from torch import nn

    from core.models import Output

RUNS_ENV = "DIGIT_STUDIO_RUNS"
META_FILE = "meta.json"
EVENTS_FILE = "events.jsonl"  # the run's training events, appended as it trains (core.runlog)
FORMAT_NAME = "digit-studio-run"
FORMAT_VERSION = 1
MAX_META_BYTES = 8 * 1024 * 1024
MAX_WEIGHTS_BYTES = 256 * 1024 * 1024
MAX_CLASSES = 1000  # more would only make loading build a huge output layer
MAX_CLASS_NAME_CHARS = 32  # a label under a digit, not a paragraph
MAX_SAFE_INTEGER = 2**53 - 1  # what a browser's numbers (and pages' tables) carry exactly
MAX_HOST_CHARS = 255  # a host name, as the system gives it
MAX_SETTING_CHARS = 4096  # a setting's text: at most a path
MAX_REASON_CHARS = 4000  # why a run ended: a sentence, or an error message quoted whole
SILENT_HOST_SECONDS = 120.0  # a run of another machine not heard from for this long is taken as interrupted
PID_MAX = 2**31 - 1  # pid_t is a signed 32-bit number on Linux and macOS: os.kill overflows past it
MAX_WORLD_SIZE = 65_536  # processes of one distributed run, as its metadata records them
RUN_STATUSES = ("running", "done", "stopped", "failed", "diverged")  # as written; "interrupted", "damaged" are read
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


def pid_alive(pid: Any) -> bool:
    """Whether a process with this id is running on this machine; False for anything that is not a pid."""
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= PID_MAX:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (OSError, OverflowError):  # no such process, or an id this system's pid_t cannot hold
        return False
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
    if not pid_alive(pid):
        return False
    if started is None:  # runs saved before start times were recorded
        return True
    now = process_start_time(pid)
    return now is None or now == str(started)  # a different start time: the id was reused by a new process


def this_host() -> str:
    """This machine's name, recorded with a run's pid: a pid means something only on the machine that wrote it."""
    return socket.gethostname()[:MAX_HOST_CHARS]


def last_heard(run_dir: Path) -> float | None:
    """When the run folder's metadata or event log last changed (seconds since the epoch), links not followed."""
    times = []
    for name in (META_FILE, EVENTS_FILE):
        with contextlib.suppress(OSError):
            times.append((run_dir / name).lstat().st_mtime)
    return max(times, default=None)


def run_alive(meta: Mapping[str, Any], run_dir: Path) -> bool:
    """Whether the process that writes a "running" run is still at it: on this machine, its pid still names the
    process that started it; on another machine (sharing the runs folder), the run wrote something recently."""
    host = meta.get("host")
    if host is not None and host != this_host():
        heard = last_heard(run_dir)
        return heard is not None and time.time() - heard <= SILENT_HOST_SECONDS
    return process_running(meta.get("pid"), meta.get("pid_started"))


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part."""
    _write_through_temp(path, data, os.replace)


def write_new_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` as a new file, whole or not at all; an existing file is never replaced (StoreWriteError)."""
    _write_through_temp(path, data, _publish_new)


def _publish_new(temp: Path, path: Path) -> None:
    try:
        os.link(temp, path)  # refuses an existing name, even one created a moment ago
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links (FAT): claim the name, then move the bytes in
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.replace(temp, path)


def _write_through_temp(path: Path, data: bytes, publish: Callable[[Path, Path], None]) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        publish(temp, path)
    except OSError as error:
        raise StoreWriteError(error.errno, f"Could not save {path.name} in folder {path.parent.name}: {error.strerror or error}") from None
    finally:
        with contextlib.suppress(OSError):  # gone after os.replace; still there after os.link or a failure
            temp.unlink()


@dataclass(frozen=True)
class RunInfo:
    """A run as listed: its metadata, or the reason it cannot be read."""

    run_id: str
    path: Path
    meta: dict[str, Any] | None
    error: str | None = None

    @property
    def status(self) -> str:
        """One of RUN_STATUSES (done, stopped, failed, diverged, running), interrupted (its process died) or damaged."""
        if self.meta is None:
            return "damaged"
        status = str(self.meta.get("status", "damaged"))
        if status == "running" and not run_alive(self.meta, self.path):
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


# ---- the one schema of meta.json ---------------------------------------------------------------------------------
# Every field is checked once, where metadata enters core (parse_meta); pages and the CLI then trust its types.
# Fields the app has always written but a run may lack are optional; present, they must have the declared type.

Check = Callable[[Any], bool]


@dataclass(frozen=True)
class Field:
    """One metadata field: the check its value must pass, in words for the message and as a function."""

    must_be: str  # completes "<field> must be ..."
    check: Check
    required: bool = False
    fields: Mapping[str, Field] | None = None  # an object: its own fields, checked in turn
    items: Field | None = None  # a list: what each item must be


def _finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float would break every format string
        return False


def _number_in(low: float, high: float) -> Check:
    return lambda value: _finite_number(value) and low <= value <= high


def _whole(low: int, high: int) -> Check:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _one_line(value: str) -> bool:
    """Printable on one line: no newline or terminal escape that could forge a line of `python -m core runs`, no lone
    surrogate that UTF-8 cannot encode (it would stop the listing, or a page, at that run)."""
    return value.isprintable()


def _prose(value: str) -> bool:
    """Printable, with newlines and tabs: a failure's reason may quote an error message of several lines."""
    return all(character.isprintable() or character in "\n\t" for character in value)


def _text(longest: int) -> Check:
    return lambda value: isinstance(value, str) and len(value) <= longest and _one_line(value)


def _or_none(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _one_of(*allowed: Any) -> Check:
    return lambda value: type(value) in (str, int) and value in allowed  # type(): True must not pass for 1


def _iso_time(value: Any) -> bool:
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _class_name(value: Any) -> bool:
    return (isinstance(value, str) and 1 <= len(value) <= MAX_CLASS_NAME_CHARS and value.isprintable()
            and bool(value.strip()))  # isprintable: no newlines, tabs or other control characters


def _setting(value: Any) -> bool:
    if isinstance(value, list):
        return len(value) <= 8 and all(_finite_number(item) for item in value)  # Adam's betas
    return value is None or isinstance(value, bool) or _text(MAX_SETTING_CHARS)(value) or _finite_number(value)


def _settings(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(key, str) and _setting(item) for key, item in value.items())


def _is(kind: type) -> Check:
    return lambda value: isinstance(value, kind)


COUNT = Field(f"a whole number from 0 to {MAX_SAFE_INTEGER:,}", _whole(0, MAX_SAFE_INTEGER))
LOSS = Field("a finite number", _finite_number, required=True)
FRACTION = Field("a fraction from 0 to 1", _number_in(0, 1), required=True)
RATE = Field("a finite number, at least 0", _number_in(0, math.inf), required=True)
EPOCH_SCHEMA: dict[str, Field] = {
    "epoch": Field(f"a whole number from 1 to {MAX_SAFE_INTEGER:,}", _whole(1, MAX_SAFE_INTEGER), required=True),
    "epochs": Field(f"a whole number from 1 to {MAX_SAFE_INTEGER:,}", _whole(1, MAX_SAFE_INTEGER)),
    "step": COUNT, "train_loss": LOSS, "train_accuracy": FRACTION, "test_loss": LOSS, "test_accuracy": FRACTION,
    "elapsed_seconds": RATE, "images_per_second": RATE,
    "collection_loss": Field("a finite number or null", _or_none(_finite_number)),  # runs with an image folder
    "collection_accuracy": Field("a fraction from 0 to 1, or null", _or_none(_number_in(0, 1))),
}
COLLECTION_SCHEMA: dict[str, Field] = {  # the image folder a run trained on (core.record)
    "name": Field("text of 1 to 64 characters", lambda v: _text(64)(v) and bool(v), required=True),
    "images": COUNT, "train_images": COUNT, "held_out_images": COUNT,
    "held_out_share": Field("a fraction from 0 to 1", _number_in(0, 1)),
    "share": Field("a fraction from 0 to 1", _number_in(0, 1)),
    "mixed_with": Field("a dataset name (text of at most 64 characters) or null", _or_none(_text(64))),
}
META_SCHEMA: dict[str, Field] = {
    "format_version": Field(f"a whole number from 1 to {MAX_SAFE_INTEGER:,}", _whole(1, MAX_SAFE_INTEGER)),
    "run_id": Field("text of at most 128 characters", _text(128)),
    "model": Field("a model name (text of 1 to 64 characters)", lambda v: _text(64)(v) and bool(v), required=True),
    "model_title": Field("text of at most 200 characters", _text(200)),
    "dataset": Field("a dataset name (text of 1 to 64 characters)", lambda v: _text(64)(v) and bool(v), required=True),
    "input_format": Field("an object with size, max_value and style", _is(dict), required=True, fields={
        "size": Field("8 or 28", _one_of(8, 28), required=True),
        "max_value": Field("16 or 255", _one_of(16, 255), required=True),
        "style": Field('"mnist" or "digits"', _one_of("mnist", "digits"), required=True)}),
    "pixel_scale": Field(f"a number from {1 / NORMALIZATION_LIMIT:g} to {NORMALIZATION_LIMIT:g}",
                         _number_in(1 / NORMALIZATION_LIMIT, NORMALIZATION_LIMIT), required=True),
    "normalization": Field("an object with mean and std", _is(dict), required=True, fields={
        "mean": Field(f"a number from {-NORMALIZATION_LIMIT:g} to {NORMALIZATION_LIMIT:g}",
                      _number_in(-NORMALIZATION_LIMIT, NORMALIZATION_LIMIT), required=True),
        "std": Field(f"a number from {1 / NORMALIZATION_LIMIT:g} to {NORMALIZATION_LIMIT:g}",
                     _number_in(1 / NORMALIZATION_LIMIT, NORMALIZATION_LIMIT), required=True)}),
    "class_names": Field(f"a list of 2 to {MAX_CLASSES:,} class names", lambda v: isinstance(v, list) and
                         2 <= len(v) <= MAX_CLASSES, required=True,
                         items=Field(f"1 to {MAX_CLASS_NAME_CHARS} printable characters on one line", _class_name)),
    "settings": Field(f"an object of settings (one line of text of at most {MAX_SETTING_CHARS:,} characters, numbers, "
                      "true, false or null)", _settings),
    "recipe": Field("a recipe name (text of at most 64 characters) or null", _or_none(_text(64))),
    "reported_accuracy": Field("a fraction from 0 to 1, or null", _or_none(_number_in(0, 1))),
    "status": Field(f"one of {', '.join(RUN_STATUSES)}", _one_of(*RUN_STATUSES), required=True),
    "reason": Field(f"printable text of at most {MAX_REASON_CHARS:,} characters",
                    lambda v: isinstance(v, str) and len(v) <= MAX_REASON_CHARS and _prose(v)),
    "history": Field("a list of epochs", _is(list), items=Field("an object", _is(dict), fields=EPOCH_SCHEMA)),
    "epochs_completed": COUNT,
    "final": Field("an object", _is(dict), fields={
        "train_loss": Field("a finite number or null", _or_none(_finite_number)),
        "train_accuracy": Field("a fraction from 0 to 1, or null", _or_none(_number_in(0, 1))),
        "test_loss": Field("a finite number or null", _or_none(_finite_number)),
        "test_accuracy": Field("a fraction from 0 to 1, or null", _or_none(_number_in(0, 1))),
        "collection_loss": EPOCH_SCHEMA["collection_loss"], "collection_accuracy": EPOCH_SCHEMA["collection_accuracy"]}),
    "from_run": Field("a run id (text of at most 128 characters) or null", _or_none(_text(128))),
    "collection": Field("an object naming the image folder, or null", _or_none(_is(dict)), fields=COLLECTION_SCHEMA),
    "before": Field("an object with test_accuracy and collection_accuracy, or null", _or_none(_is(dict)), fields={
        key: EPOCH_SCHEMA["collection_accuracy"] for key in ("test_accuracy", "collection_accuracy")}),
    "parameters": COUNT, "train_size": COUNT, "test_size": COUNT,
    "train_seconds": Field("a finite number of seconds, at least 0, or null", _or_none(_number_in(0, math.inf))),
    "images_per_second": Field("a finite number, at least 0, or null", _or_none(_number_in(0, math.inf))),
    "device": Field("text of at most 64 characters", _text(64)),
    # Runs trained on several processes (torch.distributed); runs saved before these fields load without them.
    "world_size": Field(f"a whole number from 1 to {MAX_WORLD_SIZE:,}", _whole(1, MAX_WORLD_SIZE)),
    "backend": Field("a torch.distributed backend (text of at most 16 characters) or null", _or_none(_text(16))),
    "devices": Field(f"a list of at most {MAX_WORLD_SIZE:,} device names", lambda v: isinstance(v, list) and
                     len(v) <= MAX_WORLD_SIZE, items=Field("text of at most 128 characters", _text(128))),
    "created_at": Field("a time in ISO 8601 text", _iso_time),
    "updated_at": Field("a time in ISO 8601 text", _iso_time),
    "pid": Field(f"a process id (a whole number from 1 to {PID_MAX:,})", _whole(1, PID_MAX)),
    "host": Field(f"text of at most {MAX_HOST_CHARS} characters", _text(MAX_HOST_CHARS)),
    "pid_started": Field("text of at most 64 characters, a whole number or null",
                         _or_none(lambda v: _text(64)(v) or _whole(0, MAX_SAFE_INTEGER)(v))),
    "weights_file": Field("a weights file name this app writes (weights-NNNNNN.safetensors) or null",
                          _or_none(lambda v: isinstance(v, str) and WEIGHTS_PATTERN.match(v) is not None)),
}


def _record_problem(record: dict[str, Any], schema: Mapping[str, Field], prefix: str) -> str | None:
    """The first field of `record` that breaks `schema`, in words; None when all pass."""
    for key, field in schema.items():
        if key not in record:
            if field.required:
                return f"its {prefix}{key} is missing"
            continue
        if (problem := _field_problem(record[key], field, prefix + key)) is not None:
            return problem
    return None


def record_problem(record: Mapping[str, Any], schema: Mapping[str, Field]) -> str | None:
    """What is wrong with a record read from disk (metadata, a line of an event log), in words; None when nothing."""
    return _record_problem(dict(record), schema, "")


def _field_problem(value: Any, field: Field, where: str) -> str | None:
    if not field.check(value):
        return f"its {where} must be {field.must_be}"
    if field.fields is not None and isinstance(value, dict):  # a null allowed in place of the object passes
        return _record_problem(value, field.fields, where + ".")
    for index, item in enumerate(value if field.items is not None else ()):
        if (problem := _field_problem(item, field.items, f"{where}[{index}]")) is not None:
            return problem
    return None


def _check_inside(path: Path, folder: Path, message: str) -> None:
    """Refuse a path that a symbolic link takes outside `folder`, or that links lead round in a loop."""
    try:
        inside = path.resolve().is_relative_to(folder.resolve())
    except (RuntimeError, OSError):  # Python 3.11's resolve() raises RuntimeError on a loop of links
        raise RunError(f"{path.name}: a link in its path leads round in a loop or cannot be followed.") from None
    _check(inside, message)


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
    return parse_meta(run_dir.name, data)


def parse_meta(name: str, data: bytes) -> dict[str, Any]:
    """A run's metadata from the bytes of its meta.json, checked against META_SCHEMA; RunError names the bad field."""
    try:
        meta = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # also bad UTF-8, 5,000-digit numbers, [[[[... nested too deep
        raise RunError(f"{name}: {META_FILE} is not valid JSON ({str(error)[:120]}).") from None
    _check(isinstance(meta, dict) and meta.get("format") == FORMAT_NAME, f"{name}: {META_FILE} is not a Digit Studio run.")
    problem = _record_problem(meta, META_SCHEMA, "")
    _check(problem is None, f"{name}: {META_FILE} is damaged: {problem}.")
    return meta


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
        weights[key] = tensor = _as_layer_dtype(name, key, tensor, expected[key].dtype)
        _check(bool(torch.isfinite(tensor).all()) if tensor.is_floating_point() else True,
               f"{name}: tensor {key} holds NaN or infinite values (as the model's {tensor.dtype} numbers).")
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:  # e.g. a dtype that cannot be copied into the layer
        raise RunError(f"{name}: the weights do not fit a {meta['model']} model ({str(error)[:200]}).") from None
    return model.eval()


def _as_layer_dtype(name: str, key: str, tensor: torch.Tensor, wanted: torch.dtype) -> torch.Tensor:
    """The tensor in its layer's number type, converted from one a training tool could have saved: float16/32/64 or
    bfloat16 (a float64 1e300 becomes inf here, and is then refused), and integers for whole-number counters (such as
    BatchNorm's batch count). Anything else (float8, complex, bool) is refused by name, not left to fail in torch."""
    import torch

    floats = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    wholes = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
    fits = tensor.dtype in floats or (tensor.dtype in wholes and not wanted.is_floating_point)
    _check(fits, f"{name}: tensor {key} holds {str(tensor.dtype).removeprefix('torch.')} numbers; "
                 f"the model needs {str(wanted).removeprefix('torch.')}.")
    _check(wanted.is_floating_point or not tensor.is_floating_point() or bool(torch.isfinite(tensor).all()),
           f"{name}: tensor {key} holds NaN or infinite values.")  # before a counter's conversion makes them whole
    return tensor.to(wanted)


def load_run_dir(run_dir: Path) -> LoadedRun:
    """Load a run folder for inference, checking metadata, file names, tensor names and shapes."""
    run_dir = Path(run_dir)
    meta = read_meta(run_dir)
    _check(bool(meta.get("weights_file")), f"{run_dir.name}: this run stopped before its first epoch, so it has no weights.")
    from core.models import model_spec

    model = _rebuild(run_dir, meta, _read_weights(run_dir, meta["weights_file"]))
    fmt = InputFormat(*(meta["input_format"][key] for key in ("size", "max_value", "style")))  # extra keys ignored
    _check(fmt in (MNIST_FORMAT, DIGITS_FORMAT), f"{run_dir.name}: its input_format mixes MNIST's and the digits' "
                                                 f"(size {fmt.size}, max_value {fmt.max_value}, style {fmt.style}).")
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
            raise StoreWriteError(error.errno, f"Could not create the run folder {run_dir.name}: {error.strerror or error}") from None
        try:
            return self._write_version(run_dir, run_id, meta, weights)
        except StoreWriteError:
            if new:  # a run whose first save failed leaves no empty folder to list as damaged
                shutil.rmtree(run_dir, ignore_errors=True)
            raise

    def _write_version(self, run_dir: Path, run_id: str, meta: dict[str, Any],
                       weights: dict[str, torch.Tensor] | None) -> str | None:
        previous = meta.get("weights_file")
        meta = {**meta, "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "run_id": run_id, "updated_at": utc_now()}
        if weights is not None:
            meta["weights_file"] = self._write_weights(run_dir, int(meta.get("epochs_completed", 0)), weights)
        try:
            atomic_write(run_dir / META_FILE, json.dumps(meta, indent=1).encode("utf-8"))
        except StoreWriteError:
            if meta.get("weights_file") != previous:  # new weights that no metadata points to: not left behind
                with contextlib.suppress(OSError):
                    (run_dir / meta["weights_file"]).unlink()
            raise
        self._remove_unreferenced_weights(run_dir, meta.get("weights_file"))
        return meta.get("weights_file")

    def _write_weights(self, run_dir: Path, epochs: int, weights: dict[str, torch.Tensor]) -> str:
        from safetensors.torch import save as save_safetensors

        name = f"weights-{epochs:06d}.safetensors"  # a new name per epoch: the metadata, written last, switches over
        atomic_write(run_dir / name, save_safetensors({k: v.detach().cpu().contiguous() for k, v in weights.items()}))
        return name

    def _remove_unreferenced_weights(self, run_dir: Path, keep: str | None) -> None:
        for path in run_dir.glob("weights-*.safetensors"):
            if path.name != keep:
                path.unlink(missing_ok=True)

    def list_runs(self) -> list[RunInfo]:
        """Every run folder, newest first; damaged ones are listed with their error, not hidden."""
        if not self.root.is_dir():
            return []
        runs = [self._info(path) for path in self.root.iterdir()
                if (path.is_dir() or path.is_symlink()) and RUN_ID_PATTERN.match(path.name)]  # a broken link: damaged
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

