"""What two of the authors' trainer options do on the real digits (mnist5k), one short run each.

1. `--lat-dis-step shared` (ours, the default) vs `authors` (a batch of its own, encoded in
   eval mode): latent-discriminator accuracy (10 yes/no readings, and the 10-way reading of the
   class from z, chance 0.1: lower hides more) and swap accuracy, judged by a
   `python -m train.classifier` digit classifier, on all 500 held-out digits;
2. without vs with the patch discriminator (`--n-ptc-dis 1 --lambda-ptc-dis W`): held-out PSNR
   of reconstructions and their sharpness, the variance of the Laplacian (the originals' for
   reference), at equal steps.

The runs use the bundled digits model's settings (assets/models/digits) but fewer steps and a
shorter λ ramp. Prints one JSON object.

    python bench/authors_options.py --steps 300 --out /tmp/authors
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fader.classifier import Classifier
from fader.model import label_channels
from fader.pixels import to_model_range
from train.__main__ import main as train_main
from train.checkpoint import open_run
from train.classifier import main as classifier_main
from train.data import held_out_batches
from train.metrics import evaluate
from train.release_digits import latent_class_accuracy
from train.sources import TEST, VALIDATION

DIGITS = [
    "--data", "mnist5k", "--preset", "tiny", "--init-fm", "32", "--max-fm", "256",
    "--n-layers", "4", "--batch-size", "32", "--lr", "1e-3", "--lambda-dis", "0.003",
    "--no-flip", "--workers", "1",
]  # fmt: skip
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def laplacian_variance(images: torch.Tensor) -> float:
    """Mean over images of the variance of the Laplacian of their grey level in [0, 1]: the
    usual focus measure; blur lowers it."""
    grey = ((images + 1) / 2).mean(1, keepdim=True)
    response = F.conv2d(grey, LAPLACIAN.view(1, 1, 3, 3))
    return response.flatten(1).var(1).mean().item()


@torch.inference_mode()
def judge(run: Path, classifier: Classifier) -> dict[str, float]:
    """Reconstruction, latent-discriminator and swap accuracy (`train.metrics.evaluate`), the
    10-way latent class accuracy and the sharpness of reconstructions, on all held-out digits
    (validation and test splits: 500, where the trainer's evaluation saw 64)."""
    model, discriminator, data = open_run(run, None, None, None)
    rows = data.indices(VALIDATION, TEST)
    columns = data.attribute_columns(model.attributes)
    batches = held_out_batches(data, rows, columns, 100)
    metrics = evaluate(
        model, discriminator, batches, torch.device("cpu"), classifier, model.config.slider_range
    )
    images = to_model_range(torch.from_numpy(data.read_images(rows)))
    labels = torch.from_numpy(data.labels[rows])
    z = model.encode(images)
    reconstruction = model.decode(z, label_channels(labels, model.config.attribute_sizes))
    return {k: v for k, v in metrics.items() if "/" not in k} | {
        "latent_class_accuracy": latent_class_accuracy(
            model, discriminator, images, labels.argmax(1)
        ),
        "laplacian_variance_reconstructions": laplacian_variance(reconstruction),
        "laplacian_variance_originals": laplacian_variance(images),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lambda-ptc-dis", type=float, default=0.01)
    parser.add_argument("--out", type=Path, required=True, help="a folder for the runs")
    args = parser.parse_args()
    cache = ["--cache-dir", str(args.out / "cache")]
    classifier = args.out / "classifier"
    if not classifier.is_dir():
        classifier_main(
            ["--data", "mnist5k", "--image-size", "32", "--no-flip", "--epochs", "4",
             "--out", str(classifier), "--workers", "1", *cache]
        )  # fmt: skip
    steps = ["--steps", str(args.steps), "--lambda-schedule", str(args.steps // 4)]
    steps += ["--eval-every", str(args.steps), "--classifier", str(classifier)]
    runs = {
        "lat_dis_step_shared": [],
        "lat_dis_step_authors": ["--lat-dis-step", "authors"],
        "patch_discriminator": ["--n-ptc-dis", "1", "--lambda-ptc-dis", str(args.lambda_ptc_dis)],
    }
    results = {"steps": args.steps, "settings": " ".join(DIGITS + steps[:4])}
    for name, flags in runs.items():
        out = args.out / name
        if not (out / "checkpoint.safetensors").is_file():
            train_main([*DIGITS, *steps, *cache, *flags, "--out", str(out)])
        results[name] = judge(out, Classifier.from_folder(classifier))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
