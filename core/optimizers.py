"""torch.optim's optimizers and LR schedules, stepped without loading torch's compiler.

torch.optim marks its methods for torch.compile: `add_param_group`, `zero_grad`, `state_dict` and `load_state_dict`
import torch._dynamo on their first call to wrap themselves in `torch._dynamo.disable`, and every `step()` imports
it to mark graph breaks. Eager training uses neither, yet the import costs about a second of CPU (sympy included,
measured in bench/README.md) before a process's first step: every training command, every test that trains. Here
the marks are pre-filled with the plain methods (what torch caches after its first call, minus the compiler's
wrapper) and a step calls the optimizer's own update under the grad mode torch's wrapper sets. The update itself is
torch's: tests/test_optimizers.py checks that the weights come out bit for bit as `optimizer.step()` leaves them.

This process never compiles a model; one that did would have to step through `optimizer.step()` instead.
Several processes (DDP) import the compiler anyway: DistributedDataParallel reads its settings.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn
from torch.optim import Optimizer

from core.config import TrainConfig

FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")  # one fused kernel updates every parameter: measured faster (bench/README)
COMPILER_MARKED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _mark_without_compiler() -> None:
    """Give each compiler-marked Optimizer method the mark torch would cache, pointing at the method itself."""
    for name in COMPILER_MARKED:
        method = getattr(Optimizer, name).__wrapped__  # torch._disable_dynamo's functools.wraps
        if getattr(method, "__dynamo_disable", None) is None:
            setattr(method, "__dynamo_disable", method)


def make_optimizer(config: TrainConfig, model: nn.Module, device: torch.device) -> Optimizer:
    _mark_without_compiler()
    params, lr, decay = model.parameters(), config.learning_rate, config.weight_decay
    fused = device.type in FUSED_OPTIMIZER_DEVICES
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=config.betas, weight_decay=decay, fused=fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=config.betas, weight_decay=decay, fused=fused)
    momentum = config.momentum if config.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=decay, fused=fused)


def make_schedule(config: TrainConfig, optimizer: Optimizer, steps_per_epoch: int):
    """The LR schedule and whether it steps per batch (True) or per epoch (False)."""
    if config.schedule == "one-cycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.learning_rate,
                                                   total_steps=steps_per_epoch * config.epochs), True
    if config.schedule == "step":
        every = config.step_epochs or max(1, config.epochs // 3)
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=every, gamma=0.1), False
    return None, False


def _update_of(optimizer: Optimizer) -> Callable[[Optimizer], object]:
    """The optimizer class's own `step`, under torch's profiling and grad-mode wrappers."""
    return inspect.unwrap(type(optimizer).step)


def step(optimizer: Optimizer) -> None:
    """`optimizer.step()` without the compiler's graph-break marks: the same update, with grad mode as torch sets it
    for a step; an LR schedule learns that the optimizer stepped, as from `optimizer.step()`."""
    with torch.set_grad_enabled(optimizer.defaults.get("differentiable", False)):
        _update_of(optimizer)(optimizer)
    optimizer._opt_called = True  # type: ignore[attr-defined]  # what torch's LR schedules check before their step
