"""Networks in eval mode for a while: BatchNorm's running statistics, no dropout.

The classifier reads photos this way, evaluation reads held-out images this way, and so do the
authors' optional training steps that judge the autoencoder's output while it trains (their
latent-discriminator step, the patch discriminator's fakes), so the networks must come back in
the mode they were in.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


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
