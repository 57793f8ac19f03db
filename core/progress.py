"""A terminal progress bar: one consumer of training events among others."""

from __future__ import annotations

from typing import TextIO

from core.training import BatchProgress, EpochEnd, Finished, Started, TrainingEvent

BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    """Seconds as h:mm:ss or m:ss."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(event: BatchProgress) -> str:
    """epoch 2/10 [#####.....] 43% loss 0.2134 acc 93.1% 5,120 img/s ETA 0:14"""
    fraction = event.step / max(event.total_steps, 1)
    filled = int(fraction * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    return (f"epoch {event.epoch}/{event.epochs} [{bar}] {fraction:4.0%} loss {event.loss:.4f} "
            f"acc {event.accuracy:.1%} {event.images_per_second:,.0f} img/s ETA {format_duration(event.eta_seconds)}")


def processes_note(event: Started) -> str:
    """"; 2 processes (gloo): global batch 100 (50 per process), learning rate 0.5" with several, else ""."""
    if event.processes <= 1:
        return ""
    share = event.batch_size / event.processes
    per = f"{share:g}" if share.is_integer() else f"{int(share)} or {int(share) + 1}"
    return (f"; {event.processes} processes ({event.backend}): global batch {event.batch_size:,} ({per} per process), "
            f"learning rate {event.learning_rate:g} (the gradients are averaged over the global batch)")


class ProgressPrinter:
    """Redraws one status line on a terminal; on a pipe or log, prints a line per epoch only."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()

    def show(self, event: TrainingEvent) -> None:
        """Render one event."""
        if isinstance(event, Started):
            self._line(f"training {event.model} ({event.parameters:,} parameters) on {event.dataset}: "
                       f"{event.train_size:,} images, {event.epochs} epochs, {event.device}{processes_note(event)}")
        elif isinstance(event, BatchProgress) and self.live:
            self.stream.write("\r\033[K" + progress_line(event))
            self.stream.flush()
        elif isinstance(event, EpochEnd):
            self._epoch(event)
        elif isinstance(event, Finished) and event.status != "done":
            self._line(f"{event.status}: {event.reason}")

    def _epoch(self, event: EpochEnd) -> None:
        many = event.epochs > 50  # 1,000 tiny epochs would flood the log: print about 20
        if many and event.epoch % max(1, event.epochs // 20) and event.epoch != event.epochs:
            return
        self._line(f"epoch {event.epoch}/{event.epochs}: train loss {event.train_loss:.4f} acc {event.train_accuracy:.2%}"
                   f" | test loss {event.test_loss:.4f} acc {event.test_accuracy:.2%} | "
                   f"{event.images_per_second:,.0f} img/s, {format_duration(event.elapsed_seconds)}")

    def _line(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.live else "") + text + "\n")
        self.stream.flush()

    @staticmethod
    def summary_line(summary: dict) -> str:
        """The closing line of a run, for people."""
        accuracy = summary["test_accuracy"]
        score = f"test accuracy {accuracy:.2%}" if accuracy is not None else "no complete epoch"
        return (f"{summary['status']}: {summary['model']} on {summary['dataset']}, {summary['epochs']} epochs, {score}, "
                f"{summary['train_seconds']:.1f} s, {summary['images_per_second']:,.0f} img/s -> {summary['run_dir']}")
