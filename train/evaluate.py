"""Held-out numbers that say whether training works, and the sample grid people look at.

- reconstruction: MSE on [-1, 1] images and PSNR on [0, 1] (per image, averaged);
- latent-discriminator accuracy: how well attributes can still be read from z. It should fall
  toward chance (0.5 for balanced attributes) as the encoder learns to hide them.
"""

from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from fader.model import FaderNetwork, attribute_channels, attribute_predictions
from train.data import PreparedData


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 0…255 → float −1…1, the range the model is trained on."""
    return images.float().div_(127.5).sub_(1)


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [-1, 1] images, measured on the [0, 1] scale."""
    mse01 = ((reconstruction - target) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse01.clamp_min(1e-10))


def held_out_batches(
    data: PreparedData, indices: np.ndarray, columns: np.ndarray, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(indices), batch_size):
        rows = indices[start : start + batch_size]
        images = torch.from_numpy(np.ascontiguousarray(data.images[rows]))
        yield images, torch.from_numpy(data.labels[rows][:, columns])


@torch.inference_mode()
def evaluate(
    model: FaderNetwork,
    discriminator: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
) -> dict[str, float]:
    """Reconstruction MSE/PSNR and latent-discriminator accuracy (mean and per attribute)."""
    was_training = model.training, discriminator.training
    model.eval()
    discriminator.eval()
    squared_error, psnr_sum, correct, count = 0.0, 0.0, None, 0
    for images, labels in batches:
        x = to_model_range(images.to(device))
        y = labels.to(device)
        z = model.encode(x)
        reconstruction = model.decode(z, attribute_channels(y))
        squared_error += (reconstruction - x).pow(2).flatten(1).mean(1).sum().item()
        psnr_sum += psnr(reconstruction, x).sum().item()
        hits = (attribute_predictions(discriminator(z)) == y.long()).sum(0).cpu()
        correct = hits if correct is None else correct + hits
        count += len(images)
    model.train(was_training[0])
    discriminator.train(was_training[1])
    if count == 0:
        return {}
    accuracy = (correct.double() / count).tolist()
    metrics = {
        "reconstruction_mse": squared_error / count,
        "psnr": psnr_sum / count,
        "latent_discriminator_accuracy": float(np.mean(accuracy)),
    }
    for name, value in zip(model.attributes, accuracy, strict=True):
        metrics[f"latent_discriminator_accuracy/{name}"] = value
    return metrics


@torch.inference_mode()
def sample_grid(model: FaderNetwork, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One row per image: original, reconstruction, then each attribute flipped (0↔1).

    Returned as a 3×H×W float grid in [0, 1], ready for TensorBoard or `save_image`.
    """
    from torchvision.utils import make_grid

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = to_model_range(images.to(device))
    y = labels.to(device)
    z = model.encode(x)
    columns = [x, model.decode(z, attribute_channels(y))]
    for attribute in range(y.shape[1]):
        flipped = y.clone()
        flipped[:, attribute] = 1 - flipped[:, attribute]
        columns.append(model.decode(z, attribute_channels(flipped)))
    model.train(was_training)
    tiles = torch.stack(columns, dim=1).flatten(0, 1)
    return make_grid(tiles.float().cpu(), nrow=len(columns), normalize=True, value_range=(-1, 1))
