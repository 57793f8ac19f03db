"""Training on several processes with PyTorch's own engine: torch.distributed and DistributedDataParallel, the
workers started by torch.distributed.run (the engine behind `torchrun`). Nothing here launches or talks on its own.

A worker learns its place from the variables torchrun sets (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE): with
more than one process, `Group.join` opens the process group (gloo on the CPU, nccl on CUDA) and core.training
shards every global batch over the group, averages gradients through DDP and gathers the evaluation.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

# A collective waits this long for a process that neither answers nor dies (a dead one is noticed at once, its
# sockets close); long enough for the slowest evaluation of a large test set on one process.
COLLECTIVE_TIMEOUT = timedelta(minutes=5)
DEVICE_NAME_BYTES = 64  # each process's device name, gathered as fixed-size bytes (no pickling between processes)
MAX_PROCESSES = 1024
ENVIRONMENT = ("WORLD_SIZE", "RANK", "LOCAL_RANK")


class LaunchError(RuntimeError):
    """The environment says this is a worker, but not in a way that can work; str() says why."""


@dataclass(frozen=True)
class Group:
    """This process's place among the training processes, as torchrun's variables describe it."""

    world_size: int
    rank: int
    local_rank: int
    local_world_size: int

    @property
    def leader(self) -> bool:
        """Rank 0: the one process that writes the run and reports progress."""
        return self.rank == 0

    def device(self, requested: torch.device) -> torch.device:
        """The device this process trains on: its own GPU (by local rank) on CUDA, else the one requested."""
        import torch

        return torch.device("cuda", self.local_rank) if requested.type == "cuda" else requested

    def join(self, device: torch.device) -> str:
        """Open the process group on `device`; returns the backend (nccl on CUDA, gloo otherwise)."""
        import torch
        import torch.distributed as dist

        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        elif "OMP_NUM_THREADS" not in os.environ:  # torchrun sets 1; a launcher that did not: share the cores
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.local_world_size))
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT,
                                    device_id=device if device.type == "cuda" else None)
        return backend


def from_environment(environ: dict[str, str] | None = None) -> Group | None:
    """This process's Group when torchrun started it among several (WORLD_SIZE above 1), else None: one process
    trains exactly as without torchrun. LaunchError for variables that are not whole numbers in range."""
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return None
    try:
        world, rank, local_rank = (int(environ.get(name, "0")) for name in ENVIRONMENT)
        local_world = int(environ.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        raise LaunchError("WORLD_SIZE, RANK, LOCAL_RANK and LOCAL_WORLD_SIZE must be whole numbers.") from None
    if world <= 1:
        return None
    if not (0 <= rank < world and 0 <= local_rank < local_world <= world):
        raise LaunchError(f"RANK {rank} and LOCAL_RANK {local_rank} do not fit WORLD_SIZE {world} and "
                          f"LOCAL_WORLD_SIZE {local_world}.")
    return Group(world, rank, local_rank, local_world)


def leave() -> None:
    """Close the process group, if one is open (a broken group is closed as well as it can be)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a peer that died leaves a group that may refuse a clean close
            pass


def all_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Each value summed over every process (counts and sums of the evaluation and the epoch's meter)."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def any_true(flags: Sequence[bool], device: torch.device) -> list[bool]:
    """Each flag, true on every process when it is true on any: decisions to stop are taken together, or one
    process would wait forever for the others at the next step."""
    import torch
    import torch.distributed as dist

    tensor = torch.tensor([int(flag) for flag in flags], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(value) for value in tensor.tolist()]


def gather_device_names(name: str, device: torch.device) -> list[str]:
    """Every process's device name ("cpu on host-a"), in rank order."""
    import torch
    import torch.distributed as dist

    data = name.encode("utf-8")[:DEVICE_NAME_BYTES].ljust(DEVICE_NAME_BYTES, b"\0")
    mine = torch.tensor(list(data), dtype=torch.uint8, device=device)
    gathered = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    return [bytes(tensor.tolist()).rstrip(b"\0").decode("utf-8", "replace") for tensor in gathered]


def share_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) copied to every process: all evaluate the weights that
    rank 0 saves."""
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def barrier() -> bool:
    """Wait for every process; False when the group is broken (a process died)."""
    import torch.distributed as dist

    try:
        dist.barrier()
    except Exception:  # noqa: BLE001 - gloo and nccl raise their own errors for a lost peer
        return False
    return True


def launch(processes: int, worker_arguments: Sequence[str], run: str, err=sys.stderr) -> int:
    """Start `processes` workers on this machine through torch.distributed.run, each running
    `python -m core <worker_arguments>`, and wait for them. Returns the exit code: rank 0's own (it reported the
    run) or, when a worker died without reporting, 1 after one line on `err` saying which and how (`run`: the
    run's id, for that line)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch
    from torch.distributed.run import config_from_args, parse_args

    arguments = parse_args([f"--nproc-per-node={processes}", "--nnodes=1", "--max-restarts=0",
                            "--rdzv-backend=c10d", "--rdzv-endpoint=localhost:0", f"--rdzv-id={uuid.uuid4()}",
                            "-m", "core", *worker_arguments])  # torchrun --standalone's rendezvous
    _quiet("torch.distributed.elastic")  # its notices and failures: what matters is said in one line
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))  # silences its notice
    config, command, command_arguments = config_from_args(arguments)
    try:
        elastic_launch(config, command)(*command_arguments)
    except ChildFailedError as error:
        return _failure_code(error.failures, processes, err, run)
    except SignalException:  # Ctrl-C or a stop: the workers got the signal too, saved the run and said so
        return 1
    return 0


AGENT_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # what torch.distributed.run sends the others when one fails


def _failure_code(failures: dict, processes: int, err, run: str) -> int:
    """The exit code after a worker failed. A worker that died of its own (killed, or ended with an error while
    rank 0 did not) gets one line naming it; otherwise rank 0 said what happened and its code is returned."""
    causes = {rank: failure for rank, failure in failures.items()
              if failure.exitcode > 0 and rank != 0 or failure.exitcode < 0 and -failure.exitcode not in AGENT_SIGNALS}
    leader = failures.get(0)
    if not causes and leader is not None and leader.exitcode > 0:
        return leader.exitcode
    rank, failure = min((causes or failures).items())
    how = f"was killed by {_signal_name(-failure.exitcode)}" if failure.exitcode < 0 else \
        f"exited with code {failure.exitcode}"
    err.write(f"error: training process {rank} of {processes} {how}; run {run} keeps its last saved epoch.\n")
    return 1


def _quiet(prefix: str) -> None:
    """Silence every logger under `prefix` (torch's elastic modules each set their own level)."""
    for name in [prefix, *logging.root.manager.loggerDict]:
        if name == prefix or name.startswith(prefix + "."):
            logging.getLogger(name).setLevel(logging.CRITICAL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
