"""On CUDA: does the graphed training step compute what the eager one does? Prints one JSON object.

Two copies of the same networks train side by side on the same batches, one with
`train.step.training_step`, one with the CUDA-graph replay `python -m train` uses
(`train.loop.step_for_device`), with λ_dis ramping and one batch of another size (which the graph
hands to an eager step). With the discriminator's dropout off the parameters must come out equal;
with it on, the graph draws its own dropout masks, so only the losses' course is comparable.

    python bench/cuda_graph_exactness.py --steps 13
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fader.model import FaderConfig, FaderNetwork, LatentDiscriminator
from train.config import PRESETS, TrainConfig
from train.loop import step_for_device
from train.step import adam, autocast_dtype, training_layout, training_step, use_fast_cuda_math


def networks(preset: str, dropout: float, device: torch.device):
    torch.manual_seed(0)
    config = FaderConfig(
        attributes=["a0", "a1"], discriminator_dropout=dropout, **PRESETS[preset]["model"]
    )
    model = training_layout(FaderNetwork(config).train(), device)
    discriminator = training_layout(LatentDiscriminator(config).train(), device)
    optimizers = {
        "autoencoder": adam(model, TrainConfig()),
        "discriminator": adam(discriminator, TrainConfig()),
    }
    return config, model, discriminator, optimizers


def compare(preset: str, dropout: float, steps: int, device: torch.device) -> dict:
    config, *eager = networks(preset, dropout, device)
    _, *graphed_networks = networks(preset, dropout, device)
    graphed = step_for_device(*graphed_networks, 5.0, device)
    generator = torch.Generator().manual_seed(3)
    size = config.image_size
    losses = {"eager": [], "graph": []}
    for step in range(steps):
        batch = 8 if step == steps // 2 else 32  # one odd batch: the graph steps eagerly there
        images = torch.randint(
            0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator
        )
        labels = torch.randint(0, 2, (batch, 2), generator=generator).float()
        images, labels, lam = images.to(device), labels.to(device), 1e-4 * step / steps
        a = training_step(*eager, images, labels, lam, 5.0, autocast_dtype(device))
        b = graphed(images, labels, lam)
        losses["eager"].append({k: round(v.item(), 6) for k, v in a.items()})
        losses["graph"].append({k: round(v.item(), 6) for k, v in b.items()})
    params = [
        (p, q)
        for left, right in zip(eager[:2], graphed_networks[:2], strict=True)
        for p, q in zip(left.parameters(), right.parameters(), strict=True)
    ]
    return {
        "graph_captured": graphed.graph is not None,
        "parameters_equal": all(torch.equal(p, q) for p, q in params),
        "max_abs_parameter_difference": max((p - q).abs().max().item() for p, q in params),
        "losses": losses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--steps", type=int, default=13)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("This check needs a CUDA GPU: CUDA graphs exist only there.")
    device = torch.device("cuda")
    use_fast_cuda_math(device)
    report = {
        "benchmark": "cuda_graph_exactness",
        "device": torch.cuda.get_device_name(device),
        "preset": args.preset,
    }
    for dropout in (0.0, 0.3):
        report[f"dropout_{dropout}"] = compare(args.preset, dropout, args.steps, device)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
