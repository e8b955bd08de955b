"""One training step of a Fader Network (Section 3 of the paper, as in the authors' code).

1. the latent discriminator learns to predict the attributes y from z = E(x);
2. the autoencoder learns to reconstruct x from (z, y) while the encoder makes the discriminator
   predict the *flipped* attributes 1 − y, weighted by λ_dis, which ramps up from 0.
Both use Adam (lr 2e-4, β1 0.5) and gradient-norm clipping at 5.

Both updates share one forward pass of the autoencoder: the discriminator trains on z.detach(),
then the autoencoder's loss reads the same z through the just-updated discriminator. The authors
encoded a separate batch for the discriminator, with the autoencoder in eval mode (BatchNorm's
running statistics); that is `--lat-dis-step authors` (`discriminator_batch`). Sharing it is the
usual alternating GAN update, saves an encoder pass per step, and trains the discriminator on
the very latents (train-mode statistics) the encoder is then judged on.

The authors' optional image-space critics (`train.critics`: patch and classifier discriminators)
update between the two, as in their `train.py`, and add their terms to the autoencoder's loss.
"""

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from fader.model import FaderNetwork, LatentDiscriminator, attribute_loss, label_channels
from fader.modes import evaluating
from fader.pixels import to_model_range
from train.config import TrainConfig
from train.critics import ImageCritics


def adam(module: nn.Module, config: TrainConfig) -> torch.optim.Adam:
    """Adam with β1 = 0.5 as in the paper; the fused kernel where PyTorch has one (3× faster
    than the per-tensor loop on CPU), identical arithmetic otherwise. On CUDA it keeps its step
    count on the GPU (`capturable`), so the whole step can be replayed as a CUDA graph."""
    device = next(module.parameters()).device.type
    fast = {"fused": True} if device in {"cpu", "cuda"} else {"foreach": True}
    if device == "cuda":
        fast["capturable"] = True
    return torch.optim.Adam(module.parameters(), lr=config.lr, betas=(config.beta1, 0.999), **fast)


def training_layout(module: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """The network on `device` in channels-last layout: convolutions (and their backward, most
    of a step) run faster that way on CPU (measured here: −13% per paper-preset step) and with
    cuDNN. The weights and the arithmetic are the same."""
    return module.to(device, memory_format=torch.channels_last)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA (tensor cores; weights, optimizer state and losses stay float32);
    none elsewhere: a CPU without AVX-512 BF16, like this project's, has no fast path for it."""
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None


def use_fast_cuda_math(device: torch.device) -> None:
    """On CUDA, let float32 matrix products use TF32 and cuDNN pick the fastest convolution
    algorithm for the (fixed) batch shape. Process-wide settings; nothing changes on CPU."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        torch.backends.cudnn.benchmark = True


class Reconstruction(nn.Module):
    """E and D in one forward pass, returning z = E(x) and D(z, y).

    DistributedDataParallel synchronises the gradients of what a forward pass of the module it
    wraps used, so with several processes (`train.distributed`) the whole autoencoder runs as one.
    """

    def __init__(self, model: FaderNetwork):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, channels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.model.encode(x)
        return z, self.model.decode(z, channels)


def flipped_labels(labels: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """The attributes the encoder must make the latent discriminator read: 1 − y for a binary
    attribute; for one with k > 2 values another value drawn uniformly (y + 1…k−1 mod k), as
    the authors' `get_attr_loss(…, flip=True)`."""
    if all(size == 2 for size in sizes):
        return 1 - labels
    k = torch.tensor(list(sizes), device=labels.device, dtype=labels.dtype)
    shift = 1 + (torch.rand(labels.shape, device=labels.device) * (k - 1)).floor()
    return torch.where(k == 2, 1 - labels, (labels + shift) % k)


def training_step(
    model: FaderNetwork,
    discriminator: LatentDiscriminator,
    optimizers: dict[str, torch.optim.Optimizer],
    images: torch.Tensor,
    labels: torch.Tensor,
    lambda_dis: float | torch.Tensor,
    clip: float,
    precision: torch.dtype | None = None,
    *,
    critics: ImageCritics | None = None,
    ramp: float = 1.0,
    discriminator_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    replicas: tuple[nn.Module, nn.Module] | None = None,
) -> dict[str, torch.Tensor]:
    """One discriminator update and one autoencoder update on a batch of uint8 images.

    With `precision` (see `autocast_dtype`) the forward passes run under autocast in it.
    `lambda_dis` may be a tensor, so that a CUDA graph of the step reads its current value.
    Options of the authors' trainer: `critics` (updated, then weighted by their λ × `ramp`, the
    λ schedule's fraction so far), and `discriminator_batch`, a separate (images, labels) batch
    the latent discriminator trains on, encoded in eval mode (their `lat_dis_step`).
    With several processes, `replicas` are the DistributedDataParallel `Reconstruction(model)`
    and discriminator the gradient-making passes go through (`train.distributed.replicate`).
    """
    sizes = model.config.attribute_sizes
    forward_in = partial(
        torch.autocast,
        images.device.type,
        dtype=precision or torch.float32,
        enabled=precision is not None,
        cache_enabled=False,  # each weight is cast once a pass anyway; CUDA graphs need it off
    )
    with forward_in():
        if discriminator_batch is not None:  # first: BatchNorm's statistics before this step's
            dis_z = encoded_in_eval_mode(model, discriminator_batch[0])  # batch moves them
        x = to_model_range(images.contiguous(memory_format=torch.channels_last))
        reconstruct, discriminate = replicas or (Reconstruction(model), discriminator)
        # D(z, y) does not depend on the discriminator: decoded now, judged after its update.
        z, decoded = reconstruct(x, label_channels(labels, sizes))

        # 1. The discriminator reads the true attributes from z (the encoder is not updated).
        if discriminator_batch is None:
            dis_z, dis_labels = z.detach(), labels
        else:
            dis_labels = discriminator_batch[1]
        discriminator.train()
        dis_loss = attribute_loss(discriminate(dis_z), dis_labels, sizes)
    optimizers["discriminator"].zero_grad(set_to_none=True)
    dis_loss.backward()
    nn.utils.clip_grad_norm_(discriminator.parameters(), clip)
    optimizers["discriminator"].step()
    critic_losses = (
        {} if critics is None else critics.train(model, x, labels, optimizers, clip, forward_in)
    )

    # 2. Reconstruct from (z, y) and push the discriminator toward the flipped attributes.
    with forward_in():
        reconstruction_loss = F.mse_loss(decoded, x)
        discriminator.eval()  # no dropout when it judges the encoder, as in the authors' code
        discriminator.requires_grad_(False)  # its weights get no gradient from this loss
        adversarial_loss = attribute_loss(discriminator(z), flipped_labels(labels, sizes), sizes)
        discriminator.requires_grad_(True)
        loss = reconstruction_loss + lambda_dis * adversarial_loss
        if critics is not None:
            critic_loss, decoder_terms = critics.decoder_loss(model, z, labels, ramp)
            loss = loss + critic_loss
            critic_losses |= decoder_terms
    optimizers["autoencoder"].zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizers["autoencoder"].step()
    losses = {
        "reconstruction": reconstruction_loss,
        "discriminator": dis_loss,
        "adversarial": adversarial_loss,
        **critic_losses,
    }
    # Detached, so a caller holding them does not keep this step's autograd graph alive.
    return {name: loss.detach() for name, loss in losses.items()}


def encoded_in_eval_mode(model: FaderNetwork, images: torch.Tensor) -> torch.Tensor:
    """z of a uint8 batch with BatchNorm's running statistics and no autograd graph, as the
    authors' `lat_dis_step` encodes the discriminator's batch."""
    with evaluating(model), torch.no_grad():
        return model.encode(to_model_range(images.contiguous(memory_format=torch.channels_last)))
