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
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from fader.classifier import Classifier
from fader.model import FaderNetwork, attribute_channels, attribute_predictions
from fader.pixels import to_model_range


@contextmanager
def evaluating(*networks: nn.Module | None) -> Iterator[None]:
    """The networks in eval mode (BatchNorm statistics, no dropout), then back as they were."""
    present = [net for net in networks if net is not None]
    modes = [net.training for net in present]
    for net in present:
        net.eval()
    try:
        yield
    finally:
        for net, mode in zip(present, modes, strict=True):
            net.train(mode)


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
    swaps = SwapTally(model.attributes)
    with evaluating(model, discriminator):
        for images, labels in batches:
            x = to_model_range(images.to(device))
            y = labels.to(device)
            z = model.encode(x)
            reconstruction = model.decode(z, attribute_channels(y))
            squared_error += (reconstruction - x).pow(2).flatten(1).mean(1).sum().item()
            psnr_sum += psnr(reconstruction, x).sum().item()
            if discriminator is not None:
                read = attribute_predictions(discriminator(z)) == y.long()
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


def check_classifier(classifier: Classifier, attributes: list[str], image_size: int) -> None:
    """Refuse, before any work, a judge that cannot read this model's images."""
    classifier_columns(classifier, attributes)
    if classifier.config.image_size != image_size:
        raise ValueError(
            f"The classifier reads {classifier.config.image_size}² images and the model makes "
            f"{image_size}²: train the classifier with --image-size {image_size}."
        )


def classifier_columns(classifier: Classifier, attributes: list[str]) -> list[int]:
    """Where each of the model's attributes is in the classifier's output."""
    missing = [a for a in attributes if a not in classifier.config.attributes]
    if missing:
        raise ValueError(
            f"The classifier does not read {missing} (it reads {classifier.config.attributes}): "
            "train one on the model's attributes with python -m train.classifier."
        )
    return [classifier.config.attributes.index(a) for a in attributes]


def swap_targets(
    labels: torch.Tensor, exclusive: bool, off: float, on: float
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Every swap the metric makes: (attribute, target value 0/1, α for the whole batch).

    Independent attributes are set to `off` or `on` one at a time, the others kept; exclusive
    ones (classes) are swapped by switching one class on and all the others off.
    """
    n, n_attr = labels.shape
    for attribute in range(n_attr):
        if exclusive:
            alpha = torch.zeros(n, n_attr, device=labels.device)
            alpha[:, attribute] = on
            yield attribute, 1, alpha
            continue
        for target, value in ((0, off), (1, on)):
            alpha = labels.float().clone()
            alpha[:, attribute] = value
            yield attribute, target, alpha


class SwapTally:
    """Hits and counts of the classifier's verdicts, summed over held-out batches.

    Only *real* swaps count in `swap_accuracy` (the target differs from the image's own value);
    `swap_accuracy_all_targets` counts every decode; `swap_accuracy_extended` swaps with α at the
    ends of the app's slider range instead of 0 and 1.
    """

    def __init__(self, attributes: list[str]):
        self.attributes = attributes
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
        columns = classifier_columns(classifier, model.attributes)
        exclusive = classifier.config.exclusive
        read = classifier.read(x)[:, columns] == y
        self.count("classifier_accuracy", read.all(1) if exclusive else read)
        ranges = {"": (0.0, 1.0), "_extended": alpha_range}
        for suffix, (off, on) in ranges.items():
            for attribute, target, alpha in swap_targets(y, exclusive, off, on):
                decoded = model.decode(z, attribute_channels(alpha))
                hits = classifier.read(decoded)[:, columns[attribute]] == target
                real = y[:, attribute] != target
                self.count(f"swap_accuracy{suffix}", hits, real)
                if not suffix:
                    self.count("swap_accuracy_all_targets", hits)
                    name = self.attributes[attribute] + ("" if exclusive else f"={target}")
                    self.count(f"swap_accuracy/{name}", hits, real)

    def metrics(self) -> dict[str, float]:
        return {key: hits / total for key, (hits, total) in self.counts.items() if total}


@torch.inference_mode()
def sample_grid(model: FaderNetwork, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One row per image: original, reconstruction, then each attribute flipped (0↔1).

    Returned as a 3×H×W float grid in [0, 1], ready for TensorBoard or `save_image`.
    """
    from torchvision.utils import make_grid  # torchvision adds ~1.3 s to every start: load late

    device = next(model.parameters()).device
    x = to_model_range(images.to(device))
    y = labels.to(device)
    with evaluating(model):
        z = model.encode(x)
        columns = [x, model.decode(z, attribute_channels(y))]
        for attribute in range(y.shape[1]):
            flipped = y.clone()
            flipped[:, attribute] = 1 - flipped[:, attribute]
            columns.append(model.decode(z, attribute_channels(flipped)))
    tiles = torch.stack(columns, dim=1).flatten(0, 1)
    return make_grid(tiles.float().cpu(), nrow=len(columns), normalize=True, value_range=(-1, 1))
