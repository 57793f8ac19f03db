"""`python -m core`: list recipes, train, predict images, list and export runs from a terminal."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Sequence, TextIO

if TYPE_CHECKING:  # the CLI imports torch-heavy modules only in the commands that need them
    from core.inference import ImagePrediction
    from core.store import LoadedRun, RunStore

EXIT_FAILURE, EXIT_USAGE = 1, 2


class UsageError(Exception):
    """Bad arguments: exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as one line and exit code 2, instead of a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _share(text: str) -> float:
    """A fraction typed on the command line; its range is checked by core's validation, as on the Train page."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    parser = _Parser(prog="python -m core", description="Digit Studio's engine: train and use digit recognisers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("recipes", help="the reference recipes and their reported accuracies")
    train = commands.add_parser("train", help="train a model and save the run")
    train.add_argument("--recipe", help="start from a reference recipe (see `recipes`)")
    train.add_argument("--model")
    train.add_argument("--dataset", help="digits, mnist, fashion-mnist, or a folder of digit images (PATH/0/*.png ...)")
    train.add_argument("--from-run", metavar="RUN_ID", help="fine-tune a saved run ('default': the shipped model), "
                       "mixing a --dataset folder with the run's own data")
    train.add_argument("--mix-share", type=_share, help="share of each batch taken from the folder when mixing "
                       "(default 0.5)")
    train.add_argument("--held-out-share", type=_share, help="share of each class of the folder held out for testing "
                       "(default 0.2)")
    train.add_argument("--epochs", type=_positive_int)
    train.add_argument("--batch-size", type=_positive_int)
    train.add_argument("--lr", type=_positive_float, help="learning rate")
    train.add_argument("--optimizer")
    train.add_argument("--schedule")
    train.add_argument("--seed", type=int)
    train.add_argument("--train-limit", type=_positive_int, help="use only the first N training images")
    train.add_argument("--data-dir", type=Path)
    train.add_argument("--runs-dir", type=Path)
    train.add_argument("--json", action="store_true", help="end with one JSON line describing the run")
    train.add_argument("--processes", type=_positive_int, help="train on N processes of this machine with "
                       "torch.distributed (DDP), started by torch.distributed.run as torchrun would; --batch-size "
                       "stays the global batch")
    train.add_argument("--run-id", help="the new run's id (default: a fresh one); an existing run is refused")
    train.add_argument("--settings", help="every training setting as one JSON object (the Train page's), under "
                       "the other options")
    predict = commands.add_parser("predict", help="read digits from image files")
    predict.add_argument("images", nargs="+", type=Path)
    predict.add_argument("--run", help="a run id from `runs` (default: the model shipped with the app)")
    predict.add_argument("--runs-dir", type=Path)
    predict.add_argument("--json", action="store_true", help="one JSON object per image")
    runs = commands.add_parser("runs", help="the saved runs")
    runs.add_argument("--runs-dir", type=Path)
    runs.add_argument("--json", action="store_true")
    export = commands.add_parser("export", help="write a run as a zip (meta.json + weights), as the Train page's download",
                                 description="Write a saved run as a zip of its meta.json and safetensors weights. "
                                 "An existing file is never replaced: the command refuses instead.")
    export.add_argument("run_id", metavar="RUN_ID", help="a run id from `runs`")
    export.add_argument("--output", type=Path, help="the zip to write (default: ./RUN_ID.zip; a folder: RUN_ID.zip in it)")
    export.add_argument("--runs-dir", type=Path)
    return parser


def cmd_recipes(args: argparse.Namespace, out: TextIO) -> int:
    """Print the presets with their settings and reported accuracies."""
    from core.recipes import RECIPES

    for item in RECIPES.values():
        c = item.config
        out.write(f"{item.name:<11} {c.model} on {c.dataset}, {c.optimizer} lr {c.learning_rate:g}, "
                  f"batch {c.batch_size}, {c.epochs} epochs. {item.note()}\n")
    return 0


def _dataset_argument(value: str | None) -> tuple[str | None, str | None]:
    """--dataset as (dataset name, image folder): a registry name, else a path to a folder of digit images."""
    from core.data import DATASETS
    from core.training import FOLDER_DATASET

    if value is None or value in DATASETS or not (os.sep in value or "/" in value or Path(value).is_dir()):
        return value, None  # an unknown name is refused by validation, naming the known ones
    return FOLDER_DATASET, value


def _start_meta(run_id: str, store: RunStore) -> dict:
    """The metadata of the run to fine-tune ("default": the shipped model); RunError when it cannot be used."""
    from core.inference import DEFAULT_MODEL_DIR
    from core.store import RunError, read_meta
    from core.training import DEFAULT_MODEL_RUN

    if run_id == DEFAULT_MODEL_RUN:
        return read_meta(DEFAULT_MODEL_DIR)
    info = store.info(run_id)
    if info.meta is None:
        raise RunError(info.error)
    return info.meta


def _settings_argument(text: str):
    """--settings: a JSON object of TrainConfig's fields (unknown ones ignored, as for a saved run's settings)."""
    from core.config import TrainConfig

    try:
        settings = json.loads(text)
        if not isinstance(settings, dict):
            raise TypeError("not a JSON object")
        return TrainConfig.from_dict(settings)
    except (ValueError, TypeError, RecursionError) as error:
        raise UsageError(f"--settings must be a JSON object of training settings ({str(error)[:120]})") from None


def _train_config(args: argparse.Namespace, store: RunStore):
    """The recipe (or None) and the settings the options ask for; a batch nobody typed fits a small image folder."""
    base, config = _asked_config(args, store)
    if args.batch_size is None and config.image_folder:
        from core.folder_data import fitting_batch  # here only: it imports preprocessing, 0.3 s a training process

        config = fitting_batch(config)
    return base, config


def _asked_config(args: argparse.Namespace, store: RunStore):
    from dataclasses import replace

    from core.config import fine_tune_config
    from core.recipes import recipe
    from core.training import TrainConfig

    dataset, folder = _dataset_argument(args.dataset)
    overrides = dict(model=args.model, dataset=dataset, epochs=args.epochs, batch_size=args.batch_size,
                     learning_rate=args.lr, optimizer=args.optimizer, schedule=args.schedule, seed=args.seed,
                     train_limit=args.train_limit, data_dir=str(args.data_dir) if args.data_dir else None,
                     image_folder=folder, collection_share=args.mix_share, held_out_share=args.held_out_share)
    if args.settings is not None:  # already whole (a fine-tune's included): the other options only change it
        base = recipe(args.recipe) if args.recipe else None
        return base, replace(_settings_argument(args.settings), **{k: v for k, v in overrides.items() if v is not None})
    if args.from_run:
        if args.recipe:
            raise UsageError("--from-run continues a saved run with its own settings: leave --recipe out.")
        if folder is not None:
            overrides["dataset"] = None  # the run's own dataset, mixed with the folder
        return None, fine_tune_config(args.from_run, _start_meta(args.from_run, store), **overrides)
    if not args.recipe:
        return None, TrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    base = recipe(args.recipe)
    return base, base.settings(**overrides)


def _sweep(store: RunStore) -> None:
    """Remove temp files that saves killed midway left (only those of dead processes: a live app's stay)."""
    try:
        store.sweep()
    except OSError:  # an unreadable runs folder is reported by the save that needs it, in one line
        pass


def cmd_train(args: argparse.Namespace, out: TextIO) -> int:
    """Train with progress on stderr; the run is saved as it goes. With --processes N, start N workers through
    torch.distributed.run; started by it (or torchrun), train as one of them."""
    from core.distributed import LaunchError, from_environment, leave
    from core.store import RunStore

    try:
        group = from_environment()
    except LaunchError as error:
        raise UsageError(str(error)) from None
    if group is not None and args.processes:
        raise UsageError("--processes starts its own processes: under torchrun, leave it out "
                         "(torchrun's --nproc-per-node says how many).")
    store = RunStore(args.runs_dir)
    if args.processes and args.processes > 1:
        _check_processes(args.processes)
        return _launch(args, store)
    if group is None:
        return _train_here(args, out, store, group)
    try:
        code = _train_here(args, out, store, group)
    except BaseException:
        leave()
        raise
    _end_worker(code, out)


def _end_worker(code: int, out: TextIO) -> NoReturn:
    """End a worker whose run is over (saved, and every process past the last barrier) without running the C++
    destructors: gloo's threads, torn down while a peer closes its sockets, sometimes abort the process
    ('terminate called without an active exception', SIGABRT), which torchrun reports as a failed worker after a
    run that succeeded (seen once in CI: all epochs saved, exit 1). Nothing is left to say to the other processes."""
    for stream in (out, sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _new_run_id(args: argparse.Namespace, store: RunStore) -> str | None:
    """--run-id, checked: a valid id of a run that does not exist yet."""
    from core.store import RunError

    if args.run_id is None:
        return None
    try:
        exists = store.run_dir(args.run_id).exists()
    except RunError as error:
        raise UsageError(str(error)) from None
    if exists:
        raise UsageError(f"run {args.run_id} already exists: choose another --run-id.")
    return args.run_id


def _check_processes(processes: int) -> None:
    """At most a process per core (or per GPU, where there are more): each one is a whole torch of its own (some
    300 MB), and --processes 999 would start them all."""
    import torch

    most = max(os.cpu_count() or 1, torch.cuda.device_count())
    if processes > most:
        raise UsageError(f"--processes: at most {most} on this machine (one per core"
                         f"{' or GPU' if torch.cuda.is_available() else ''}); for more, add machines with torchrun.")


def _launch(args: argparse.Namespace, store: RunStore) -> int:
    """Check the settings here, once, then start --processes workers through torch.distributed.run; they train
    the settings resolved here (a fine-tune's included) into one run that rank 0 writes."""
    from core.distributed import launch
    from core.training import ConfigError, validate

    try:
        preset, config = _train_config(args, store)
        validate(config)
    except (ValueError, ConfigError) as error:
        raise UsageError(str(error)) from None
    run_id = _new_run_id(args, store) or store.new_run_id(config.model, config.dataset)
    _sweep(store)
    worker = ["train", "--settings", json.dumps(config.to_dict()), "--runs-dir", str(store.root.resolve()),
              "--run-id", run_id, *(["--recipe", preset.name] if preset else []), *(["--json"] if args.json else [])]
    return launch(args.processes, worker, run_id)


def _train_here(args: argparse.Namespace, out: TextIO, store: RunStore, group) -> int:
    """Train in this process, alone or as one of a group's; rank 0 (or the only process) writes the run."""
    from core.record import RecordedTraining
    from core.training import ConfigError, Training, resolve_start

    leader = group is None or group.leader
    try:
        preset, config = _train_config(args, store)
        run_id = _new_run_id(args, store)
        if not leader:
            training = Training(config, start=resolve_start(config.from_run, store), group=group)
            return _follow_leader(training, group)
        _sweep(store)
        recorded = RecordedTraining(config, store, recipe=preset, run_id=run_id, group=group)
    except (ValueError, ConfigError) as error:
        raise UsageError(str(error)) from None
    for notice in recorded.training.folder.notices if recorded.training.folder else ():
        sys.stderr.write(f"note: {notice}\n")  # files left out of the folder: said, never silent
    finished, printer = _record(recorded, group)
    summary = _train_summary(recorded, finished)
    out.write((json.dumps(summary) if args.json else _summary_text(printer, summary)) + "\n")
    return 0 if finished and finished.status == "done" else EXIT_FAILURE


def _stop_on_signals(stop: threading.Event, group) -> dict:
    """Ctrl-C (and, for a worker, torchrun's SIGTERM) stops cleanly and keeps the run; the previous handlers."""
    signals = (signal.SIGINT, signal.SIGTERM) if group is not None else (signal.SIGINT,)
    return {number: signal.signal(number, lambda *_: stop.set()) for number in signals}


def _restore(handlers: dict, group) -> None:
    """The signal handlers before training; a worker keeps its own to the end (torchrun's SIGTERM to the others
    when one fails would otherwise kill it while it closes, and its exit code would no longer say how it ended)."""
    if group is None:
        for number, handler in handlers.items():
            signal.signal(number, handler)


def _record(recorded, group):
    """Train and save, progress on stderr; the Finished event (None if training ended without one) and the printer."""
    from core.distributed import barrier
    from core.progress import ProgressPrinter
    from core.training import Finished

    stop = threading.Event()
    previous = _stop_on_signals(stop, group)
    printer = ProgressPrinter(sys.stderr)
    try:
        for event in recorded.events(stop):
            printer.show(event)
    finally:
        _restore(previous, group)
    finished = event if isinstance(event, Finished) else None
    if group is not None and finished is not None and finished.status != "failed":
        barrier()  # the others exit once the run is saved: torchrun ends a group whose first process has exited
    return finished, printer


def _follow_leader(training, group) -> int:
    """A worker other than rank 0: train its share in silence (rank 0 reports), ending when the group does."""
    from core.distributed import barrier
    from core.training import Finished

    stop = threading.Event()
    previous = _stop_on_signals(stop, group)
    try:
        for event in training.events(stop):
            pass
    finally:
        _restore(previous, group)
    if isinstance(event, Finished) and event.status != "failed":
        barrier()
        return 0
    return EXIT_FAILURE


def _train_summary(recorded, finished) -> dict:
    saved = recorded.run_dir.is_dir()  # a run whose saves all failed leaves no folder
    return {"run_id": recorded.run_id, "run_dir": str(recorded.run_dir.resolve()) if saved else None,
            "saved_epochs": recorded.saved_epochs, "status": finished.status,
            "reason": finished.reason, "dataset": recorded.training.config.dataset,
            "model": recorded.training.config.model, "epochs": finished.epochs_completed,
            "test_accuracy": finished.test_accuracy, "test_loss": finished.test_loss,
            "train_seconds": round(finished.elapsed_seconds, 3),
            "images_per_second": round(finished.images_per_second, 1), "parameters": recorded.training.parameters,
            "processes": recorded.training.processes, "backend": recorded.training.backend,
            "batch_size": recorded.training.config.batch_size, "learning_rate": recorded.training.config.learning_rate,
            **_fine_tune_summary(recorded.training, finished)}


def _fine_tune_summary(training, finished) -> dict:
    """Where the weights started and the folder trained on, with the accuracies before and after."""
    folder = training.folder
    collection = None if folder is None else {"name": folder.name, "images": folder.size,
                                              "held_out_images": folder.held_out_size}
    return {"from_run": training.config.from_run, "collection": collection,
            "collection_accuracy": finished.collection_accuracy, "before": training.before}


def _before_after(summary: dict) -> str:
    """'; held-out digits 60.0% -> 96.7%, mnist test set 99.15% -> 98.97%' (the parts that are known)."""
    before, parts = summary.get("before") or {}, []
    for key, what, digits in (("collection_accuracy", "held-out digits", 1),
                              ("test_accuracy", f"{summary['dataset']} test set", 2)):
        after = summary.get(key)
        if after is None or (key == "test_accuracy" and not before):
            continue
        earlier = f"{before[key]:.{digits}%} -> " if before.get(key) is not None else ""
        parts.append(f"{what} {earlier}{after:.{digits}%}")
    return f"; {', '.join(parts)}" if parts else ""


def _summary_text(printer, summary: dict) -> str:
    """The closing line: where the run is and, unless it is done, why it ended; or that nothing was saved."""
    if summary["run_dir"] is None:
        return f"{summary['status']}: {summary['reason']}"  # the reason says that nothing was saved
    line = printer.summary_line(summary) + _before_after(summary)
    return line if summary["status"] == "done" else f"{line} ({summary['reason']})"


PREDICT_BATCH = 64  # files preprocessed, then answered by the model together (one torch thread up to this many)


def cmd_predict(args: argparse.Namespace, out: TextIO) -> int:
    """One line per image: the digit, or that the image is blank or unreadable."""
    from core.inference import load_default_model
    from core.store import RunStore

    run = RunStore(args.runs_dir).load(args.run) if args.run else load_default_model()
    failures = 0
    for start in range(0, len(args.images), PREDICT_BATCH):
        answers, unreadable = _predicted_files(run, args.images[start:start + PREDICT_BATCH])
        failures += unreadable
        for path, answer in answers:
            out.write(_prediction_line(path, answer, run.class_names, args.json) + "\n")
        out.flush()  # each batch's lines as soon as they are known
    return EXIT_FAILURE if failures else 0


def _predicted_files(run: LoadedRun, paths: Sequence[Path]) -> tuple[list[tuple[Path, ImagePrediction]], int]:
    """(path, ImagePrediction) for each readable file, in order, and how many could not be read (each named on
    stderr, as is what was done to a file on the way). Big JPEGs are decoded reduced (to no less than twice the
    preprocessing's working size)."""
    from core.images import ImageError, load_image
    from core.inference import predict_preprocessed_many
    from core.preprocess import WORKING_SIDE, preprocess

    readable, prepared = [], []
    for path in paths:
        try:
            loaded = load_image(path, name=path.name, longer_side=2 * WORKING_SIDE)
        except (ImageError, OSError) as error:
            sys.stderr.write(f"{path}: {error}\n")
            continue
        for notice in loaded.notices:  # an animated GIF's first frame, a JPEG cut short: said, then answered
            sys.stderr.write(f"{path}: note: {notice}\n")
        readable.append(path)
        prepared.append(preprocess(loaded.image, run.input_format))
    return list(zip(readable, predict_preprocessed_many(run, prepared))), len(paths) - len(readable)


def _prediction_line(path: Path, answer, class_names: tuple[str, ...], as_json: bool) -> str:
    if as_json:
        probabilities = None if answer.blank else [round(float(p), 6) for p in answer.probabilities]
        return json.dumps({"image": str(path), "digit": answer.label, "class": None if answer.blank else
                           class_names[answer.label], "confidence": answer.confidence, "probabilities": probabilities})
    if answer.blank:
        return f"{path}: {answer.refusal or 'blank (no ink found)'}"  # a dot or a line: the sentence asking for a digit
    return f"{path}: {class_names[answer.label]} ({answer.confidence:.1%})"


def cmd_runs(args: argparse.Namespace, out: TextIO) -> int:
    """The saved runs, newest first."""
    from core.store import RunStore

    store = RunStore(args.runs_dir)
    if store.root.exists() and not store.root.is_dir():
        raise UsageError(f"--runs-dir {store.root} is a file, not a folder of runs.")
    runs = store.list_runs()
    for info in runs:
        if args.json:
            out.write(json.dumps({"run_id": info.run_id, "status": info.status, "model": info.get("model"),
                                  "dataset": info.get("dataset"), "epochs": info.get("epochs_completed"),
                                  "test_accuracy": info.get("final", {}).get("test_accuracy"),
                                  "error": info.error}) + "\n")
        else:
            accuracy = info.get("final", {}).get("test_accuracy")
            score = f"{accuracy:.2%}" if isinstance(accuracy, (int, float)) else "-"
            detail = info.error or f"{info.get('model')} on {info.get('dataset')}, {info.get('epochs_completed')} epochs"
            out.write(f"{info.run_id}  {info.status:<11} {score:>7}  {detail}\n")
    if not runs and not args.json:
        out.write("No runs yet: train one with `python -m core train --recipe digits-cnn`.\n")
    return 0


def cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    """Write the run's zip, the same bytes the Train page downloads; a refused run writes no file."""
    from core.archive import export_run
    from core.store import RunStore

    store = RunStore(args.runs_dir)
    store.run_dir(args.run_id)  # a bad id is refused before it becomes part of a file name
    output = args.output or Path(f"{args.run_id}.zip")
    if output.is_dir():
        output = output / f"{args.run_id}.zip"
    out.write(f"{export_run(store, args.run_id, output)}\n")
    return 0


COMMANDS = {"recipes": cmd_recipes, "train": cmd_train, "predict": cmd_predict, "runs": cmd_runs, "export": cmd_export}


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Run one command; errors are one line on stderr, exit 2 for bad arguments and 1 otherwise."""
    from core.data import DatasetUnavailable
    from core.store import RunError

    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, out)
    except UsageError as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_USAGE
    except (DatasetUnavailable, RunError, OSError, ValueError) as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_FAILURE
