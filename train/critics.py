"""The authors' optional image-space discriminators: a patch discriminator and a classifier.

Both judge images the decoder makes from z with *random* attributes (the authors'
`flip_attributes(…, 'all')`), and both are off by default, as in the authors' `train.py`
(`--n_ptc_dis 0`, `--n_clf_dis 0`):

- the **patch discriminator** (their `PatchDiscriminator`, a PatchGAN) tells real training
  images from decoded ones, averaging a sigmoid over overlapping patches; its targets are
  smoothed (real 1 − s, fake s, their `--smooth_label` s = 0.2), and the decoder is trained to
  make it answer "real" (1 − s) — pressure toward sharp, natural-looking images;
- the **classifier discriminator** is an attribute classifier (`fader.classifier.Classifier`, so
  a `python -m train.classifier` folder can be reloaded as its start), trained on real images
  alongside the model; the decoder is trained so that it reads the random attributes it was
  asked for — pressure toward edits that show.

Their losses are weighted by λ_ptc / λ_clf through the latent discriminator's λ schedule.
Unlike the authors', these gradients reach the decoder only: the flipped images are decoded from
z.detach(), so the encoder's objective stays the paper's (reconstruct, and hide the attributes
from the latent discriminator). Each update reuses the step's batch (the authors drew a batch per
update), as our latent-discriminator step does.
"""

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fader.attributes import flat_names
from fader.classifier import Classifier, ClassifierConfig
from fader.model import FaderConfig, FaderNetwork, attribute_loss, label_channels
from fader.modes import evaluating

PATCH_LAYERS = 3  # the authors' n_patch_dis_layers
PATCH = "patch_discriminator"
CLASSIFIER = "classifier_discriminator"


class PatchDiscriminator(nn.Module):
    """The authors' PatchGAN: conv 4×4 blocks (stride 2, 2, then 1), BatchNorm, LeakyReLU(0.2),
    a 1-channel conv and a sigmoid, averaged over its patches: P(real) per image."""

    def __init__(self, config: FaderConfig):
        super().__init__()
        c_in, c_out = config.init_fm, min(2 * config.init_fm, config.max_fm)
        layers: list[nn.Module] = [
            nn.Conv2d(config.image_channels, c_in, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for n in range(PATCH_LAYERS):
            last = n == PATCH_LAYERS - 1
            layers += [
                nn.Conv2d(c_in, c_out, 4, 1 if last else 2, 1),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            if not last:
                c_in, c_out = c_out, min(2 * c_out, config.max_fm)
        layers += [nn.Conv2d(c_out, 1, 4, 1, 1), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).flatten(1).mean(1)


def random_labels(labels: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
    """Each attribute drawn uniformly among its values (it may keep its own), as the authors'
    `flip_attributes(…, 'all')` draws the attributes the image-space critics judge."""
    high = torch.tensor(list(sizes), device=labels.device, dtype=labels.dtype)
    return (torch.rand(labels.shape, device=labels.device) * high).floor().clamp_max(high - 1)


def classifier_columns(attributes: list[str], config: FaderConfig) -> list[list[int]]:
    """Where each of the model's attributes is among a classifier's `attributes`: its own column
    for a binary one, one column per value for an attribute with several values."""
    wanted = flat_names(config)
    missing = [n for names in wanted.values() for n in names if n not in attributes]
    if missing:
        raise ValueError(
            f"The classifier does not read {missing} (it reads {attributes}): train one on the "
            "model's attributes (an attribute with several values: on each of its values) with "
            "python -m train.classifier."
        )
    return [[attributes.index(n) for n in names] for names in wanted.values()]


def classifier_config(config: FaderConfig) -> ClassifierConfig:
    """A fresh classifier discriminator: one output pair per binary attribute and per value."""
    columns = [n for names in flat_names(config).values() for n in names]
    return ClassifierConfig(
        attributes=columns, image_size=config.image_size, image_channels=config.image_channels
    )


def attribute_logits(
    logits: torch.Tensor, columns: list[list[int]], sizes: Sequence[int]
) -> torch.Tensor:
    """A classifier's output pairs as the model's per-attribute softmaxes (as the latent
    discriminator gives them): a binary attribute's pair as it is; for one with several values,
    each value's "on − off" margin as that value's logit."""
    pairs = logits.view(len(logits), -1, 2)
    parts = [
        pairs[:, where[0]] if size == 2 else pairs[:, where, 1] - pairs[:, where, 0]
        for where, size in zip(columns, sizes, strict=True)
    ]
    return torch.cat(parts, 1)


Autocast = Callable[[], AbstractContextManager]


@dataclass
class ImageCritics:
    """The enabled critics (None: off), how often each trains per step, and their weights."""

    patch: PatchDiscriminator | None
    classifier: Classifier | None
    columns: list[list[int]]  # each model attribute's columns in the classifier's output
    updates: dict[str, int]  # PATCH / CLASSIFIER → updates per step (the authors' n_*_dis)
    weights: dict[str, float]  # PATCH / CLASSIFIER → final λ
    smooth_label: float

    def networks(self) -> dict[str, nn.Module]:
        present = {PATCH: self.patch, CLASSIFIER: self.classifier}
        return {name: net for name, net in present.items() if net is not None}

    def classifier_loss(
        self, images: torch.Tensor, labels: torch.Tensor, sizes: Sequence[int]
    ) -> torch.Tensor:
        logits = attribute_logits(self.classifier(images), self.columns, sizes)
        return attribute_loss(logits, labels, sizes)

    def train(
        self,
        model: FaderNetwork,
        x: torch.Tensor,
        labels: torch.Tensor,
        optimizers: dict[str, torch.optim.Optimizer],
        clip: float,
        forward_in: Autocast,
    ) -> dict[str, torch.Tensor]:
        """The critics' own updates on the step's batch `x` (in [-1, 1])."""
        sizes = model.config.attribute_sizes
        losses = {}
        for _ in range(self.updates.get(PATCH, 0)):
            # The fakes come from the autoencoder in eval mode, as the authors' ptc_dis_step.
            with evaluating(model), torch.no_grad(), forward_in():
                y = label_channels(random_labels(labels, sizes), sizes)
                fake = model.decode(model.encode(x), y)
            self.patch.train()
            with forward_in():
                real_p, fake_p = self.patch(x), self.patch(fake)
            s = self.smooth_label
            losses[PATCH] = binary_cross_entropy(real_p, 1 - s) + binary_cross_entropy(fake_p, s)
            update(self.patch, optimizers[PATCH], losses[PATCH], clip)
        for _ in range(self.updates.get(CLASSIFIER, 0)):
            self.classifier.train()
            with forward_in():
                losses[CLASSIFIER] = self.classifier_loss(x, labels, sizes)
            update(self.classifier, optimizers[CLASSIFIER], losses[CLASSIFIER], clip)
        return losses

    def decoder_loss(
        self, model: FaderNetwork, z: torch.Tensor, labels: torch.Tensor, ramp: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """λ-weighted critic losses of images decoded from z.detach() with random attributes
        (call under the step's autocast); the critics' weights get no gradient from them."""
        sizes = model.config.attribute_sizes
        targets = random_labels(labels, sizes)
        decoded = model.decode(z.detach(), label_channels(targets, sizes))
        terms = {}
        for name, critic in self.networks().items():
            critic.eval()
            critic.requires_grad_(False)
            if name == PATCH:
                p = critic(decoded)
                terms[f"{name}_decoder"] = binary_cross_entropy(p, 1 - self.smooth_label)
            else:
                terms[f"{name}_decoder"] = self.classifier_loss(decoded, targets, sizes)
            critic.requires_grad_(True)
        total = sum(
            ramp * self.weights[name] * terms[f"{name}_decoder"] for name in self.networks()
        )
        return total, terms


def binary_cross_entropy(p: torch.Tensor, target: float) -> torch.Tensor:
    """BCE of probabilities `p` against a constant target, in float32 outside autocast (which
    refuses BCE on probabilities: it is unsafe in low precision)."""
    with torch.autocast(p.device.type, enabled=False):
        return F.binary_cross_entropy(p.float(), torch.full_like(p.float(), target))


def update(network: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip: float):
    """One clipped Adam update of `network` from `loss`."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(network.parameters(), clip)
    optimizer.step()
