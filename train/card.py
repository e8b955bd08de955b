"""The model card (README.md) written beside every exported model and shown on its Hub page.

The YAML block is the Hub's metadata (what `huggingface_hub.ModelCard` parses): it makes the repo
findable by library, task, tag and paper. The body says what the model edits, how well it
reconstructs, how it was trained, and how to use it by the name it is published under.
"""

import re

from fader.model import FaderConfig

PAPER = "1706.00409"
METRIC_LABELS = {
    "reconstruction_mse": "Reconstruction MSE (held-out, [-1, 1] scale)",
    "psnr": "PSNR (held-out, dB)",
    "latent_discriminator_accuracy": "Latent-discriminator accuracy (chance ≈ 0.5 is best)",
    "classifier_accuracy": "Classifier accuracy on the real held-out images (trust in the judge)",
    "swap_accuracy": "**Swap accuracy**: edits the classifier reads as asked (α = 0 / 1)",
    "swap_accuracy_all_targets": "Swap accuracy, targets equal to the image's own value included",
    "swap_accuracy_extended": "Swap accuracy at the ends of the slider range",
}
# Hub dataset names for the data layouts a run can read; other data is the user's own.
DATASETS = {"celeba": "celeba"}
DATASET_NOTES = {
    "celeba": "\nTrained on CelebA, which its authors release for non-commercial research only: "
    "check its terms before using this model commercially.\n",
}


def model_card(
    config: FaderConfig, sample_image: str | None, model_id: str = "path/to/model"
) -> str:
    """Markdown with Hub metadata, what the model edits, how it was trained and how it scores.

    `model_id` is the name users load the model by: the Hub repo id once pushed, the run
    folder before that.
    """
    training = config.training
    metric_rows = "\n".join(
        f"| {METRIC_LABELS.get(name, name)} | {value:.4f} |"
        for name, value in config.metrics.items()
        if isinstance(value, int | float)
    )
    settings = "\n".join(f"| `{key}` | `{value}` |" for key, value in sorted(training.items()))
    sample = (
        f"![Samples: original, reconstruction, each attribute flipped]({sample_image})\n"
        if sample_image
        else ""
    )
    # the dataset's name (CelebA from the Hub too); configs before `dataset` named it in layout
    named = training.get("dataset", training.get("layout", ""))
    dataset = DATASETS.get(named)
    datasets = f"datasets:\n- {dataset}\n" if dataset else ""
    attribute_list = "\n".join(f"- `{name}`" for name in config.attributes)
    return f"""---
library_name: fader
license: mit
{datasets}pipeline_tag: image-to-image
tags:
- fader-networks
- image-to-image
- arxiv:{PAPER}
- pytorch_model_hub_mixin
---

# Fader Network: {", ".join(config.attributes)}

A [Fader Network](https://arxiv.org/abs/{PAPER}) (Lample et al., NeurIPS 2017) that edits
{config.image_size}×{config.image_size} images by sliding these attributes:

{attribute_list}

Inputs are prepared with `{config.preprocessing}` preprocessing.
{DATASET_NOTES.get(named, "")}
{sample}
## Use it

In the app (`pip install -r requirements.txt` in the [Fader](https://github.com/fader-networks/fader)
repository), one slider per attribute:

```bash
python app.py --model {model_id}
```

In Python:

```python
import torch
from fader import FaderNetwork

model = FaderNetwork.from_pretrained("{model_id}")
x = torch.zeros(1, 3, {config.image_size}, {config.image_size})  # an image in [-1, 1]
edited = model.decode(model.encode(x), model.slider_channels({{"{config.attributes[0]}": 1.0}}))
```

## Evaluation

| metric | value |
| --- | --- |
{metric_rows or "| (not evaluated yet) | |"}

## Training

Encoder channels {config.encoder_channels}, latent {"×".join(map(str, config.latent_shape))}.

| setting | value |
| --- | --- |
{settings}
"""


def with_model_id(card: str, model_id: str) -> str:
    """The same card, with its "use it" snippets loading the model as `model_id`.

    A run's card names its local folder; the pushed copy must name the repo. Cards that were
    edited after export (extra sections, other captions) keep everything else.
    """
    card = re.sub(r'from_pretrained\("[^"\n]*"\)', lambda _: f'from_pretrained("{model_id}")', card)
    return re.sub(
        r"python app\.py --model \S+", lambda _: f"python app.py --model {model_id}", card
    )
