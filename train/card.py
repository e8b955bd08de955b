"""The model card (README.md) written beside every exported model."""

from fader.model import FaderConfig

METRIC_LABELS = {
    "reconstruction_mse": "Reconstruction MSE (held-out, [-1, 1] scale)",
    "psnr": "PSNR (held-out, dB)",
    "latent_discriminator_accuracy": "Latent-discriminator accuracy (chance ≈ 0.5 is best)",
}


def model_card(config: FaderConfig, sample_image: str | None) -> str:
    """Markdown with Hub metadata, what the model edits, how it was trained and how it scores."""
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
    return f"""---
library_name: fader
license: mit
pipeline_tag: image-to-image
tags:
- fader-networks
- image-to-image
- pytorch_model_hub_mixin
---

# Fader Network: {", ".join(config.attributes)}

A [Fader Network](https://arxiv.org/abs/1706.00409) (Lample et al., NeurIPS 2017) that edits
{config.image_size}×{config.image_size} images by sliding these attributes:
{", ".join(f"`{name}`" for name in config.attributes)}.
Inputs are prepared with `{config.preprocessing}` preprocessing.

{sample}
## Use it

```python
import torch
from fader import FaderNetwork

model = FaderNetwork.from_pretrained("path/or/repo-id")
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
