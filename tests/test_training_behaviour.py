"""What a training step and run must do, each checked against a value computed here.

The encoder's adversarial target (1 − y, with labels that are not all 1), gradient clipping at
the paper's 5, random horizontal flips reaching the batches (and `--no-flip` stopping them), the
CUDA path's decisions as far as they can run on a CPU, and SIGTERM mid-run.
"""

import copy
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fader.model import FaderConfig, FaderNetwork, LatentDiscriminator
from fader.pixels import to_model_range
from train.__main__ import main as train_main
from train.__main__ import parse_args
from train.checkpoint import CHECKPOINT_NAME, read_checkpoint_info
from train.config import PRESETS, TrainConfig
from train.cuda_graph import GraphedTrainingStep
from train.data import BatchStream, PreparedData, load_prepared
from train.loop import Trainer, step_for_device
from train.plan import configs_from_args
from train.sources import TRAIN, VALIDATION
from train.step import adam, training_step

ROOT = Path(__file__).resolve().parents[1]
PAPER_CLIP = 5.0  # the authors' gradient-norm clip


def networks(n_attr: int = 2, seed: int = 0) -> tuple[FaderNetwork, LatentDiscriminator, dict]:
    torch.manual_seed(seed)
    names = ["Smiling", "Male", "Young"][:n_attr]
    config = FaderConfig(attributes=names, **PRESETS["tiny"]["model"])
    model, discriminator = FaderNetwork(config).train(), LatentDiscriminator(config)
    optimizers = {
        "autoencoder": adam(model, TrainConfig()),
        "discriminator": adam(discriminator, TrainConfig()),
    }
    return model, discriminator, optimizers


def batch(n: int = 8, n_attr: int = 2, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.tensor([[i % 4 != 0, i % 4 == 1, i % 2][:n_attr] for i in range(n)]).float()
    return images, labels


def cross_entropy_per_attribute(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ over attributes of the mean cross-entropy of its softmax pair (logits [a0, a1, b0, …])."""
    return sum(
        F.cross_entropy(logits[:, 2 * a : 2 * a + 2], targets[:, a].long())
        for a in range(targets.shape[1])
    )


def gradient_norm(module: torch.nn.Module) -> float:
    grads = [p.grad.flatten() for p in module.parameters() if p.grad is not None]
    return torch.cat(grads).norm().item()


def test_the_encoder_is_pushed_toward_the_flipped_attributes_of_each_image():
    model, discriminator, optimizers = networks()
    with torch.no_grad():  # sure of Smiling = 1 and Male = 0 for any z: the targets matter
        discriminator.proj[-1].weight.mul_(0.1)
        discriminator.proj[-1].bias.copy_(torch.tensor([-3.0, 3.0, 3.0, -3.0]))
    images, labels = batch()
    assert labels.mean(0).tolist() == [0.75, 0.25], "labels that are not all 1 (nor balanced)"
    encoder_before = copy.deepcopy(model)
    losses = training_step(model, discriminator, optimizers, images, labels, 0.5, PAPER_CLIP)

    # The adversarial loss reads z of the encoder before its update through the discriminator
    # after its own update, without dropout.
    with torch.no_grad():
        z = encoder_before.encode(
            to_model_range(images.contiguous(memory_format=torch.channels_last))
        )
        logits = discriminator.eval()(z)
    flipped = cross_entropy_per_attribute(logits, 1 - labels).item()
    assert losses["adversarial"].item() == pytest.approx(flipped, rel=1e-5)
    for wrong_target in (labels, torch.zeros_like(labels), torch.ones_like(labels)):
        other = cross_entropy_per_attribute(logits, wrong_target).item()
        assert abs(other - flipped) > 0.5, "the targets tell the losses apart"
    assert losses["discriminator"].item() > 0


def test_gradient_norms_stay_at_the_clip_even_for_a_huge_loss():
    assert TrainConfig().clip_grad_norm == PAPER_CLIP
    images, labels = batch()
    norms = {}
    for clip in (float("inf"), PAPER_CLIP):
        model, discriminator, optimizers = networks()
        with torch.no_grad():  # confidently wrong: a large loss for both networks
            discriminator.proj[-1].bias.copy_(torch.tensor([30.0, -30.0, 30.0, -30.0]))
        torch.manual_seed(1)
        training_step(model, discriminator, optimizers, images, labels, 1e4, clip)
        norms[clip] = gradient_norm(model), gradient_norm(discriminator)
    unclipped, clipped = norms[float("inf")], norms[PAPER_CLIP]
    assert unclipped[0] > 100 * PAPER_CLIP and unclipped[1] > PAPER_CLIP, unclipped
    assert max(clipped) <= PAPER_CLIP * (1 + 1e-5), clipped
    assert min(clipped) > 0.9 * PAPER_CLIP, "clipped to the norm, not zeroed"


# ---- Random horizontal flips -----------------------------------------------------------------


def lopsided_data(folder: Path, n: int = 24, size: int = 32) -> PreparedData:
    """A prepared cache whose every image is bright on its left half only, so a mirrored image
    is told apart by its brighter right half."""
    folder.mkdir(parents=True)
    images = np.zeros((n, 3, size, size), np.uint8)
    images[..., : size // 2] = 200
    images[np.arange(n), :, np.arange(n) % size, size // 2 :] = 50  # no two alike
    np.save(folder / "images.npy", images)
    np.save(folder / "labels.npy", (np.arange(n)[:, None] % 2).astype(np.float32))
    split = np.full(n, TRAIN, np.int8)
    split[-4:] = VALIDATION
    np.save(folder / "split.npy", split)
    (folder / "meta.json").write_text(json.dumps({"attributes": ["Smiling"], "skipped": 0}))
    return load_prepared(folder)


def mirrored_share(stream: BatchStream, steps: int = 12) -> float:
    images = torch.cat([stream.batch(step)[0] for step in range(steps)]).float()
    half = images.shape[-1] // 2
    left, right = images[..., :half].mean((1, 2, 3)), images[..., half:].mean((1, 2, 3))
    assert bool(((left > 150) ^ (right > 150)).all()), "every image is the original or its mirror"
    return (right > left).float().mean().item()


def test_flips_mirror_about_half_the_training_images_and_none_without_them(tmp_path):
    data = lopsided_data(tmp_path / "cache")
    columns = data.attribute_columns(["Smiling"])
    with_flips = BatchStream(data, data.indices(TRAIN), columns, 8, seed=0, flip=True)
    without = BatchStream(data, data.indices(TRAIN), columns, 8, seed=0, flip=False)
    assert 0.3 < mirrored_share(with_flips) < 0.7
    assert mirrored_share(without) == 0


def test_no_flip_reaches_the_runs_batches_and_flips_are_the_default(tmp_path):
    data = lopsided_data(tmp_path / "cache")
    shares = {}
    for flag in ([], ["--no-flip"]):
        args = parse_args(
            ["--data", "x", "--preset", "tiny", "--out", "x", "--device", "cpu", *flag]
        )
        model_settings, config = configs_from_args(args)
        model_config = FaderConfig(attributes=["Smiling"], **model_settings)
        out = tmp_path / f"run{len(flag)}"
        trainer = Trainer(model_config, config, data, out)
        shares[bool(flag)] = mirrored_share(trainer.stream)
    assert 0.3 < shares[False] < 0.7
    assert shares[True] == 0


# ---- The CUDA path, as far as it runs without a GPU ------------------------------------------


@pytest.fixture
def cuda_math_settings():
    """Restore the process-wide CUDA math settings a test of `step_for_device` changes."""
    saved = (
        torch.backends.cuda.matmul.fp32_precision,
        torch.backends.cudnn.conv.fp32_precision,
        torch.backends.cudnn.benchmark,
    )
    yield
    (
        torch.backends.cuda.matmul.fp32_precision,
        torch.backends.cudnn.conv.fp32_precision,
        torch.backends.cudnn.benchmark,
    ) = saved


def weights(*modules: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for m in modules for t in m.state_dict().values()]


def test_cuda_runs_get_the_graphed_step_and_fast_math_cpu_runs_the_plain_step(cuda_math_settings):
    model, discriminator, optimizers = networks()
    torch.backends.cudnn.benchmark = False
    on_cpu = step_for_device(model, discriminator, optimizers, PAPER_CLIP, torch.device("cpu"))
    assert not isinstance(on_cpu, GraphedTrainingStep)
    assert torch.backends.cudnn.benchmark is False, "CPU runs change no process-wide setting"
    on_cuda = step_for_device(model, discriminator, optimizers, PAPER_CLIP, torch.device("cuda"))
    assert isinstance(on_cuda, GraphedTrainingStep)
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cudnn.benchmark is True

    images, labels = batch()
    twin = networks()
    torch.manual_seed(5)
    on_cpu(images, labels, 0.25)
    torch.manual_seed(5)
    training_step(*twin, images, labels, 0.25, PAPER_CLIP)
    assert all(
        torch.equal(a, b)
        for a, b in zip(weights(model, discriminator), weights(*twin[:2]), strict=True)
    )


def test_the_graphed_step_needs_cuda_and_trains_a_batch_of_another_shape_eagerly():
    model, discriminator, optimizers = networks()
    graphed = GraphedTrainingStep(model, discriminator, optimizers, PAPER_CLIP, None)
    start = weights(model, discriminator)
    full, labels = batch(16)
    with pytest.raises((RuntimeError, AssertionError)):  # the graph's stream is a CUDA stream
        graphed(full, labels, 0.25)
    assert all(torch.equal(a, b) for a, b in zip(start, weights(model, discriminator), strict=True))

    # The last, smaller batch of an epoch cannot replay a graph recorded for 16 images: it
    # trains eagerly, exactly as the plain step does.
    odd, odd_labels = batch(6)
    twin = networks()
    torch.manual_seed(7)
    losses = graphed(odd, odd_labels, 0.25)
    torch.manual_seed(7)
    expected = training_step(*twin, odd, odd_labels, 0.25, PAPER_CLIP)
    assert {k: v.item() for k, v in losses.items()} == {k: v.item() for k, v in expected.items()}
    assert all(
        torch.equal(a, b)
        for a, b in zip(weights(model, discriminator), weights(*twin[:2]), strict=True)
    )


def tiny_trainer(
    data: PreparedData, out: Path, resume: bool = False, steps: int = 2, device: str = "cpu"
) -> Trainer:
    config = TrainConfig(**{**PRESETS["tiny"]["train"], "steps": steps, "device": device})
    model_config = FaderConfig(attributes=["Smiling"], **PRESETS["tiny"]["model"])
    return Trainer(model_config, config, data, out, resume=resume)


def test_resuming_on_cpu_a_checkpoint_a_cuda_run_wrote_turns_capturable_off(tmp_path):
    data = lopsided_data(tmp_path / "cache")
    out = tmp_path / "run"
    trainer = tiny_trainer(data, out, steps=2)
    trainer.fit()
    checkpoint = out / CHECKPOINT_NAME
    # What a CUDA run writes: the same file with Adam's groups `capturable`.
    with safe_open(str(checkpoint), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(checkpoint))
    groups = json.loads(metadata["optimizer_groups"])
    assert all(g["capturable"] is False for gs in groups.values() for g in gs)
    for group_list in groups.values():
        for group in group_list:
            group["capturable"] = True
    save_file(tensors, str(checkpoint), {**metadata, "optimizer_groups": json.dumps(groups)})

    resumed = tiny_trainer(data, out, resume=True, steps=4)
    assert resumed.first_step == 2
    flags = [g["capturable"] for o in resumed.optimizers.values() for g in o.param_groups]
    assert flags == [False, False]
    resumed.fit()
    assert read_checkpoint_info(checkpoint)[0] == 4


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU: the graph's capture and replay (the same weights as eager steps, "
    "dropout off) and a CPU checkpoint resumed on CUDA (capturable on) run only there",
)
def test_on_cuda_the_replayed_graph_trains_as_eager_steps_do_and_resume_turns_capturable_on(
    tmp_path,
):
    device = torch.device("cuda")

    def on_cuda() -> tuple:
        model, discriminator, _ = networks()
        for module in discriminator.modules():  # the graph draws its own dropout masks
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        model, discriminator = model.to(device), discriminator.to(device)
        optimizers = {
            "autoencoder": adam(model, TrainConfig()),
            "discriminator": adam(discriminator, TrainConfig()),
        }
        assert all(g["capturable"] for o in optimizers.values() for g in o.param_groups)
        return model, discriminator, optimizers

    graphed_networks, eager_networks = on_cuda(), on_cuda()
    graphed = GraphedTrainingStep(*graphed_networks, PAPER_CLIP, None)
    for step in range(6):  # warm-up, capture, replays
        images, labels = (t.to(device) for t in batch(8, seed=step))
        graphed(images, labels, 0.1)
        training_step(*eager_networks, images, labels, 0.1, PAPER_CLIP)
    assert graphed.graph is not None, "the step was recorded and replayed"
    odd, odd_labels = (t.to(device) for t in batch(4, seed=9))
    graphed(odd, odd_labels, 0.1)
    training_step(*eager_networks, odd, odd_labels, 0.1, PAPER_CLIP)
    for a, b in zip(weights(*graphed_networks[:2]), weights(*eager_networks[:2]), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)

    data = lopsided_data(tmp_path / "cache")
    out = tmp_path / "run"
    tiny_trainer(data, out, steps=2).fit()  # a CPU run
    config = TrainConfig(**{**PRESETS["tiny"]["train"], "steps": 3, "device": "cuda"})
    model_config = FaderConfig(attributes=["Smiling"], **PRESETS["tiny"]["model"])
    resumed = Trainer(model_config, config, data, out, resume=True)
    assert [g["capturable"] for o in resumed.optimizers.values() for g in o.param_groups] == [
        True,
        True,
    ]
    resumed.fit()
    assert read_checkpoint_info(out / CHECKPOINT_NAME)[0] == 3


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU: its random generator (the dropout masks there) is saved only there",
)
def test_a_cuda_checkpoint_keeps_the_gpus_generator_and_resume_restores_it(tmp_path):
    data = lopsided_data(tmp_path / "cache")
    out = tmp_path / "run"
    tiny_trainer(data, out, steps=2, device="cuda").fit()
    saved = load_file(str(out / CHECKPOINT_NAME))
    assert {"rng.torch", "rng.cuda"} <= saved.keys()
    torch.cuda.manual_seed(12345)  # anything but the saved state
    assert not torch.equal(torch.cuda.get_rng_state(), saved["rng.cuda"])
    tiny_trainer(data, out, resume=True, steps=3, device="cuda")
    assert torch.equal(torch.cuda.get_rng_state(), saved["rng.cuda"])


# ---- SIGTERM ---------------------------------------------------------------------------------


def test_sigterm_during_training_saves_a_checkpoint_that_resume_continues(tmp_path):
    """How a cluster or a container stops a job: SIGTERM, then a resumed run on the same --out."""
    out, cache, log = tmp_path / "run", tmp_path / "cache", tmp_path / "stderr.txt"
    command = [
        sys.executable, "-m", "train", "--data", "mnist5k", "--preset", "tiny", "--no-flip",
        "--steps", "100000", "--save-every", "100000", "--eval-every", "100000",
        "--out", str(out), "--cache-dir", str(cache), "--workers", "1", "--device", "cpu",
    ]  # fmt: skip
    with log.open("w") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, stderr=stderr, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not re.search(r"Training: .* (\d{2,})/100000", log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 130, log.read_text()
    assert "Resume with: python -m train" in log.read_text()
    step, info = read_checkpoint_info(out / CHECKPOINT_NAME)
    assert step >= 10 and info["train_config"]["flip"] is False
    assert FaderNetwork.from_pretrained(out).attributes[:2] == ["zero", "one"]
    assert not list(out.glob("*.tmp")), "no half-written files left behind"
    assert train_main(["--out", str(out), "--resume", "--steps", str(step + 3)]) == 0
    assert read_checkpoint_info(out / CHECKPOINT_NAME)[0] == step + 3
