"""Process heap settings: training keeps freed activations for the next step."""

import subprocess
import sys
from pathlib import Path

import pytest

from fader import heap

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(heap._LIBC is None, reason="the settings exist in glibc only")

PAGE_FAULTS_PER_STEP = """
import resource, torch
torch.set_num_threads(1)
from fader.heap import keep_freed_memory
from fader.model import FaderConfig, FaderNetwork, LatentDiscriminator
from train.config import TrainConfig
from train.step import adam, training_layout, training_step

assert keep_freed_memory()
config = FaderConfig(attributes=["a"], image_size=128, init_fm=16, max_fm=128, n_layers=5)
model, dis = training_layout(FaderNetwork(config)), training_layout(LatentDiscriminator(config))
optimizers = {"autoencoder": adam(model, TrainConfig()), "discriminator": adam(dis, TrainConfig())}
images = torch.randint(0, 256, (16, 3, 128, 128), dtype=torch.uint8)
labels = torch.randint(0, 2, (16, 1)).float()
for _ in range(2):
    training_step(model, dis, optimizers, images, labels, 1e-4, 5.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    training_step(model, dis, optimizers, images, labels, 1e-4, 5.0)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""


def page_faults_per_step() -> int:
    """In a fresh process with the training setting, as `python -m train` runs."""
    run = subprocess.run(
        [sys.executable, "-c", PAGE_FAULTS_PER_STEP],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(run.stdout.split()[-1])


def test_training_steps_reuse_freed_activations_instead_of_faulting_them_back_in():
    """With the training setting a step faults in at most a few hundred pages (measured here:
    100–460). Without it glibc's adaptive thresholds vary from run to run: 1,600–9,600 a step
    in 16 runs of this script, and once 75 with two threads, so the default is not asserted."""
    assert page_faults_per_step() < 1000
