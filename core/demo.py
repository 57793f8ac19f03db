"""Public demo mode: what visitors of a shared server may do, read once from the environment.

Off by default: a person running the app on their own machine can do everything. A host who serves it to
strangers sets DIGIT_STUDIO_PUBLIC_DEMO: visitors explore and predict, training is capped or off, and nobody
deletes runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

DEMO_ENV = "DIGIT_STUDIO_PUBLIC_DEMO"
OFF_WORDS = frozenset({"", "0", "off", "false", "no"})
TRAIN_WORDS = frozenset({"1", "on", "true", "yes", "train"})
DEMO_MAX_EPOCHS = 3  # a few minutes of a shared CPU per visitor at most
DEMO_MAX_TRAIN_IMAGES = 10_000
DEMO_QUEUED_PER_VISITOR = 1


@dataclass(frozen=True)
class DemoPolicy:
    """Limits for visitors of a public server."""

    training: bool  # False: the Train page explains that training is off here
    max_epochs: int = DEMO_MAX_EPOCHS
    max_train_images: int = DEMO_MAX_TRAIN_IMAGES
    queued_per_visitor: int = DEMO_QUEUED_PER_VISITOR
    deleting: bool = False

    def training_problem(self, epochs: int, train_images: int) -> str | None:
        """Why a visitor may not train these settings here, or None."""
        if not self.training:
            return "Training is switched off on this public demo: explore the data and predict with the saved models."
        if epochs > self.max_epochs:
            return f"This public demo trains at most {self.max_epochs} epochs a run."
        if train_images > self.max_train_images:
            return f"This public demo trains on at most {self.max_train_images:,} images a run (set Training images)."
        return None


def demo_policy(environ: Mapping[str, str] | None = None) -> DemoPolicy | None:
    """The public demo's limits, or None when the app runs for its owner (the default).

    "1" (or on, true, yes, train): visitors may train small runs; any other value but "0"/off/false/no, such as
    "no-training", switches training off: a typo must not open a public server to long trainings.
    """
    value = (os.environ if environ is None else environ).get(DEMO_ENV, "").strip().lower()
    if value in OFF_WORDS:
        return None
    return DemoPolicy(training=value in TRAIN_WORDS)
