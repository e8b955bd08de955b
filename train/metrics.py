"""Held-out numbers that say whether a Fader model works, and the sample grid people look at.

- reconstruction: MSE on [-1, 1] images and PSNR on [0, 1] (per image, averaged);
- latent-discriminator accuracy: how well attributes can still be read from z. It should fall
  toward chance (0.5 for balanced attributes) as the encoder learns to hide them;
- swap accuracy (with a classifier, `python -m train.classifier`): decode each image with one
  attribute set to a target value and count how often the classifier reads that value, as the
  authors judged their swaps; plus the classifier's own accuracy on the real images.

Tensors in, numbers out: the trainer calls this at each evaluation, `python -m train.evaluate`
on a finished run.
"""

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn

from fader.attributes import value_name
from fader.classifier import Classifier
from fader.model import (
    FaderConfig,
    FaderNetwork,
    attribute_channels,
    attribute_predictions,
    label_channels,
)
from fader.modes import evaluating
from fader.pixels import to_model_range
from train.critics import classifier_columns


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [-1, 1] images, measured on the [0, 1] scale."""
    mse01 = ((reconstruction - target) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse01.clamp_min(1e-10))


@torch.inference_mode()
def evaluate(
    model: FaderNetwork,
    discriminator: nn.Module | None,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    classifier: Classifier | None = None,
    alpha_range: tuple[float, float] = (0.0, 1.0),
) -> dict[str, float]:
    """Reconstruction MSE/PSNR, latent-discriminator accuracy (mean and per attribute) when
    the discriminator is given, and the classifier's verdicts when a classifier is."""
    squared_error, psnr_sum, correct, count = 0.0, 0.0, 0, 0
    sizes = model.config.attribute_sizes
    swaps = SwapTally(model.config)
    with evaluating(model, discriminator):
        for images, labels in batches:
            x = to_model_range(images.to(device))
            y = labels.to(device)
            z = model.encode(x)
            reconstruction = model.decode(z, label_channels(y, sizes))
            squared_error += (reconstruction - x).pow(2).flatten(1).mean(1).sum().item()
            psnr_sum += psnr(reconstruction, x).sum().item()
            if discriminator is not None:
                read = attribute_predictions(discriminator(z), sizes) == y.long()
                correct = correct + read.sum(0).cpu()
            if classifier is not None:
                swaps.add(model, classifier, x, z, y, alpha_range)
            count += len(images)
    if count == 0:
        return {}
    metrics = {"reconstruction_mse": squared_error / count, "psnr": psnr_sum / count}
    if discriminator is not None:
        accuracy = (correct.double() / count).tolist()
        metrics["latent_discriminator_accuracy"] = float(np.mean(accuracy))
        for name, value in zip(model.attributes, accuracy, strict=True):
            metrics[f"latent_discriminator_accuracy/{name}"] = value
    return metrics | swaps.metrics()


def check_classifier(classifier: Classifier, config: FaderConfig) -> None:
    """Refuse, before any work, a judge that cannot read this model's images."""
    classifier_columns(classifier.config.attributes, config)
    if classifier.config.image_size != config.image_size:
        raise ValueError(
            f"The classifier reads {classifier.config.image_size}² images and the model makes "
            f"{config.image_size}²: train the classifier with --image-size {config.image_size}."
        )
    if classifier.config.image_channels != config.image_channels:
        raise ValueError(
            f"The classifier reads {classifier.config.image_channels}-channel images and the "
            f"model {config.image_channels}-channel ones: train them on the same data."
        )


def classifier_readings(
    classifier: Classifier, x: torch.Tensor, columns: list[list[int]], sizes: list[int]
) -> torch.Tensor:
    """What the classifier reads of each model attribute (B×n_attr): a binary one's 0/1, and
    for one with several values the value whose "on" probability is highest."""
    read = classifier.read(x)
    p = classifier.probabilities(x) if any(size > 2 for size in sizes) else None
    values = [
        read[:, where[0]] if size == 2 else p[:, where].argmax(1).to(read.dtype)
        for where, size in zip(columns, sizes, strict=True)
    ]
    return torch.stack(values, dim=1)


def swap_targets(
    labels: torch.Tensor, sizes: list[int], exclusive: bool, off: float, on: float
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Every swap the metric makes: (attribute, target value, decoder channels for the batch).

    Binary attributes are set to α = `off` or `on` one at a time, the others kept; exclusive
    ones (classes) are swapped by switching one class on and all the others off. An attribute
    with k values is set to each value in turn: `on` on its channel, the rest sharing 1 − `on`
    (at `on` = 1 the one-hot it trained on; as `[1-α, α]` is for k = 2).
    """
    kept = label_channels(labels, sizes)
    starts = np.cumsum([0, *sizes]).tolist()
    for attribute, size in enumerate(sizes):
        begin = starts[attribute]
        if size > 2:
            for target in range(size):
                channels = kept.clone()
                channels[:, begin : begin + size] = (1 - on) / (size - 1)
                channels[:, begin + target] = on
                yield attribute, target, channels
            continue
        if exclusive:
            channels = kept.clone()
            for other, other_size in enumerate(sizes):
                if other_size == 2:
                    channels[:, starts[other] : starts[other] + 2] = pair(kept, 0.0)
            channels[:, begin : begin + 2] = pair(kept, on)
            yield attribute, 1, channels
            continue
        for target, value in ((0, off), (1, on)):
            channels = kept.clone()
            channels[:, begin : begin + 2] = pair(kept, value)
            yield attribute, target, channels


def pair(like: torch.Tensor, alpha: float) -> torch.Tensor:
    """A binary attribute's `[1-α, α]`, on `like`'s device, as `attribute_channels` makes it."""
    return attribute_channels(like.new_tensor([[alpha]]))


class SwapTally:
    """Hits and counts of the classifier's verdicts, summed over held-out batches.

    Only *real* swaps count in `swap_accuracy` (the target differs from the image's own value);
    `swap_accuracy_all_targets` counts every decode; `swap_accuracy_extended` swaps with α at the
    ends of the app's slider range instead of 0 and 1.
    """

    def __init__(self, config: FaderConfig):
        self.config = config
        self.counts: dict[str, list[int]] = {}

    def count(self, key: str, hits: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        hits = hits if mask is None else hits[mask]
        tally = self.counts.setdefault(key, [0, 0])
        tally[0] += int(hits.sum())
        tally[1] += hits.numel()

    def add(
        self,
        model: FaderNetwork,
        classifier: Classifier,
        x: torch.Tensor,
        z: torch.Tensor,
        y: torch.Tensor,
        alpha_range: tuple[float, float],
    ) -> None:
        sizes = self.config.attribute_sizes
        columns = classifier_columns(classifier.config.attributes, self.config)
        exclusive = classifier.config.exclusive
        read = classifier_readings(classifier, x, columns, sizes) == y
        self.count("classifier_accuracy", read.all(1) if exclusive else read)
        ranges = {"": (0.0, 1.0), "_extended": alpha_range}
        for suffix, (off, on) in ranges.items():
            for attribute, target, channels in swap_targets(y, sizes, exclusive, off, on):
                decoded = model.decode(z, channels)
                hits = classifier_readings(classifier, decoded, columns, sizes)[:, attribute]
                hits = hits == target
                real = y[:, attribute] != target
                self.count(f"swap_accuracy{suffix}", hits, real)
                if not suffix:
                    self.count("swap_accuracy_all_targets", hits)
                    name = self.swap_name(attribute, target, exclusive)
                    self.count(f"swap_accuracy/{name}", hits, real)

    def swap_name(self, attribute: int, target: int, exclusive: bool) -> str:
        """`Smiling=1`, `Hair=Blond_Hair` (the target as a person names it); a class of
        exclusive data (a binary attribute, swapped on alone) by its name alone."""
        name = self.config.attributes[attribute]
        if exclusive and self.config.attribute_sizes[attribute] == 2:
            return name
        return f"{name}={value_name(self.config, name, target)}"

    def metrics(self) -> dict[str, float]:
        return {key: hits / total for key, (hits, total) in self.counts.items() if total}


@torch.inference_mode()
def sample_grid(model: FaderNetwork, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One row per image: original, reconstruction, then each attribute flipped (0↔1; an
    attribute with several values moved on to its next value).

    Returned as a 3×H×W float grid in [0, 1], ready for TensorBoard or `save_image`.
    """
    from torchvision.utils import make_grid  # torchvision adds ~1.3 s to every start: load late

    device = next(model.parameters()).device
    x = to_model_range(images.to(device))
    y = labels.to(device)
    sizes = model.config.attribute_sizes
    with evaluating(model):
        z = model.encode(x)
        columns = [x, model.decode(z, label_channels(y, sizes))]
        for attribute, size in enumerate(sizes):
            flipped = y.clone()
            flipped[:, attribute] = (flipped[:, attribute] + 1) % size
            columns.append(model.decode(z, label_channels(flipped, sizes)))
    tiles = torch.stack(columns, dim=1).flatten(0, 1)
    return make_grid(tiles.float().cpu(), nrow=len(columns), normalize=True, value_range=(-1, 1))
