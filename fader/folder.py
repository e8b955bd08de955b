"""A model folder (or Hub repo): the files a Fader model is made of, and the one writer of them.

    config.json          FaderConfig (what `FaderNetwork.from_pretrained` rebuilds the network from)
    model.safetensors    the encoder and decoder weights (never a pickle)
    README.md            the model card (`fader.card`)
    sample_grid.png      samples shown by the card, when the model has them
    classifier.json      an attribute classifier, when the model ships one: the app starts
    classifier.safetensors   each slider at what it reads from a photo

The trainer, the evaluation CLI, the authors' converter and the digits release all write through
`write_model_folder`; the push and the registry name files by these constants.
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fader.classifier import CONFIG_NAME as CLASSIFIER_CONFIG
from fader.classifier import WEIGHTS_NAME as CLASSIFIER_WEIGHTS
from fader.classifier import Classifier
from fader.model import WEIGHTS_NAME, FaderNetwork

CONFIG_NAME = "config.json"  # the name PyTorchModelHubMixin writes and reads
CARD_NAME = "README.md"  # the name the Hub shows as the model's page
SAMPLE_GRID_NAME = "sample_grid.png"
MODEL_FILES = (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, SAMPLE_GRID_NAME)
CLASSIFIER_FILES = (CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS)
PUBLISHED_FILES = MODEL_FILES + CLASSIFIER_FILES  # all a folder may publish; nothing else


def is_model_folder(folder: str | Path) -> bool:
    """True when `folder` holds a loadable model: its config and its weights."""
    folder = Path(folder)
    return (folder / CONFIG_NAME).is_file() and (folder / WEIGHTS_NAME).is_file()


def grid_image(grid: torch.Tensor) -> Image.Image:
    """A C×H×W grid in [0, 1] (torchvision's `make_grid(normalize=True)`) as an 8-bit image,
    rounded as torchvision's `save_image` rounds it."""
    pixels = grid.detach().cpu().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels.permute(1, 2, 0).numpy()))


def write_model_folder(
    out: str | Path,
    model: FaderNetwork,
    card: str,
    sample_grid: torch.Tensor | None = None,
    classifier: Classifier | None = None,
) -> Path:
    """Write the model's config, weights and `card` (and the grid, the classifier) into `out`.

    Everything is written into a staging folder first, so a failure leaves `out` as it was. A
    new folder then appears whole, in one rename; into an existing one (a run folder, holding
    the checkpoint and logs, which are kept) each file is moved in with an atomic replace, so
    a reader never sees a half-written weights file.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; a model folder must be a folder (new or existing).")
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh = not out.exists()
    # Beside or inside `out`: on the same file system, so the moves below are renames.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if fresh else out))
    try:
        # The card first: save_pretrained writes a generic one only where none exists.
        (staging / CARD_NAME).write_text(card, encoding="utf-8")
        model.save_pretrained(staging)
        if sample_grid is not None:
            grid_image(sample_grid).save(staging / SAMPLE_GRID_NAME)
        if classifier is not None:
            classifier.save(staging)
        if fresh:
            try:
                staging.rename(out)  # the whole folder appears at once
                return out
            except OSError:  # created meanwhile by someone else: fill it file by file
                pass
        for file in sorted(staging.iterdir()):
            file.replace(out / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
