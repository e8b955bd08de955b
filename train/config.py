"""Training settings, the presets `python -m train --preset …` starts from, and where caches go.

Everything here is plain data: every other trainer module may import it, it imports none of them.
"""

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from fader.environment import user_cache_dir

# The command's groups of flags (`python -m train --help`), each setting below naming its own.
RUN, MODEL, OPTIMISATION, AUTHORS_OPTIONS = "run", "model", "optimisation", "authors"


def setting(
    help: str,
    group: str = OPTIMISATION,
    recorded: bool | str = True,
    flag: str | None = None,
    **argparse: Any,
) -> dict[str, Any]:
    """A setting's flag, declared once beside it: `python -m train` builds its flags from these
    (name `--the-field`, or `flag`; the type and default from the field; the presets' values
    added to `help`). `recorded`: True, False (how a run was watched: kept off the card), or
    "if set" (the authors' options: recorded only when a run changes them)."""
    return {"help": help, "group": group, "recorded": recorded, "flag": flag, "argparse": argparse}


# The FaderConfig fields a preset and these flags set; a resumed run takes its whole
# FaderConfig from the checkpoint instead.
ARCHITECTURE = {
    "image_size": setting("square image size, a power of two of at least 2**n_layers", MODEL),
    "image_channels": setting(
        "1 (grayscale) or 3 (RGB); default: 1 when every image is gray, as digits are",
        MODEL,
        choices=[1, 3],
    ),
    "init_fm": setting("channels of the first encoder layer", MODEL),
    "max_fm": setting("channel cap (512 in the paper)", MODEL),
    "n_layers": setting("encoder/decoder depth", MODEL),
    "decoder_dropout": setting(
        "dropout on the decoder's three innermost layers, as the authors' (0: off)",
        MODEL,
        flag="--dec-dropout",
    ),
}

SHARED, AUTHORS = "shared", "authors"  # --lat-dis-step: which batch the discriminator trains on
# --select: the model a run keeps. As the authors' trainer kept `best_accu` (with a classifier)
# and `best_rec`: a long run can collapse late (their issue #12), and the best model survives it.
AUTO, SWAP_ACCURACY, RECONSTRUCTION, LAST = "auto", "swap_accuracy", "reconstruction", "last"
SELECTIONS = (AUTO, SWAP_ACCURACY, RECONSTRUCTION, LAST)


def authors_option(help: str, **argparse: Any) -> dict[str, Any]:
    """The authors' options (`train.critics`, `train.step`), off by default as in their
    train.py, and recorded only when a run sets them, so the card of a run that uses none of
    them reads as it did before they existed."""
    return setting(help, AUTHORS_OPTIONS, "if set", **argparse)


@dataclass
class TrainConfig:
    """The authors' optimisation settings unless a preset or flag says otherwise.

    Fields that shape what the model learns are recorded in its config.json (`training`), so its
    card can say how it was trained; the others only say how a run was watched or where it ran.
    """

    # 1.5M ≈ the authors' 1000 epochs of 50,000 images at batch 32
    steps: int = field(default=1_500_000, metadata=setting("total training steps"))
    batch_size: int = field(
        default=32, metadata=setting("images per step (with torchrun: the global batch)")
    )
    lr: float = field(default=2e-4, metadata=setting("Adam learning rate"))
    beta1: float = 0.5
    lambda_dis: float = field(
        default=1e-4, metadata=setting("final weight of the adversarial loss")
    )
    lambda_schedule: int = field(
        default=500_000, metadata=setting("steps over which λ_dis ramps linearly from 0")
    )
    clip_grad_norm: float = 5.0
    flip: bool = field(
        default=True,
        metadata=setting(
            "no random horizontal flips (keep them for faces; drop them for digits or text)",
            flag="--no-flip",
            action="store_false",
        ),
    )
    n_ptc_dis: int = field(
        default=0, metadata=authors_option("patch-discriminator updates per step (0: off)")
    )
    lambda_ptc_dis: float = field(
        default=0.0, metadata=authors_option("final weight of its loss for the decoder, e.g. 0.01")
    )
    smooth_label: float = field(
        default=0.2, metadata=authors_option("patch targets: real 1-s, fake s (the authors')")
    )
    n_clf_dis: int = field(
        default=0,
        metadata=authors_option(
            "classifier-discriminator updates per step on real images (0: off)"
        ),
    )
    lambda_clf_dis: float = field(
        default=0.0,
        metadata=authors_option(
            "final weight of its reading of the random attributes, for the decoder"
        ),
    )
    lat_dis_step: str = field(
        default=SHARED,
        metadata=authors_option(
            "shared: the latent discriminator trains on the autoencoder's batch, train-mode "
            "latents; authors: on a batch of its own, encoded in eval mode",
            choices=[SHARED, AUTHORS],
        ),
    )
    # a reading waits for the GPU to finish every step queued before it
    log_every: int = field(
        default=10,
        metadata=setting(
            "steps between readings of the losses: progress bar, TensorBoard, NaN check",
            recorded=False,
        ),
    )
    eval_every: int = field(
        default=2_000,
        metadata=setting("steps between evaluations and sample grids", recorded=False),
    )
    save_every: int = field(
        default=10_000, metadata=setting("steps between checkpoints", recorded=False)
    )
    eval_images: int = field(
        default=512, metadata=setting("validation images per evaluation", recorded=False)
    )
    seed: int = field(default=0, metadata=setting("random seed"))
    device: str = field(
        default="auto",
        metadata=setting("cpu, cuda, cuda:1 … or auto (a GPU when there is one)", RUN, False),
    )
    # recorded as the kept model's `selected_by`
    select: str = field(
        default=AUTO,
        metadata=setting(
            "the model the run folder holds: the evaluation with the best swap_accuracy (auto "
            "with --classifier) or reconstruction (auto without), or the last; the last step's "
            "model is then kept in RUN/last/",
            RUN,
            False,
            choices=SELECTIONS,
        ),
    )

    def __post_init__(self) -> None:
        """Refuse, before any work, settings that would crash or train nothing later."""
        require_at_least(
            1,
            steps=self.steps,
            batch_size=self.batch_size,
            log_every=self.log_every,
            eval_every=self.eval_every,
            save_every=self.save_every,
            eval_images=self.eval_images,
        )
        require_at_least(0, lambda_dis=self.lambda_dis, lambda_schedule=self.lambda_schedule)
        require_at_least(0, seed=self.seed)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"--lr must be a positive number such as 2e-4; got {self.lr}.")
        if not (0 <= self.beta1 < 1 and self.clip_grad_norm > 0):
            raise ValueError(f"beta1 must be in [0, 1) and clip_grad_norm positive: {self}.")
        require_at_least(0, n_ptc_dis=self.n_ptc_dis, n_clf_dis=self.n_clf_dis)
        require_at_least(0, lambda_ptc_dis=self.lambda_ptc_dis, lambda_clf_dis=self.lambda_clf_dis)
        for critic in ("ptc", "clf"):
            updates, weight = (
                getattr(self, f"n_{critic}_dis"),
                getattr(self, f"lambda_{critic}_dis"),
            )
            if bool(updates) != bool(weight):
                raise ValueError(
                    f"--n-{critic}-dis and --lambda-{critic}-dis go together: the discriminator "
                    "trains only with updates and the decoder heeds it only with a weight. Give "
                    f"both (e.g. --n-{critic}-dis 1 --lambda-{critic}-dis 0.01), or neither."
                )
        if not 0 <= self.smooth_label < 0.5:
            raise ValueError(f"--smooth-label must be in [0, 0.5); got {self.smooth_label}.")
        if self.lat_dis_step not in (SHARED, AUTHORS):
            raise ValueError(f"--lat-dis-step must be {SHARED} or {AUTHORS}.")
        if self.select not in SELECTIONS:
            raise ValueError(f"--select must be one of {', '.join(SELECTIONS)}; got {self.select}.")

    def select_by(self, has_classifier: bool) -> str:
        """The criterion `select` names: `auto` is swap accuracy when a classifier judges the
        swaps, else reconstruction (lowest validation MSE)."""
        if self.select == SWAP_ACCURACY and not has_classifier:
            raise ValueError("--select swap_accuracy needs --classifier: the judge of the swaps.")
        if self.select == AUTO:
            return SWAP_ACCURACY if has_classifier else RECONSTRUCTION
        return self.select

    def recorded(self) -> dict[str, Any]:
        """The settings that go into the model's config.json (see the class docstring)."""
        defaults = TrainConfig()
        kept = {
            f.name
            for f in fields(self)
            if f.metadata.get("recorded", True) is True
            or (
                f.metadata.get("recorded") == "if set"
                and getattr(self, f.name) != getattr(defaults, f.name)
            )
        }
        return {name: value for name, value in asdict(self).items() if name in kept}


def training_record(
    config: TrainConfig,
    preset: str,
    layout: str,
    dataset: str | None,
    skipped: int,
    images: int,
    processes: int = 1,
) -> dict[str, Any]:
    """What a model's config.json says about its training, in one place: the recorded settings,
    the preset, how the data was read (`layout`), which named dataset it was (if any), how many
    images were skipped as unreadable, how many trained it, and in how many processes (torchrun;
    with gloo each normalised its share of the batch on its own). `steps_done` is added at each
    checkpoint."""
    named = {"dataset": dataset} if dataset else {}
    return {
        **config.recorded(),
        "preset": preset,
        "layout": layout,
        **named,
        "skipped_images": skipped,
        "train_images": images,
        "processes": processes,
    }


def require_at_least(minimum: float, **flags: float | None) -> None:
    """Refuse a flag below `minimum`, or not a finite number (None: the flag was not given)."""
    for name, value in flags.items():
        if value is not None and not (math.isfinite(value) and value >= minimum):
            raise ValueError(f"--{name.replace('_', '-')} must be at least {minimum}; got {value}.")


def check_architecture(settings: dict[str, int]) -> None:
    """The ARCHITECTURE settings a network can be built from, or a message naming the flag.

    Each of the n_layers convolutions halves the image, and the latent discriminator halves z
    on down to 1×1, so the image side must be a power of two of at least 2**n_layers.
    """
    require_at_least(1, **{name: settings[name] for name in ("n_layers", "init_fm", "max_fm")})
    check_image_size(settings["image_size"], settings["n_layers"])


def check_image_size(size: int, n_layers: int) -> None:
    """A power of two of at least 2**n_layers, or a message naming --image-size."""
    smallest = 2**n_layers
    if size < smallest or size & (size - 1):
        raise ValueError(
            f"--image-size {size} must be a power of two of at least 2**n_layers = {smallest} "
            f"(n_layers {n_layers}), such as {max(smallest, 32)} or 256."
        )


def lambda_schedule(step: int, lambda_dis: float, ramp_steps: int) -> float:
    """λ_dis grows linearly from 0 to its final value over the first `ramp_steps` steps.

    Starting at 0 lets the autoencoder learn to reconstruct before the encoder is asked to hide
    the attributes (Section 3.4 of the paper).
    """
    if ramp_steps <= 0:
        return lambda_dis
    return lambda_dis * min(1.0, step / ramp_steps)


def default_cache_dir() -> Path:
    """Where preprocessed arrays (and the mnist5k folders) go unless --cache-dir says otherwise."""
    return user_cache_dir("data")


# Model settings (the ARCHITECTURE fields of FaderConfig) and training settings (TrainConfig
# fields) per preset.
PRESETS: dict[str, dict[str, dict]] = {
    # The paper: C16-C32-C64-C128-C256-C512-C512, z is 512×2×2 at 256×256.
    "paper": {
        "model": {"image_size": 256, "init_fm": 16, "max_fm": 512, "n_layers": 7},
        "train": {},
    },
    # The authors' released code: init_fm 32 and 6 layers, z is 512×4×4.
    "authors": {
        "model": {"image_size": 256, "init_fm": 32, "max_fm": 512, "n_layers": 6},
        "train": {},
    },
    # Small enough to train for a few hundred steps on a laptop CPU: smoke runs and tests.
    "tiny": {
        "model": {"image_size": 32, "init_fm": 8, "max_fm": 64, "n_layers": 4},
        "train": {
            "steps": 300,
            "batch_size": 16,
            "lambda_schedule": 100,
            "eval_every": 100,
            "save_every": 100,
            "eval_images": 64,
        },
    },
}
