"""`python -m train.classifier`: train the attribute classifier that judges Fader edits.

    python -m train.classifier --data ~/data/celeba --attrs Smiling Male --out runs/clf
    python -m train.classifier --data mnist5k --image-size 32 --no-flip --out runs/digits-clf

It reads the same data layouts, with the same preprocessing cache, as `python -m train`, trains on
the training split only (so held-out images stay unseen by both networks), and reports held-out
accuracy per attribute. Copy the result into a model folder (or train straight into it) and the
app starts each slider at the value the classifier reads from the photo.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fader.classifier import Classifier, ClassifierConfig
from fader.pixels import to_model_range
from train.config import check_image_size, require_at_least
from train.data import BatchStream, PreparedData, as_channels, held_out_batches, prepare
from train.errors import WRITE_ERRORS, write_failure
from train.sources import TEST, TRAIN, VALIDATION, open_source, select_attributes

CLASSIFIER_LAYERS = 3  # its fewest stride-2 blocks (ClassifierConfig.channels)


def random_shift(x: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Translate the batch by up to `pixels` in x and y (edges replicated), so the classifier
    reads decoded images, slightly smoother and shifted, as well as the originals."""
    padded = F.pad(x, [pixels] * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * pixels + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


def train_classifier(
    data: PreparedData,
    config: ClassifierConfig,
    epochs: int = 8,
    batch_size: int = 64,
    flip: bool = True,
    seed: int = 0,
) -> Classifier:
    """Fit on the training split, reading each batch's rows from the preprocessing cache."""
    torch.manual_seed(seed)
    columns = data.attribute_columns(config.attributes)
    stream = BatchStream(data, data.indices(TRAIN), columns, batch_size, seed, flip)
    steps = max(1, epochs * stream.batches_per_epoch)
    classifier = Classifier(config).train()
    optimizer = torch.optim.Adam(classifier.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    shifts = torch.Generator().manual_seed(seed)
    shift = max(1, config.image_size // 16)
    for images, labels in tqdm(stream.prefetch(0, steps), total=steps, desc="Classifier"):
        loss = classifier.loss(random_shift(to_model_range(images), shift, shifts), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return classifier.eval()


def held_out_accuracy(classifier: Classifier, data: PreparedData) -> dict[str, float]:
    """Accuracy on the validation and test splits: mean, and per attribute."""
    rows = data.indices(VALIDATION, TEST)
    columns = data.attribute_columns(classifier.config.attributes)
    hits, count = 0, 0
    for images, labels in held_out_batches(data, rows, columns, 256):
        hits = hits + (classifier.read(to_model_range(images)) == labels).sum(0)
        count += len(images)
    if count == 0:
        raise ValueError("No held-out images to measure the classifier on: add more images.")
    per_attribute = (hits.double() / count).tolist()
    metrics = {"accuracy": float(np.mean(per_attribute))}
    for name, value in zip(classifier.config.attributes, per_attribute, strict=True):
        metrics[f"accuracy/{name}"] = value
    return metrics


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train.classifier",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="as for python -m train")
    parser.add_argument("--labels", type=Path, help="labels CSV, as for python -m train")
    parser.add_argument("--attrs", nargs="+", metavar="NAME", help="attributes (default: all)")
    parser.add_argument("--align", action="store_true", help="align raw face photos first")
    parser.add_argument("--out", type=Path, required=True, help="folder for the classifier")
    parser.add_argument("--image-size", type=int, default=256, help="as the model's (256)")
    parser.add_argument("--width", type=int, default=32, help="channels of the first block")
    parser.add_argument("--epochs", type=int, default=8, help="passes over the training split")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-flip", dest="flip", action="store_false", help="no random flips")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, help="preprocessing cache, as for training")
    parser.add_argument("--workers", type=int, help="processes decoding images")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        sizes = {"epochs": args.epochs, "batch_size": args.batch_size, "width": args.width}
        require_at_least(1, workers=args.workers, **sizes)
        check_image_size(args.image_size, CLASSIFIER_LAYERS)
        source = open_source(args.data, args.labels, args.cache_dir)
        attributes = select_attributes(source, args.attrs)
        data = prepare(source, args.image_size, args.cache_dir, args.workers, args.align)
        data = as_channels(data, None)  # as `python -m train` picks a model's channels
        config = ClassifierConfig(
            attributes=attributes,
            exclusive=source.exclusive,
            image_size=args.image_size,
            image_channels=data.channels,
            width=args.width,
        )
        classifier = train_classifier(data, config, args.epochs, args.batch_size, args.flip)
        classifier.config.metrics = held_out_accuracy(classifier, data)
        classifier.save(args.out)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except WRITE_ERRORS as error:
        print(f"error: {write_failure(error, '--out, --cache-dir')}", file=sys.stderr)
        return 2
    print(json.dumps(classifier.config.metrics, indent=1))
    print(
        f"Saved to {args.out}; judge a model with: python -m train.evaluate RUN --classifier "
        f"{args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
