"""Concurrent decodes share one decoder batch, and each caller gets exactly its own rows."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from fader.batching import MAX_BATCH, DecodeBatcher


def test_requests_waiting_together_are_decoded_in_one_batch_and_each_gets_its_own_rows():
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def decode(latent: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        calls.append(len(latent))
        if len(calls) == 1:  # hold the first batch until the others are queued behind it
            started.set()
            release.wait(10)
        return latent * 10 + channels[:, :1, None, None]

    batcher = DecodeBatcher(decode)

    def one(i: int) -> torch.Tensor:
        return batcher.decode(torch.full((1, 1, 2, 2), float(i)), torch.full((1, 2), 0.5))

    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(one, 0)
        started.wait(10)
        rest = [pool.submit(one, i) for i in range(1, 8)]
        while len(batcher._waiting) < 7:  # all seven are queued behind the running batch
            threading.Event().wait(0.01)
        release.set()
        results = [first.result(), *(f.result() for f in rest)]
    assert calls == [1, 7], "the seven that waited were decoded together"
    for i, result in enumerate(results):
        assert torch.equal(result, torch.full((1, 1, 2, 2), i * 10 + 0.5)), i


def test_batches_are_capped_and_an_error_reaches_every_caller_of_its_batch():
    def decode(latent: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        if (latent < 0).any():
            raise RuntimeError("bad latent")
        return latent

    batcher = DecodeBatcher(decode)
    latents = [torch.full((1, 1, 1, 1), float(i)) for i in range(3 * MAX_BATCH)]
    with ThreadPoolExecutor(3 * MAX_BATCH) as pool:
        results = list(pool.map(lambda z: batcher.decode(z, torch.zeros(1, 2)), latents))
    assert all(torch.equal(r, z) for r, z in zip(results, latents, strict=True))
    assert max(batcher.batch_sizes) <= MAX_BATCH
    with pytest.raises(RuntimeError, match="bad latent"):
        batcher.decode(torch.full((1, 1, 1, 1), -1.0), torch.zeros(1, 2))
    assert torch.equal(batcher.decode(latents[1], torch.zeros(1, 2)), latents[1]), "still serves"
