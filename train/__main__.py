"""`python -m train`: train a Fader Network on CelebA, a labelled folder, or class folders."""

import argparse
import logging
import sys
from dataclasses import asdict, fields
from pathlib import Path

from tqdm import tqdm

from train.checkpoint import CHECKPOINT_NAME, read_checkpoint_info
from train.config import PRESETS, TrainConfig

DESCRIPTION = """\
Train a Fader Network (Lample et al., NeurIPS 2017).

Data layouts (--data DIR):
  CelebA          DIR/img_align_celeba/*.jpg + DIR/list_attr_celeba.txt (+ list_eval_partition.txt);
                  torchvision's DIR/celeba/... layout works too. Choose attributes with --attrs.
  labels CSV      --data DIR --labels labels.csv: a 'file' column (paths relative to DIR) and
                  one 0/1 column per attribute.
  class folders   DIR/<class>/*.jpg: each class becomes a 0/1 attribute.

Images are decoded once into a uint8 cache (--cache-dir) and read by memory map afterwards.
The run folder (--out) ends up holding the model (config.json, model.safetensors, README.md),
checkpoint.safetensors, samples/, tensorboard/ and train.log.
"""

EXAMPLES = """\
examples:
  python -m train --data ~/data/celeba --attrs Smiling Male --out runs/smile_male
  python -m train --data photos --labels labels.csv --preset tiny --out runs/smoke
  python -m train --out runs/smile_male --resume --steps 200000
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, help="dataset folder (see layouts above)")
    data.add_argument(
        "--labels", type=Path, help="CSV with a 'file' column and 0/1 attribute columns"
    )
    data.add_argument(
        "--attrs",
        nargs="+",
        metavar="NAME",
        help="attributes to slide (default: all, except CelebA)",
    )
    data.add_argument(
        "--align", action="store_true", help="align faces onto CelebA's template first (raw photos)"
    )
    data.add_argument(
        "--cache-dir", type=Path, help="where preprocessed arrays go (default: ~/.cache/fader/data)"
    )
    data.add_argument("--workers", type=int, help="processes decoding images (default: all cores)")

    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, required=True, help="run folder: model, checkpoint, logs")
    run.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint"
    )
    run.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="paper",
        help="paper: C16…C512, 7 layers, z 512×2×2 (default); authors: init_fm 32, 6 layers, "
        "z 512×4×4; tiny: 32×32 images and few channels, for CPU smoke runs",
    )
    run.add_argument("--device", help="cpu, cuda, cuda:1 … (default: auto)")

    model = parser.add_argument_group("model (override the preset)")
    model.add_argument("--image-size", type=int, help="square image size, divisible by 2**n_layers")
    model.add_argument("--init-fm", type=int, help="channels of the first encoder layer")
    model.add_argument("--max-fm", type=int, help="channel cap (512 in the paper)")
    model.add_argument("--n-layers", type=int, help="encoder/decoder depth")

    optim = parser.add_argument_group("optimisation (override the preset)")
    optim.add_argument(
        "--steps", type=int, help="total training steps (default 1.5M for paper/authors)"
    )
    optim.add_argument("--batch-size", type=int, help="images per step (32)")
    optim.add_argument("--lr", type=float, help="Adam learning rate (2e-4)")
    optim.add_argument(
        "--lambda-dis", type=float, help="final weight of the adversarial loss (1e-4)"
    )
    optim.add_argument(
        "--lambda-schedule", type=int, help="steps over which λ ramps up from 0 (500000)"
    )
    optim.add_argument("--eval-every", type=int, help="steps between evaluations and sample grids")
    optim.add_argument("--save-every", type=int, help="steps between checkpoints")
    optim.add_argument("--eval-images", type=int, help="validation images per evaluation (512)")
    optim.add_argument("--seed", type=int, help="random seed (0)")
    return parser.parse_args(argv)


def flag_overrides(args: argparse.Namespace, names: list[str]) -> dict:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def configs_from_args(args: argparse.Namespace) -> tuple[dict, TrainConfig]:
    """Preset values, overridden by any flag given; resumed runs keep their architecture."""
    preset = PRESETS[args.preset]
    model_settings = {
        **preset["model"],
        **flag_overrides(args, ["image_size", "init_fm", "max_fm", "n_layers"]),
    }
    train_names = [f.name for f in fields(TrainConfig)]
    train_settings = {
        **asdict(TrainConfig()),
        **preset["train"],
        **flag_overrides(args, train_names),
    }
    return model_settings, TrainConfig(**train_settings)


def setup_logging(out: Path) -> None:
    class TqdmHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record))

    console = TqdmHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    file = logging.FileHandler(out / "train.log")
    file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[console, file], force=True)


def run(args: argparse.Namespace) -> None:
    from fader.model import FaderConfig
    from train.data import prepare
    from train.loop import Trainer
    from train.sources import open_source, select_attributes

    checkpoint = args.out / CHECKPOINT_NAME
    model_settings, train_config = configs_from_args(args)
    if args.resume:
        if not checkpoint.is_file():
            raise ValueError(f"--resume: {checkpoint} does not exist; start without --resume.")
        _, info = read_checkpoint_info(checkpoint)
        saved_model, saved_train, saved_run = (
            info["fader_config"],
            info["train_config"],
            info["run"],
        )
        overrides = flag_overrides(args, [f.name for f in fields(TrainConfig)])
        train_config = TrainConfig(**{**saved_train, **overrides})
        data_path = args.data or Path(saved_run["data"])
        labels_path = args.labels or (Path(p) if (p := saved_run.get("labels")) else None)
        cache_dir = args.cache_dir or (Path(p) if (p := saved_run.get("cache_dir")) else None)
        align = saved_model["preprocessing"] == "align"
        preset = saved_model["training"].get("preset", args.preset)
        attributes = saved_model["attributes"]
        model_settings = {
            k: saved_model[k] for k in ["image_size", "init_fm", "max_fm", "n_layers"]
        }
    else:
        if args.data is None:
            raise ValueError("--data is required (or --resume to continue the run in --out).")
        if checkpoint.is_file():
            raise ValueError(
                f"{args.out} already holds a run. "
                "Pass --resume to continue it, or choose another --out."
            )
        data_path, labels_path, align, attributes = args.data, args.labels, args.align, None
        preset, cache_dir = args.preset, args.cache_dir

    source = open_source(data_path, labels_path)
    attributes = attributes or select_attributes(source, args.attrs)
    args.out.mkdir(parents=True, exist_ok=True)
    setup_logging(args.out)
    log = logging.getLogger("train")
    log.info(
        "Data: %s (%s layout, %d images); attributes: %s",
        data_path,
        source.layout,
        len(source.files),
        attributes,
    )
    data = prepare(source, model_settings["image_size"], cache_dir, args.workers, align)
    if data.skipped:
        log.warning(
            "%d of %d images could not be read and were skipped (see %s/meta.json).",
            data.skipped,
            len(source.files),
            data.path,
        )
    preprocessing = "align" if align else ("celeba" if source.layout == "celeba" else "center")
    model_config = FaderConfig(attributes=attributes, preprocessing=preprocessing, **model_settings)
    model_config.training.update(
        {"preset": preset, "layout": source.layout, "skipped_images": data.skipped}
    )
    run_info = {
        "data": str(data_path.resolve()),
        "labels": str(labels_path.resolve()) if labels_path else None,
        "cache_dir": str(data.path.parent),
    }
    Trainer(model_config, train_config, data, args.out, args.resume, run_info).fit()
    log.info(
        "Model saved to %s (load it with FaderNetwork.from_pretrained(%r)).",
        args.out,
        str(args.out),
    )


def main(argv: list[str] | None = None) -> int:
    from train.loop import TrainingDiverged, TrainingInterrupted

    args = parse_args(argv)
    try:
        run(args)
    except TrainingInterrupted as stop:
        print(f"\n{stop} Resume with: python -m train --out {args.out} --resume", file=sys.stderr)
        return 130
    except (ValueError, TrainingDiverged) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
