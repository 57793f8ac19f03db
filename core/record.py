"""Training that saves itself: a consumer of training events that keeps the run folder up to date."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Iterator

from core.data import Dataset
from core.models import model_spec
from core.recipes import Recipe, planned_reference
from core.runlog import EventLogWriter, launch_origin
from core.store import RunStore, process_start_time, this_host, utc_now
from core.training import EpochEnd, Finished, Started, TrainConfig, Training, TrainingEvent, resolve_start

if TYPE_CHECKING:
    from core.distributed import Group

FINAL_KEYS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
FOLDER_FINAL_KEYS = ("collection_loss", "collection_accuracy")  # on the image folder's held-out part
SAVE_INTERVAL_SECONDS = 1.0  # tiny epochs (digits: 1,000 of them) must not spend their time writing files


class RecordedTraining:
    """A Training whose run folder is written at the first epoch, then at most every second, and at the end."""

    def __init__(self, config: TrainConfig, store: RunStore, *, recipe: Recipe | None = None,
                 data: Dataset | None = None, run_id: str | None = None, group: Group | None = None,
                 origin: str | None = None) -> None:
        self.training = Training(config, data, start=resolve_start(config.from_run, store), group=group)
        self.store = store
        self.recipe = recipe
        self.run_id = run_id or store.new_run_id(config.model, config.dataset)
        self.created_at = utc_now()
        self._last_save = 0.0
        self.saved_epochs = 0  # epochs whose weights are on disk, referenced by the saved metadata
        self._weights_file: str | None = None
        self.origin = origin or launch_origin()  # who started it, for pages that follow it from elsewhere
        self._log: EventLogWriter | None = None  # the run's event log, opened once its folder exists
        self._logged_end = False

    @property
    def run_dir(self):
        return self.store.run_dir(self.run_id)

    def meta(self, status: str, finished: Finished | None = None, epochs: int | None = None) -> dict[str, Any]:
        """The run's metadata as it stands now (with `epochs`: as it stood after that many epochs)."""
        training, config = self.training, self.training.config
        history = [self._epoch_row(event) for event in training.history[:epochs]]
        last = history[-1] if history else {}
        seconds = finished.elapsed_seconds if finished else (last.get("elapsed_seconds") or 0.0)
        return {
            "model": config.model, "model_title": model_spec(config.model).title, "dataset": config.dataset,
            "input_format": asdict(training.data.input_format), "pixel_scale": training.pixel_scale,
            "normalization": {"mean": training.mean, "std": training.std},
            "class_names": list(training.data.class_names), "settings": config.to_dict(),
            "recipe": self.recipe.name if self.recipe else None,
            "reported_accuracy": self.recipe.reported_accuracy if self.recipe else None,
            "status": status, "reason": finished.reason if finished else "", "history": history,
            "epochs_completed": len(history), "final": {k: last.get(k) for k in FINAL_KEYS + (
                FOLDER_FINAL_KEYS if training.folder is not None else ())},
            "parameters": training.parameters, "train_seconds": seconds,
            "images_per_second": finished.images_per_second if finished else last.get("images_per_second"),
            "train_size": training.train_size,
            "test_size": len(training.data.test_labels), "device": str(training.device),
            "world_size": training.processes, "backend": training.backend, "devices": training.devices,
            "created_at": self.created_at, "pid": os.getpid(), "host": this_host(),  # a pid means this machine's
            "pid_started": process_start_time(os.getpid()),  # tells this process from a later one reusing its id
            **self._continued(),
        }

    def _epoch_row(self, event: EpochEnd) -> dict[str, Any]:
        """An epoch in the history; the held-out part's loss and accuracy only for runs with an image folder."""
        row = asdict(event)
        if self.training.folder is None:
            for key in FOLDER_FINAL_KEYS:
                del row[key]
        return row

    def _continued(self) -> dict[str, Any]:
        """Where the weights started ("from_run"), the image folder trained on ("collection") and the start's
        accuracies before training ("before"); "final" and "history" hold them after."""
        training, folder = self.training, self.training.folder
        collection = None if folder is None else {
            "name": folder.name[:64], "images": folder.size, "train_images": folder.train_size,
            "held_out_images": folder.held_out_size, "held_out_share": folder.held_out_share,
            "share": training.config.collection_share if training.mixes_folder else 1.0,
            "mixed_with": training.config.dataset if training.mixes_folder else None}
        return {"from_run": training.config.from_run, "collection": collection, "before": training.before}

    def _save(self, status: str, finished: Finished | None = None) -> None:
        epochs = len(self.training.history)
        weights = self.training.last_complete_state if epochs > self.saved_epochs else None
        meta = {**self.meta(status, finished), "weights_file": self._weights_file}
        self._weights_file = self.store.save(self.run_id, meta, weights)
        self.saved_epochs = epochs if weights is not None else self.saved_epochs
        self._last_save = time.monotonic()

    def events(self, stop: threading.Event | None = None) -> Iterator[TrainingEvent]:
        """The training's events, saving the run and appending them to its event log as they pass; a failed save ends
        training as failed."""
        stop = stop or threading.Event()
        try:
            for event in self.training.events(stop):
                try:
                    self._save_for(event)
                except OSError as error:  # disk full, read-only: the run must not pretend it was saved
                    stop.set()
                    event = self._save_failed(event, error)
                    self._log_event(event)
                    yield event
                    return
                self._log_event(event)
                yield event
        finally:  # an exception, or a consumer that let go: followers must not wait for an end that never comes
            if self._log is not None and not self._logged_end:
                self._log.write(Finished("failed", "the training ended before it finished", len(self.training.history),
                                         None, None, 0.0, 0.0))
                self._log.close()

    def _reference(self) -> dict[str, Any]:
        """The figure this run is held to if it ends as planned (core.recipes.planned_reference), for its followers."""
        reference = planned_reference(self.recipe, self.training.config, self.training.train_size)
        return {"reported_accuracy": reference.accuracy if reference else None,
                "reference_source": reference.source if reference else None}

    def _log_event(self, event: TrainingEvent) -> None:
        if self._log is None:
            if not self.run_dir.is_dir():  # a run whose first save failed has no folder to log in
                return
            self._log = EventLogWriter(self.run_dir, {
                "pid": os.getpid(), "pid_started": process_start_time(os.getpid()), "host": this_host(),
                "origin": self.origin, "model_title": model_spec(self.training.config.model).title,
                **self._reference()})
        self._log.write(event)
        self._logged_end = self._logged_end or isinstance(event, Finished)

    def _save_failed(self, event: TrainingEvent, error: OSError) -> Finished:
        """The end of a run whose save failed: the reason says what stays saved; a run without weights is removed."""
        kept = self.saved_epochs
        outcome = f"epoch {kept} stays saved" if kept else "nothing was saved"
        last = self.training.history[kept - 1] if kept else None
        finished = Finished("failed", f"the run could not be saved ({error.strerror or error}); {outcome}", kept,
                            last.test_accuracy if last else None, last.test_loss if last else None,
                            getattr(event, "elapsed_seconds", 0.0), getattr(event, "images_per_second", 0.0))
        if kept:
            self._try_saving_failure(finished)
        else:
            self._remove_run_without_weights()
        return finished

    def _remove_run_without_weights(self) -> None:
        """A run whose first save failed left no folder; one whose first weights failed leaves none either."""
        if self.run_dir.is_dir():
            with contextlib.suppress(OSError):
                self.store.delete(self.run_id)

    def _try_saving_failure(self, finished: Finished) -> None:
        """Best effort: mark the saved version failed, so it does not read as running or interrupted."""
        meta = {**self.meta("failed", finished, self.saved_epochs), "weights_file": self._weights_file}
        with contextlib.suppress(OSError):  # the disk that refused the last save may refuse this one too
            self.store.save(self.run_id, meta, None)

    def _save_for(self, event: TrainingEvent) -> None:
        if isinstance(event, Finished):
            self._save(event.status, event)
        elif isinstance(event, Started) or (isinstance(event, EpochEnd) and
                                            time.monotonic() - self._last_save >= SAVE_INTERVAL_SECONDS):
            self._save("running")
