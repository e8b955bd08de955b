"""What a run trains on and where: a new run's settings from its preset and the flags, a
resumed run's from its checkpoint (with the optimisation flags given now), and its run folder.

`python -m train` plans a run here before any work, so that a bad flag is said at once and
everything after reads the plan, not the flags.
"""

import argparse
import itertools
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from fader.model import ALIGN, FaderConfig
from train.celeba import locate_celeba
from train.checkpoint import CHECKPOINT_NAME, read_checkpoint_info, saved_data_paths
from train.config import ARCHITECTURE, PRESETS, TrainConfig, check_architecture
from train.distributed import Processes, broadcast_text

TRAIN_FIELDS = [f.name for f in fields(TrainConfig)]
FADER_DEFAULTS = {f.name: f.default for f in fields(FaderConfig) if f.name in ARCHITECTURE}

RUNS = Path("runs")  # where runs go without --out, relative to the working folder


@dataclass
class RunPlan:
    """What a run trains on and how: from the flags for a new run, from the checkpoint (plus the
    optimisation flags given now) for --resume. Everything after `plan_run` reads only this."""

    data: Path
    labels: Path | None
    cache_dir: Path | None
    align: bool
    preset: str
    classifier: Path | None
    train: TrainConfig
    # FaderConfig fields: the preset's architecture and its flags for a new run (attributes and
    # preprocessing follow from the data); the saved config whole for a resumed one.
    model: dict[str, Any]
    resume: bool
    found: str | None = None  # where the data was found, when --data was not given
    clf_dis_reload: Path | None = None  # where a new run's classifier discriminator starts


def flag_overrides(args: argparse.Namespace, names: Iterable[str]) -> dict:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def train_config_from(base: dict[str, Any], args: argparse.Namespace) -> TrainConfig:
    """`base` (a preset's settings, or a checkpoint's) with the optimisation flags given."""
    return TrainConfig(**{**base, **flag_overrides(args, TRAIN_FIELDS)})


def configs_from_args(args: argparse.Namespace) -> tuple[dict, TrainConfig]:
    """A new run's architecture and optimisation: the preset's values, overridden by any flag."""
    preset = PRESETS[args.preset]
    model_settings = {**preset["model"], **flag_overrides(args, ARCHITECTURE)}
    check_architecture(model_settings)
    return model_settings, train_config_from({**asdict(TrainConfig()), **preset["train"]}, args)


def plan_run(args: argparse.Namespace) -> RunPlan:
    if args.resume:
        if args.out is None:
            raise ValueError("--resume needs --out RUN: the run folder to continue.")
        checkpoint = args.out / CHECKPOINT_NAME
        if not checkpoint.is_file():
            raise ValueError(f"--resume: {checkpoint} does not exist; start without --resume.")
        return resumed_run(args, checkpoint)
    if args.out is not None and (args.out / CHECKPOINT_NAME).is_file():
        raise ValueError(
            f"{args.out} already holds a run. "
            "Pass --resume to continue it, or choose another --out."
        )
    model, train_config = configs_from_args(args)
    if args.clf_dis_reload and not train_config.n_clf_dis:
        raise ValueError("--clf-dis-reload needs --n-clf-dis N and --lambda-clf-dis W.")
    data, found = (args.data, None) if args.data is not None else locate_celeba()
    return RunPlan(
        data=data,
        labels=args.labels,
        cache_dir=args.cache_dir,
        align=args.align,
        preset=args.preset,
        classifier=args.classifier,
        train=train_config,
        model=model,
        resume=False,
        found=found,
        clf_dis_reload=args.clf_dis_reload,
    )


def resumed_run(args: argparse.Namespace, checkpoint: Path) -> RunPlan:
    """The run as its checkpoint saved it; data flags name the data only if it moved."""
    _, info = read_checkpoint_info(checkpoint)
    saved_model, saved_run = info["fader_config"], info["run"]
    saved_model = {**FADER_DEFAULTS, **saved_model}  # a checkpoint from before a field existed
    changed = {k: v for k, v in flag_overrides(args, ARCHITECTURE).items() if v != saved_model[k]}
    if changed:
        flags = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in changed.items())
        raise ValueError(
            f"{flags}: a resumed run keeps its architecture ({checkpoint} has "
            + ", ".join(f"{k} {saved_model[k]}" for k in changed)
            + "). Start a new run in another --out to change it."
        )
    train = train_config_from(info["train_config"], args)
    for critic, name in (("ptc", "patch"), ("clf", "classifier")):
        if getattr(train, f"n_{critic}_dis") and not info["train_config"].get(f"n_{critic}_dis"):
            raise ValueError(
                f"--n-{critic}-dis: {checkpoint} was trained without a {name} discriminator, "
                "and a resumed run continues the networks it has. Start a new run to add it."
            )
    if args.clf_dis_reload:
        raise ValueError("--clf-dis-reload starts a new run; a resumed one keeps its own.")
    data, labels, cache_dir = saved_data_paths(saved_run, args.data, args.labels, args.cache_dir)
    classifier = args.classifier or saved_run.get("classifier")
    return RunPlan(
        data=data,
        labels=labels,
        cache_dir=cache_dir,
        align=saved_model["preprocessing"] == ALIGN,
        preset=saved_model["training"].get("preset", args.preset),
        classifier=Path(classifier) if classifier else None,
        train=train,
        model=saved_model,
        resume=True,
    )


def new_run_folder(attributes: list[str], parent: Path = RUNS) -> Path:
    """`runs/<attributes>` (runs/smiling-male), or the first free runs/smiling-male-N: created
    here, so two runs started together never share one, and nothing is ever overwritten."""
    name = re.sub(r"[^a-z0-9]+", "-", "-".join(attributes).lower()).strip("-") or "run"
    parent.mkdir(parents=True, exist_ok=True)
    for number in itertools.count(1):
        folder = parent / (name if number == 1 else f"{name}-{number}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise AssertionError("unreachable")


def run_folder(out: Path | None, attributes: list[str], processes: Processes) -> Path:
    """The run folder, created: `--out`, or a new runs/<attributes> when it is not given.
    Process 0 chooses it, and every process gets its choice."""
    if processes.main:
        out = out or new_run_folder(attributes)
        out.mkdir(parents=True, exist_ok=True)
    return Path(broadcast_text(str(out) if out else None, processes))
