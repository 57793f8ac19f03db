"""The engine steps torch.optim's optimizers without loading torch's compiler, and gets torch's own updates."""

import json
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from core import optimizers
from core.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
BASE = TrainConfig(model="digits-cnn", dataset="digits", epochs=3, batch_size=16, learning_rate=0.05,
                   weight_decay=1e-3, momentum=0.9)
SETUPS = [(name, schedule) for name in ("sgd", "momentum", "adam", "adamw") for schedule in ("none", "one-cycle", "step")]


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))


def train_steps(config: TrainConfig, step) -> list[torch.Tensor]:
    """Nine steps over three epochs of three batches, the schedule stepped as the engine steps it."""
    model = small_model()
    optimizer = optimizers.make_optimizer(config, model, torch.device("cpu"))
    schedule, per_batch = optimizers.make_schedule(config, optimizer, steps_per_epoch=3)
    batches = torch.Generator().manual_seed(1)
    for _ in range(config.epochs):
        for _ in range(3):
            images = torch.randn(16, 1, 8, 8, generator=batches)
            labels = torch.randint(0, 10, (16,), generator=batches)
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(images), labels).backward()
            step(optimizer)
            if schedule is not None and per_batch:
                schedule.step()
        if schedule is not None and not per_batch:
            schedule.step()
    return [parameter.detach().clone() for parameter in model.parameters()]


@pytest.mark.parametrize("name, schedule", SETUPS)
def test_a_step_updates_the_weights_exactly_as_torchs_step_does(name, schedule):
    config = replace(BASE, optimizer=name, schedule=schedule)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an LR schedule warns when it thinks the optimizer never stepped
        ours = train_steps(config, optimizers.step)
    theirs = train_steps(config, lambda optimizer: optimizer.step())
    first = small_model()
    assert any(not torch.equal(after, before) for after, before in zip(ours, first.parameters()))  # it trained
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_a_step_updates_without_autograd_on_torchs_per_tensor_path_too():
    # the engine's optimizers take the fused path; torch's per-tensor one updates leaves in place, which autograd
    # refuses unless the step runs without it, as torch's own step wrapper runs it
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=False)
    nn.functional.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3])).backward()
    before = [parameter.detach().clone() for parameter in model.parameters()]
    optimizers.step(optimizer)
    assert all(not torch.equal(after, was) for after, was in zip(model.parameters(), before))


TRAIN_AND_REPORT = """
import json, sys
from core.training import TrainConfig, train
config = TrainConfig(model="digits-cnn", dataset="digits", epochs=2, batch_size=100, optimizer=sys.argv[1],
                     schedule=sys.argv[2], learning_rate=0.05)
ends = [event.status for event in train(config) if type(event).__name__ == "Finished"]
print(json.dumps({"ends": ends, "compiler": "torch._dynamo" in sys.modules}))
"""


@pytest.mark.parametrize("name, schedule", [("momentum", "one-cycle"), ("adam", "step")])
def test_a_training_process_never_loads_torchs_compiler(name, schedule):
    # its own process: this one may have loaded it already (another test, torch's own step above)
    done = subprocess.run([sys.executable, "-c", TRAIN_AND_REPORT, name, schedule], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"ends": ["done"], "compiler": False}
