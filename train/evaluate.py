"""`python -m train.evaluate RUN`: judge a finished run on its held-out images.

It computes reconstruction, latent-discriminator accuracy and, with `--classifier CLF`, swap
accuracy (`train.metrics`) on the run's test split, and writes them into the run's config.json,
model card and evaluation.json.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from fader.classifier import Classifier
from train.checkpoint import open_run
from train.config import require_at_least
from train.data import held_out_batches
from train.errors import WRITE_ERRORS, write_failure
from train.loop import export_model
from train.metrics import check_classifier, evaluate
from train.sources import TEST, VALIDATION


def report(metrics: dict[str, float]) -> str:
    """The metrics as a two-column table for the terminal."""
    width = max(map(len, metrics), default=0)
    return "\n".join(f"{name:<{width}}  {value:8.4f}" for name, value in metrics.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.evaluate",
        description="Judge a trained Fader model on its held-out images: reconstruction, "
        "latent-discriminator accuracy, and with --classifier the swap accuracy. The numbers go "
        "to the terminal, RUN/evaluation.json, and the run's config.json and model card.",
    )
    parser.add_argument("run", type=Path, help="the --out folder of a python -m train run")
    parser.add_argument("--classifier", type=Path, help="a python -m train.classifier folder")
    parser.add_argument("--split", choices=["test", "validation"], default="test")
    parser.add_argument("--images", type=int, help="at most this many held-out images")
    parser.add_argument("--data", type=Path, help="the data, if it moved since training")
    parser.add_argument("--labels", type=Path, help="the labels CSV, if it moved")
    parser.add_argument("--cache-dir", type=Path, help="the preprocessing cache, if it moved")
    args = parser.parse_args(argv)
    try:
        require_at_least(1, images=args.images)
        model, discriminator, data = open_run(args.run, args.data, args.labels, args.cache_dir)
        classifier = Classifier.from_folder(args.classifier) if args.classifier else None
        if classifier is not None:
            check_classifier(classifier, model.config)
        rows = data.indices(TEST if args.split == "test" else VALIDATION)[: args.images]
        if len(rows) == 0:
            raise ValueError(f"The {args.split} split of this data is empty.")
        columns = data.attribute_columns(model.attributes)
        metrics = evaluate(
            model,
            discriminator,
            held_out_batches(data, rows, columns, 64),
            torch.device("cpu"),
            classifier,
            model.config.slider_range,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.split} split, {len(rows)} images\n{report(metrics)}")
    model.config.metrics.update(metrics)
    try:
        (args.run / "evaluation.json").write_text(json.dumps(metrics, indent=1) + "\n")
        export_model(model, args.run, grid=None)
    except WRITE_ERRORS as error:
        print(f"error: {write_failure(error, 'the run folder')}", file=sys.stderr)
        return 2
    print(f"Written to {args.run / 'evaluation.json'} and the model card.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
