"""Training settings and the presets `python -m train --preset …` starts from."""

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """The authors' optimisation settings unless a preset or flag says otherwise."""

    steps: int = 1_500_000  # ≈ the authors' 1000 epochs of 50,000 images at batch 32
    batch_size: int = 32
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_dis: float = 1e-4
    lambda_schedule: int = 500_000  # steps over which λ_dis ramps linearly from 0
    clip_grad_norm: float = 5.0
    flip: bool = True  # random horizontal flips, as the authors do for faces; off for digits, text
    eval_every: int = 2_000
    save_every: int = 10_000
    eval_images: int = 512  # validation images used for each evaluation
    seed: int = 0
    device: str = "auto"


def lambda_schedule(step: int, lambda_dis: float, ramp_steps: int) -> float:
    """λ_dis grows linearly from 0 to its final value over the first `ramp_steps` steps.

    Starting at 0 lets the autoencoder learn to reconstruct before the encoder is asked to hide
    the attributes (Section 3.4 of the paper).
    """
    if ramp_steps <= 0:
        return lambda_dis
    return lambda_dis * min(1.0, step / ramp_steps)


# Model settings (FaderConfig fields) and training settings (TrainConfig fields) per preset.
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
