"""Training checkpoints as safetensors: both networks, both optimizers, step, RNG and configs;
and reading a run folder back (its model, latent discriminator and data) for evaluation.

No pickle anywhere, so `--resume` never executes code from a file. Writes go to a temporary
file that replaces the previous checkpoint only once complete (rename is atomic), so a crash
mid-write leaves the last good checkpoint in place.
"""

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from fader.model import ALIGN, FaderNetwork, LatentDiscriminator
from train.data import PreparedData, as_channels, prepare
from train.sources import open_source

CHECKPOINT_NAME = "checkpoint.safetensors"


def flatten_optimizer(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    """Adam's per-parameter tensors as flat names, and its param groups (JSON-ready)."""
    state = optimizer.state_dict()
    tensors = {
        f"{prefix}.{param_id}.{name}": value
        for param_id, slots in state["state"].items()
        for name, value in slots.items()
    }
    return tensors, state["param_groups"]


def unflatten_optimizer(prefix: str, tensors: dict[str, torch.Tensor], groups: list) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            param_id, name = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(param_id), {})[name] = value
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    path: Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    info: dict[str, Any],
    rng_states: dict[str, list[torch.Tensor]] | None = None,
) -> None:
    """Write everything a resumed run needs; `info` holds JSON-ready configs. `rng_states` are
    the random generators of the processes that trained together, by kind (`generator_states`;
    default: this process's CPU generator)."""
    write_checkpoint(path, *checkpoint_contents(modules, optimizers, step, info, rng_states))


def checkpoint_contents(
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    info: dict[str, Any],
    rng_states: dict[str, list[torch.Tensor]] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A copy in host memory of what `save_checkpoint` writes (tensors, metadata): training may
    go on while another thread writes it (`write_checkpoint`)."""
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        tensors.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    groups = {}
    for name, optimizer in optimizers.items():
        flat, groups[name] = flatten_optimizer(f"optimizer.{name}", optimizer)
        tensors.update(flat)
    for kind, states in (rng_states or {"torch": [torch.get_rng_state()]}).items():
        tensors.update({rng_key(rank, kind): state for rank, state in enumerate(states)})
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    metadata = {"step": str(step), "info": json.dumps(info), "optimizer_groups": json.dumps(groups)}
    return tensors, metadata


def write_checkpoint(
    path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """Write a checkpoint's contents to a temporary file, then put it in place in one rename."""
    temporary = path.with_name(path.name + ".tmp")
    try:
        try:
            save_file(tensors, str(temporary), metadata=metadata)
        except SafetensorError as error:  # its I/O errors (a full disk) are not OSErrors
            raise as_os_error(error, temporary) from error
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)  # the space goes back; the last good one stays
        raise
    os.replace(temporary, path)


def generator_states(device: torch.device) -> dict[str, torch.Tensor]:
    """This process's random generators, by kind: the CPU's ("torch"), and on CUDA the GPU's
    ("cuda"), which draws the dropout masks of a run there."""
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def rng_key(rank: int, kind: str = "torch") -> str:
    """Where process `rank`'s `kind` of generator state is kept ("rng.torch" for process 0, as
    checkpoints of one process always had it)."""
    return f"rng.{kind}" if rank == 0 else f"rng.{kind}.{rank}"


def as_os_error(error: SafetensorError, path: Path) -> OSError:
    """safetensors' "I/O error: … (os error 28)" as the OSError it was, so it reads the same."""
    code = re.search(r"os error (\d+)", str(error))
    if code is None:
        return OSError(f"{error}")
    number = int(code.group(1))
    return OSError(number, os.strerror(number), str(path))


def read_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata()


def read_checkpoint_info(path: Path) -> tuple[int, dict[str, Any]]:
    """The step and configs of a checkpoint, without loading its tensors."""
    metadata = read_metadata(path)
    return int(metadata["step"]), json.loads(metadata["info"])


def load_checkpoint(
    path: Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    device: torch.device,
    rank: int = 0,
) -> int:
    """Restore modules, optimizers and process `rank`'s generators in place; return the step to
    continue from. A generator the checkpoint has no state of (the run now has more processes
    than it had, or moved from CPU to CUDA) is kept as it is: its random draws start afresh."""
    metadata = read_metadata(path)
    tensors = load_file(str(path))
    for name, module in modules.items():
        module.load_state_dict(module_state(tensors, name))
    groups = json.loads(metadata["optimizer_groups"])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(unflatten_optimizer(f"optimizer.{name}", tensors, groups[name]))
        match_parameter_layout(optimizer)
    if rng_key(rank) in tensors:
        torch.set_rng_state(tensors[rng_key(rank)])
    if device.type == "cuda" and rng_key(rank, "cuda") in tensors:
        torch.cuda.set_rng_state(tensors[rng_key(rank, "cuda")], device)
    return int(metadata["step"])


def match_parameter_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give Adam's moments the memory layout of their parameters again (channels-last for
    convolutions). They are saved contiguous; the fused Adam kernel assumes moments and
    parameters share one layout, and with a mismatch a resumed run silently drifted from an
    uninterrupted one (caught by the resume test)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            slots = optimizer.state.get(param, {})
            for key, value in slots.items():
                if value.shape == param.shape and value.stride() != param.stride():
                    slots[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def module_state(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """One network's weights out of a checkpoint's flat tensors ("discriminator.proj.0.weight")."""
    prefix = name + "."
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def saved_data_paths(
    run: dict[str, Any], data: Path | None, labels: Path | None, cache_dir: Path | None
) -> tuple[Path, Path | None, Path | None]:
    """The data a checkpointed run trained on (its `run` info), unless flags name other paths."""
    if data is None and "data" not in run:
        raise ValueError("The checkpoint does not say where its data is: pass --data.")
    return (
        data or Path(run["data"]),
        labels or (Path(p) if (p := run.get("labels")) else None),
        cache_dir or (Path(p) if (p := run.get("cache_dir")) else None),
    )


def open_run(
    run: Path, data: Path | None, labels: Path | None, cache_dir: Path | None
) -> tuple[FaderNetwork, LatentDiscriminator | None, PreparedData]:
    """A run's model, its latent discriminator (from the checkpoint, if there is one) and its
    preprocessed data as the model reads it (`PreparedData.for_model`; from the cache the run
    made, unless flags name other paths)."""
    model = FaderNetwork.from_pretrained(run)
    checkpoint = run / CHECKPOINT_NAME
    discriminator, saved_run = None, {}
    if checkpoint.is_file():
        saved_run = read_checkpoint_info(checkpoint)[1]["run"]
        discriminator = LatentDiscriminator(model.config)
        discriminator.load_state_dict(module_state(load_file(str(checkpoint)), "discriminator"))
        discriminator.eval()
    data_path, labels_path, cache_dir = saved_data_paths(saved_run, data, labels, cache_dir)
    source = open_source(data_path, labels_path, cache_dir)
    align = model.config.preprocessing == ALIGN
    data = prepare(source, model.config.image_size, cache_dir, align=align)
    data = as_channels(data, model.config.image_channels)
    return model, discriminator, data.for_model(model.config.attributes, model.config.categories)[0]
