"""Training in several processes, as `torchrun --nproc_per_node N -m train …` starts them.

torchrun gives each process its RANK, LOCAL_RANK and WORLD_SIZE. Every process builds the same
global batch (`train.data.BatchStream` depends only on the seed and the step) and trains on its
share of it; DistributedDataParallel averages the gradients, so every process holds the same
weights after each step and `--batch-size` stays the global batch. Process 0 alone evaluates,
logs, checkpoints and pushes.

BatchNorm: on CUDA (NCCL) the networks use `torch.nn.SyncBatchNorm`, so each batch is normalised
with the statistics of the whole global batch, as in one process. PyTorch implements it for
GPUs only; with the gloo backend on CPU each process normalises its own share.
"""

import logging
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

log = logging.getLogger("train")

# Process 0 may preprocess a whole dataset (CelebA: minutes to hours on few cores) while the
# others wait for it at a barrier; collectives that really hang are rare, and torchrun stops
# every process as soon as one of them fails.
COLLECTIVE_TIMEOUT = timedelta(hours=6)


@dataclass(frozen=True)
class Processes:
    """This process's place among the ones training together (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that evaluates, logs, writes files and pushes."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.world_size > 1

    def share(self, batch_size: int) -> slice:
        """This process's rows of a global batch of `batch_size` (which the count divides)."""
        per_process = batch_size // self.world_size
        return slice(self.rank * per_process, (self.rank + 1) * per_process)


ONE_PROCESS = Processes()


def from_environment() -> Processes:
    """The processes torchrun started (its RANK, WORLD_SIZE, LOCAL_RANK), or a single one."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as error:
        raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers: {error}.") from error
    if not (world_size >= 1 and 0 <= rank < world_size and local_rank >= 0):
        raise ValueError(f"RANK {rank} of WORLD_SIZE {world_size} makes no sense.")
    return Processes(rank, world_size, local_rank)


def start(processes: Processes, device: torch.device) -> None:
    """Join the other processes: NCCL between GPUs, gloo between CPU processes."""
    if not processes.several or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    gpu = device if device.type == "cuda" else None  # bound now: NCCL's first call need not guess
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT, device_id=gpu)


def stop(together: bool) -> None:
    """Leave the process group. `together` (every process finished, or stopped at the same step):
    first wait for all of them, so that none closes its connections while another still holds
    them open; a gloo process that did so was seen to abort as it exited ("terminate called
    without an active exception"). After a failure in one process nothing waits: torchrun stops
    the others."""
    if not dist.is_initialized():
        return
    if together:
        dist.barrier()
    dist.destroy_process_group()


def exit_program(code: int) -> NoReturn:
    """End `python -m train` with `code`. A process torchrun started as one of several skips the
    interpreter's shutdown: a run that built DistributedDataParallel leaves its gloo group alive
    after `stop` (PyTorch keeps references to it; its threads were seen running after
    `destroy_process_group`), and a process whose interpreter shut down around those threads
    was seen to abort in CI ("terminate called without an active exception", SIGABRT) after
    saving everything, which fails the whole run. By now every file is closed (the writes
    joined, train.log closed by `main`); the standard streams are flushed here."""
    try:
        several = from_environment().several
    except ValueError:  # `main` said so already
        several = False
    if not several:
        sys.exit(code)
    logging.shutdown()  # what the skipped shutdown would do for any handler still open
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def check_batch_size(processes: Processes, batch_size: int) -> None:
    """`--batch-size` is the global batch: every process must get the same share of it."""
    if batch_size % processes.world_size:
        raise ValueError(
            f"--batch-size {batch_size} is the global batch and must divide evenly among the "
            f"{processes.world_size} processes: use a multiple of {processes.world_size}."
        )


def wait_for_main(processes: Processes) -> None:
    """Hold the other processes until process 0 has done what they then read (the cache)."""
    if processes.several:
        dist.barrier()


def total(values: torch.Tensor, processes: Processes) -> torch.Tensor:
    """`values` summed over the processes (in place), so each one takes the same decision."""
    if processes.several:
        dist.all_reduce(values)
    return values


def broadcast_text(text: str | None, processes: Processes) -> str:
    """Process 0's `text` in every process (such as the run folder it chose)."""
    if not processes.several:
        return text or ""
    message = [text]
    dist.broadcast_object_list(message, src=0)  # pickled between our own processes only
    return message[0] or ""


def gather_states(state: torch.Tensor, processes: Processes) -> list[torch.Tensor]:
    """Every process's `state` (a random generator's, say), in rank order, in every process."""
    if not processes.several:
        return [state]
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # NCCL moves GPU tensors only
    local = state.to(device)
    states = [torch.empty_like(local) for _ in range(processes.world_size)]
    dist.all_gather(states, local)
    return [s.cpu() for s in states]


def replicate(module: nn.Module, processes: Processes, device: torch.device) -> nn.Module:
    """`module` whose forward pass synchronises gradients (DDP), with BatchNorm over the global
    batch on CUDA. The module's own parameters are shared, not copied: the optimizers, the
    checkpoint and the exported model keep using the plain module."""
    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    # Each forward pass starts from process 0's BatchNorm running statistics (DDP's default), so
    # the checkpoint, which holds process 0's, is all a resumed run needs.
    return DistributedDataParallel(
        module, device_ids=[device.index] if device.type == "cuda" else None
    )
