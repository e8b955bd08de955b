"""The model card (README.md) of every model folder, and the page it gets on the Hub.

The YAML block is the Hub's metadata (what `huggingface_hub.ModelCard` parses): it makes the repo
findable by library, task, tag, dataset and paper. The body says what the model edits, where it
comes from, how well it reconstructs and swaps, how it was trained, and how to load it by the
name it is published under. A trained run, the authors' converted models and the bundled digits
model differ only in the data passed in: their licence (recorded in the config), a note on their
origin, the metric labels, a sample caption and an appendix.
"""

import json
import re
import string
from collections.abc import Mapping, Sequence

from fader.model import FaderConfig

PAPER = "1706.00409"
LICENSE = "mit"  # this code's licence; a model whose weights have another records it
METRIC_LABELS = {
    "reconstruction_mse": "Reconstruction MSE (held-out, [-1, 1] scale)",
    "psnr": "PSNR (held-out, dB)",
    "latent_discriminator_accuracy": "Latent-discriminator accuracy (chance ≈ 0.5 is best)",
    "classifier_accuracy": "Classifier accuracy on the real held-out images (trust in the judge)",
    "swap_accuracy": "**Swap accuracy**: edits the classifier reads as asked (α = 0 / 1)",
    "swap_accuracy_all_targets": "Swap accuracy, targets equal to the image's own value included",
    "swap_accuracy_extended": "Swap accuracy at the ends of the slider range",
}
SAMPLE_CAPTION = "Samples: original, reconstruction, each attribute flipped"
# Hub dataset names for the data a run can read (`training["dataset"]`); other data is the user's.
DATASETS = {"celeba": "celeba", "mnist5k": "mnist"}
DATASET_NOTES = {
    "celeba": "Trained on CelebA, which its authors release for non-commercial research only: "
    "check its terms before using this model commercially.",
}


def model_card(
    config: FaderConfig,
    model_id: str = "path/to/model",
    sample_image: str | None = None,
    *,
    sample_caption: str = SAMPLE_CAPTION,
    metric_labels: Mapping[str, str] | None = None,
    datasets: Sequence[str] | None = None,
    origin: str = "",
    appendix: str = "",
) -> str:
    """Markdown with Hub metadata, what the model edits, how it was trained and how it scores.

    `model_id` is the name users load the model by: the Hub repo id once pushed, the folder
    before that. `metric_labels` relabel metrics whose generic wording would mislead for this
    model; `datasets` (default: from the training data's layout) are Hub dataset names;
    `origin` is Markdown on where the weights come from; `appendix` ends the card.
    """
    training = config.training
    # the training data's name (CelebA from the Hub too); configs before `dataset` used layout
    layout = training.get("dataset", training.get("layout", ""))
    labels = {**METRIC_LABELS, **(metric_labels or {})}
    order = {name: i for i, name in enumerate(labels)}  # the labels' order, then the rest's
    metrics = sorted(config.metrics.items(), key=lambda item: order.get(item[0], len(order)))
    metric_rows = "\n".join(
        f"| {labels[name] if name in labels else text(name)} | {value:.4f} |"
        for name, value in metrics
        if isinstance(value, int | float)
    )
    settings = "\n".join(
        f"| {cell(code(key))} | {cell(code(value))} |" for key, value in sorted(training.items())
    )
    if datasets is None:
        datasets = [DATASETS[layout]] if layout in DATASETS else []
    dataset_lines = "".join(f"- {name}\n" for name in datasets)
    dataset_block = f"datasets:\n{dataset_lines}" if datasets else ""
    notes = "\n\n".join(text for text in (DATASET_NOTES.get(layout), origin) if text)
    notes_block = f"\n{notes}\n" if notes else ""
    sample = f"![{sample_caption}]({sample_image})\n\n" if sample_image else ""
    attribute_list = "\n".join(
        f"- {code(name)}"
        + (
            f": one of {', '.join(code(v) for v in values)} (a slider group)"
            if (values := config.categories_of(name))
            else ""
        )
        for name in config.attributes
    )
    low, high = config.slider_range
    image_shape = f"1, {config.image_channels}, {config.image_size}, {config.image_size}"
    return f"""---
library_name: fader
license: {training.get("license", LICENSE)}
{dataset_block}pipeline_tag: image-to-image
tags:
- fader-networks
- image-to-image
- arxiv:{PAPER}
- pytorch_model_hub_mixin
---

# Fader Network: {", ".join(text(name) for name in config.attributes)}

A [Fader Network](https://arxiv.org/abs/{PAPER}) (Lample et al., NeurIPS 2017) that edits
{config.image_size}×{config.image_size} images by sliding these attributes:

{attribute_list}

Inputs are prepared with `{config.preprocessing}` preprocessing. The sliders run from
α = {low:g} to {high:g} (0: attribute absent, 1: present; values beyond extrapolate).
{notes_block}
{sample}## Use it

In the Fader app (from a checkout of the Fader code, after `pip install -r requirements.txt`),
one slider per attribute:

```bash
python app.py --model {model_id}
```

In Python (`pip install .` in that checkout installs the `fader` library alone):

```python
import torch
from fader import FaderNetwork

model = FaderNetwork.from_pretrained("{model_id}")
x = torch.zeros({image_shape})  # an image in [-1, 1]
edited = model.decode(model.encode(x), model.slider_channels({slider_example(config)}))
```

## Evaluation
{selection_note(training)}
| metric | value |
| --- | --- |
{metric_rows or "| (not evaluated yet) | |"}

## Training

Encoder channels {config.encoder_channels}, latent {"×".join(map(str, config.latent_shape))}.

| setting | value |
| --- | --- |
{settings}
{appendix}"""


SELECTION_WORDS = {"swap_accuracy": "highest swap accuracy", "reconstruction": "lowest MSE"}


def selection_note(training: Mapping) -> str:
    """Which evaluation's model this is, when the trainer kept the best rather than the last."""
    by = training.get("selected_by")
    if by is None:
        return ""
    return (
        f"\nThe model of step {training['steps_done']}: of the run's evaluations, the one with the "
        f"{SELECTION_WORDS.get(by, by)} (`--select {by}`); these are its metrics. The last "
        "step's model is in the run folder's `last/`.\n"
    )


# Attribute names come from a dataset's columns or folders, and metric names and settings carry
# them: they are shown as written, never read as Markdown or HTML.
ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;"}


def one_line(value: object) -> str:
    """`value` as text with every run of white space, newlines included, made one space."""
    return " ".join(str(value).split())


def text(value: object) -> str:
    """`value` as Markdown that shows as written: on one line, every ASCII punctuation mark
    escaped (no emphasis, link, heading or table cell can start), HTML's three as entities."""
    return "".join(
        ENTITIES.get(c) or (f"\\{c}" if c in string.punctuation else c) for c in one_line(value)
    )


def code(value: object) -> str:
    """`value` as an inline code span on one line (HTML inside one shows as text), its fence
    longer than any run of backticks it holds, as CommonMark allows."""
    words = one_line(value)
    fence = "`" * (max((len(run) for run in re.findall("`+", words)), default=0) + 1)
    pad = " " if words.startswith("`") or words.endswith("`") else ""
    return f"{fence}{pad}{words}{pad}{fence}"


def cell(markdown: str) -> str:
    """Markdown made safe in a table cell: a `|` would end the cell, even in a code span."""
    return markdown.replace("|", "\\|")


def slider_example(config: FaderConfig) -> str:
    """The card's `slider_channels` argument: the first attribute at 1 (a slider group: its
    second value on)."""
    name = config.attributes[0]
    values = config.categories_of(name)
    key = python_string(name)
    return f"{{{key}: {{{python_string(values[1])}: 1.0}}}}" if values else f"{{{key}: 1.0}}"


def python_string(name: str) -> str:
    """`name` as a string literal that Python reads back whatever it holds (JSON's escapes are
    Python's), so a quote or a newline in it cannot end the card's code."""
    return json.dumps(name, ensure_ascii=False)


def with_model_id(card: str, model_id: str) -> str:
    """The same card, with its "use it" snippets loading the model as `model_id`.

    A folder's card names the folder; the pushed copy must name the repo. Cards that were
    edited after they were written (extra sections, other captions) keep everything else.
    """
    card = re.sub(r'from_pretrained\("[^"\n]*"\)', lambda _: f'from_pretrained("{model_id}")', card)
    return re.sub(
        r"python app\.py --model \S+", lambda _: f"python app.py --model {model_id}", card
    )
