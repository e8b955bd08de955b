"""Training in two processes (gloo, on CPU), as `torchrun --nproc_per_node 2 -m train` runs it.

The comparison with one process is exact only for a reference that normalises as the two
processes do. gloo has no synchronised BatchNorm (PyTorch implements it for GPUs), so each
process normalises its half of the global batch with that half's statistics, its running
statistics starting each step from process 0's. One process whose BatchNorm layers do the same
per half (`PerHalfBatchNorm`) computes the same averaged gradients: against it the weights agree
to float rounding (the halves' sums are added in another order), 1e-5. Against a plain process,
normalising the whole batch, they differ by far more: the BatchNorm difference README.md states.
"""

import faulthandler
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from fader.model import FaderConfig, FaderNetwork
from train.checkpoint import CHECKPOINT_NAME, module_state, read_checkpoint_info
from train.config import PRESETS, TrainConfig
from train.data import BatchStream, load_prepared, prepare
from train.distributed import Processes, exit_program, from_environment, start, stop
from train.loop import Trainer
from train.sources import TRAIN, open_source

ROOT = Path(__file__).resolve().parents[1]
GLOBAL_BATCH = 8
STEPS = 6


class PerHalfBatchNorm(nn.BatchNorm2d):
    """BatchNorm as two gloo processes apply it to a batch: each half normalised with its own
    statistics in training, or its own running statistics in eval mode; one weight and bias.
    Each training pass starts the second half's running statistics from the first's, as DDP
    gives every process those of process 0 at each forward pass. Its saved state is a plain
    BatchNorm's: the first half's, as process 0 saves."""

    @classmethod
    def of(cls, norm: nn.BatchNorm2d) -> "PerHalfBatchNorm":
        half = cls(norm.num_features, norm.eps, norm.momentum)
        half.weight, half.bias = norm.weight, norm.bias  # the optimizer's own parameters
        half.running_mean, half.running_var = norm.running_mean, norm.running_var
        half.num_batches_tracked = norm.num_batches_tracked
        half.register_buffer("second_mean", norm.running_mean.clone(), persistent=False)
        half.register_buffer("second_var", norm.running_var.clone(), persistent=False)
        return half.train(norm.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) % 2:  # an evaluation batch: not part of the comparison
            return super().forward(x)
        first, second = x.chunk(2)
        if self.training:
            self.second_mean.copy_(self.running_mean)
            self.second_var.copy_(self.running_var)
        second = F.batch_norm(
            second,
            self.second_mean,
            self.second_var,
            self.weight,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )
        return torch.cat([super().forward(first), second])


def normalise_per_half(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, PerHalfBatchNorm.of(child))
        else:
            normalise_per_half(child)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def settings() -> tuple[FaderConfig, TrainConfig]:
    # Dropout off: each process draws its own masks, which no single process could reproduce.
    model = FaderConfig(
        attributes=["Smiling"], discriminator_dropout=0.0, **PRESETS["tiny"]["model"]
    )
    train = TrainConfig(
        steps=STEPS, batch_size=GLOBAL_BATCH, lambda_schedule=2, lambda_dis=0.5, device="cpu"
    )
    return model, train


def train_in_process(rank: int, cache: str, out: str, port: int) -> None:
    """One of the two processes (`mp.spawn` calls it with its rank), set up as torchrun does,
    ending as `python -m train` ends. A crash prints every thread's Python stack in the log."""
    faulthandler.enable()
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    processes = from_environment()
    start(processes, torch.device("cpu"))
    finished = False
    try:
        model, train = settings()
        Trainer(model, train, load_prepared(Path(cache)), Path(out), processes=processes).fit()
        finished = True
    finally:
        stop(together=finished)
    exit_program(0)


@pytest.fixture(scope="module")
def prepared(celeba_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = open_source(celeba_dir, None, None)
    return prepare(source, 32, tmp_path_factory.mktemp("cache"), workers=1).path


def parameters(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if "running" not in k and "num_batches" not in k}


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_two_processes_train_as_one_that_normalises_each_half_on_its_own(prepared, tmp_path):
    mp.spawn(train_in_process, args=(str(prepared), str(tmp_path / "two"), free_port()), nprocs=2)
    saved = load_file(str(tmp_path / "two" / CHECKPOINT_NAME))
    two = {name: parameters(module_state(saved, name)) for name in ("model", "discriminator")}

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two processes ran
    try:
        model_config, train = settings()
        data = load_prepared(prepared)
        reference = Trainer(model_config, train, data, tmp_path / "per-half")
        plain = Trainer(model_config, train, data, tmp_path / "plain")  # the same start
        weights = {
            "model": dict(reference.model.named_parameters()),
            "discriminator": dict(reference.discriminator.named_parameters()),
        }
        normalise_per_half(reference.model)
        normalise_per_half(reference.discriminator)
        reference.fit()
        plain.fit()
    finally:
        torch.set_num_threads(threads)

    for network, named in weights.items():
        per_half = {name: weight.detach() for name, weight in named.items()}
        assert largest_difference(two[network], per_half) < 1e-5, network
    whole_batch = parameters(plain.model.state_dict())
    assert largest_difference(two["model"], whole_batch) > 100 * 1e-5


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_a_process_of_several_ends_without_the_interpreters_shutdown(world_size: str):
    program = (
        "import atexit, sys\n"
        "from train.distributed import exit_program\n"
        "atexit.register(print, 'shut down')\n"
        "print('said', end='')\n"
        "print('warned', end='', file=sys.stderr)\n"
        "exit_program(3)\n"
    )
    environment = {**os.environ, "WORLD_SIZE": world_size, "RANK": str(int(world_size) - 1)}
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, env=environment
    )
    assert done.returncode == 3 and done.stderr.endswith("warned")
    assert done.stdout == ("said" if world_size == "2" else "saidshut down\n")


def torchrun(*flags: object, processes: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(processes), "-m", "train", *map(str, flags)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=environment
    )


def test_torchrun_trains_one_model_written_by_process_0_and_resumes_exactly(
    celeba_dir: Path, tmp_path: Path
):
    common = ["--data", celeba_dir, "--attrs", "Smiling", "--preset", "tiny", "--device", "cpu"]
    common += ["--batch-size", GLOBAL_BATCH, "--cache-dir", tmp_path / "cache", "--workers", 1]
    straight, split = tmp_path / "straight", tmp_path / "split"
    done = torchrun(*common, "--steps", 12, "--eval-every", 6, "--out", straight)
    assert done.returncode == 0, done.stderr
    log = (straight / "train.log").read_text()
    assert log.count("Training in 2 processes (gloo, BatchNorm each)") == 1
    assert log.count("step 6: validation MSE") == 1, "process 0 alone evaluates"
    assert log.count("Trained steps 6–12 at") == 1
    assert len(list((straight / "tensorboard").iterdir())) == 1, "one TensorBoard writer"
    config = FaderNetwork.from_pretrained(straight).config
    assert config.training["processes"] == 2 and config.training["batch_size"] == GLOBAL_BATCH
    assert "| `processes` | `2` |" in (straight / "README.md").read_text()
    checkpoint = load_file(str(straight / CHECKPOINT_NAME))
    assert not torch.equal(checkpoint["rng.torch"], checkpoint["rng.torch.1"])

    first = torchrun(*common, "--steps", 5, "--out", split)
    assert first.returncode == 0, first.stderr
    resumed = torchrun("--out", split, "--resume", "--steps", 12, "--eval-every", 6)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from step 5 of 12" in (split / "train.log").read_text()
    again = load_file(str(split / CHECKPOINT_NAME))
    assert again.keys() == checkpoint.keys()
    different = [k for k in checkpoint if not torch.equal(checkpoint[k], again[k])]
    assert not different, f"a resumed run differs from an uninterrupted one in {different[:5]}"


def test_ctrl_c_on_torchrun_saves_one_checkpoint_that_resumes(celeba_dir: Path, tmp_path: Path):
    """torchrun passes a Ctrl-C on to each process as SIGINT and SIGTERM at once: one request,
    honoured at the next reading of the losses, where the processes agree to stop."""
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
        "2", "-m", "train", "--data", str(celeba_dir), "--attrs", "Smiling", "--preset", "tiny",
        "--device", "cpu", "--batch-size", "8", "--steps", "100000", "--save-every", "100000",
        "--eval-every", "100000", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
        "--workers", "1"]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command, cwd=ROOT, stderr=stderr, stdout=subprocess.DEVNULL, env=environment
        )
        deadline = time.monotonic() + 180
        while not re.search(r"Training: .* (\d{2,})/100000", log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        process.wait(120)
    said = log.read_text()
    assert "[rank0]: Traceback" not in said and "[rank1]: Traceback" not in said, said
    assert said.count("Resume with: torchrun --nproc_per_node 2 -m train --out") == 1, said
    step, _ = read_checkpoint_info(out / CHECKPOINT_NAME)
    assert step >= 10 and step % 10 == 0, "stopped where the losses were read"
    resumed = torchrun("--out", out, "--resume", "--steps", step + 10)
    assert resumed.returncode == 0, resumed.stderr
    assert read_checkpoint_info(out / CHECKPOINT_NAME)[0] == step + 10


def test_a_global_batch_the_processes_cannot_share_evenly_is_refused_before_any_work(
    celeba_dir: Path, tmp_path: Path
):
    flags = ["--data", celeba_dir, "--attrs", "Smiling", "--preset", "tiny", "--device", "cpu"]
    flags += ["--cache-dir", tmp_path / "cache", "--out", tmp_path / "run"]
    refused = torchrun(*flags, "--batch-size", 7)
    assert refused.returncode != 0
    assert "--batch-size 7 is the global batch and must divide evenly among the 2" in refused.stderr
    refused = torchrun(*flags, "--n-ptc-dis", 1, "--lambda-ptc-dis", 0.01)
    assert "train in one process only" in refused.stderr
    assert not (tmp_path / "cache").exists(), "nothing was preprocessed"


def test_each_process_takes_its_share_of_the_one_global_batch(prepared):
    data = load_prepared(prepared)
    columns = data.attribute_columns(["Smiling"])
    stream = BatchStream(data, data.indices(TRAIN), columns, GLOBAL_BATCH, seed=4)
    halves = [
        BatchStream(data, data.indices(TRAIN), columns, GLOBAL_BATCH, 4, share=process.share(8))
        for process in (Processes(0, 2), Processes(1, 2))
    ]
    for step in (0, 3, 7):
        images, labels = stream.batch(step)
        shares = [half.batch(step) for half in halves]
        assert torch.equal(torch.cat([s[0] for s in shares]), images)
        assert torch.equal(torch.cat([s[1] for s in shares]), labels)


def test_batches_gathered_from_resident_images_are_the_ones_read_from_the_file(prepared):
    """What a CUDA run does with images kept on the GPU, checked on CPU tensors."""
    data = load_prepared(prepared)
    columns, rows = data.attribute_columns(["Smiling"]), data.indices(TRAIN)
    resident = torch.from_numpy(data.read_images(rows))
    from_file = BatchStream(data, rows, columns, GLOBAL_BATCH, seed=2)
    kept = BatchStream(data, rows, columns, GLOBAL_BATCH, 2, resident=resident)
    for step in range(6):
        images, labels = from_file.batch(step)
        assert torch.equal(kept.batch(step)[0], images)
        assert torch.equal(kept.batch(step)[1], labels)
    assert any(from_file.positions(step)[1].any() for step in range(6)), "flips were checked"
