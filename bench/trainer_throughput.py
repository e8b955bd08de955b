"""Throughput (images/s) of the trainer itself, `python -m train`, beside the step it runs.

`bench/train_throughput.py` times the training step alone, on one batch already in memory. A
real run also reads and flips batches from the cache, logs losses, writes TensorBoard scalars,
evaluates and checkpoints. This benchmark runs `python -m train` on a CelebA-layout dataset on
disk for a fixed number of steps and reads the trainer's own figure from its train.log:

    Trained steps A–B at R images/s

(the wall time of the loop after its first few warm-up steps, evaluations and checkpoints
along the way included), from --repeats runs (the median). Beside them, in the same run, the
step benchmark's worker (ours, not the baseline) times single steps at the same preset and
batch size, --rounds of them before each training run and after the last, so that both sample
the machine over the same stretch of time. `ratio`, the share of the step's speed that the
trainer keeps, is the median over the runs of each run's figure against the steps timed just
before and after it (the step's median seconds).

The dataset: `tests.builders.make_celeba` (178×218 JPEGs drawn with the attributes they are
labelled with, CelebA's attribute and partition files; always the same images for a given
count), made once into --work and reused. Preprocessing is done once beforehand
(`train.data.prepare`, in this process), into the cache the trainer's --cache-dir points at, so
the timed run only reads the cache; its log must say it did.

Evaluations and checkpoints: the trainer's own intervals (an evaluation of 512 validation
images every 2,000 steps, a checkpoint every 10,000), so a run of N steps pays inside its timed
steps just what a default run pays in its first N. A run shorter than 2,000 steps therefore
pays none there: its one evaluation and checkpoint come at its end, after the trainer's last
reading of the clock. Scaling the intervals down to fit a short run would charge their fixed
costs (a sample grid written as two PNGs, a whole checkpoint: 220 MB for the paper preset) tens
of times over. What a checkpoint costs is read from train.log's timestamps (between the final
evaluation's line and the trainer's figure): `final_checkpoint_s`, and `checkpoint_share`, its
share of a default run's time at the measured rate (one per 10,000 steps). On CPU an evaluation
(a few seconds) every 2,000 steps (~1,000 s here) is well under 1% of the time; on a GPU,
--steps 2001 puts one inside the timed steps (the validation split holds 10% of --images).

Defaults: on CPU the paper preset at batch 32, three runs of 20 steps (15 timed after the
trainer's 5 warm-up steps; about 0.5 s a step on 2 cores, so about 30 s a run with its start,
final evaluation and checkpoint, and a few minutes in all with the dataset made and prepared
the first time). `tiny` (32×32, 8 ms steps) measures mostly the per-step costs around the step
and says little about a real run. On CUDA three runs of 300 steps.

Prints one JSON object (and writes it to --json PATH).

    python bench/trainer_throughput.py                                  # CPU: paper, batch 32
    python bench/trainer_throughput.py --device cuda \\
        --json bench/results/trainer_throughput_h200.json
    python bench/trainer_throughput.py --preset tiny --batch-size 16 --steps 200 --images 500
    python bench/trainer_throughput.py --device cuda --processes 2    # torchrun on 2 GPUs

With --processes N the trainer runs through torchrun (one process per GPU, on CPU N processes
sharing the cores at one thread each); the step beside it stays one process's, so on N GPUs the
ideal ratio is N.
"""

import argparse
import json
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.train_throughput import serve_steps  # noqa: E402
from tests.builders import make_celeba  # noqa: E402 — the CelebA layout the tests train on
from train.config import PRESETS, TrainConfig  # noqa: E402
from train.data import prepare  # noqa: E402
from train.loop import resolve_device  # noqa: E402
from train.sources import open_source  # noqa: E402

TRAINED_LINE = re.compile(r"Trained steps (\d+)–(\d+) at ([\d.]+) images/s")
EVALUATED_LINE = re.compile(r"step (\d+): validation MSE")
LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"  # logging's asctime, the start of every train.log line
DEFAULTS = {  # per device type: training steps, and step-benchmark steps around each run
    "cpu": {"steps": 20, "rounds": 4},
    "cuda": {"steps": 300, "rounds": 30},
}


def benchmark_dataset(work: Path, images: int) -> Path:
    """A CelebA-layout folder of `images` JPEGs under `work`, made on first use.

    It is built in a folder of its own and renamed into place when complete, so an interrupted
    build is never taken for a dataset."""
    folder = work / f"celeba-{images}"
    if not folder.is_dir():
        building = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=work))
        try:
            make_celeba(building / "data", n=images)
            (building / "data").rename(folder)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return folder


def train_command(
    args: argparse.Namespace, data: Path, cache: Path, out: Path, device: torch.device
) -> list[str]:
    launcher = [sys.executable]  # `--processes N`: through torchrun, as a user with N GPUs runs it
    if args.processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone"]
        launcher += ["--nproc_per_node", str(args.processes)]
    return [
        *launcher, "-m", "train", "--data", str(data), "--attrs", "Smiling", "Male",
        "--preset", args.preset, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
        "--device", str(device), "--cache-dir", str(cache), "--out", str(out),
    ]  # fmt: skip


def run_trainer(command: list[str], out: Path) -> dict:
    """Run `python -m train`; its figure from train.log, and the process's own wall time."""
    environment = {**os.environ, "FADER_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    print("Training:", " ".join(command), file=sys.stderr)
    start = time.perf_counter()
    finished = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if finished.returncode:
        raise RuntimeError(
            f"python -m train exited with {finished.returncode}:\n{finished.stderr[-3000:]}"
        )
    log = (out / "train.log").read_text()
    return {**read_train_log(log), "process_s": round(wall, 2)}


def read_train_log(log: str) -> dict:
    """The trainer's figure, and how long its final checkpoint took, from train.log's text."""
    if "Using the preprocessed cache" not in log:
        raise RuntimeError("The timed run built its cache instead of reusing the prepared one.")
    trained = TRAINED_LINE.search(log)
    if trained is None:
        raise RuntimeError(
            "train.log has no 'Trained steps A–B at R images/s' line: this version of "
            "train/loop.py does not report its throughput, or --steps is within its warm-up."
        )
    first, last, rate = int(trained[1]), int(trained[2]), float(trained[3])
    lines = log.splitlines()
    ended = next(i for i, line in enumerate(lines) if TRAINED_LINE.search(line))
    evaluated = [line for line in lines[:ended] if EVALUATED_LINE.search(line)]
    checkpoint = (
        (log_time(lines[ended]) - log_time(evaluated[-1])).total_seconds() if evaluated else None
    )
    return {
        "timed_steps": [first, last],
        "img_per_s": rate,
        "final_checkpoint_s": checkpoint,
    }


def checkpoint_share(seconds: float, rate: float, batch_size: int) -> float:
    """The share of a default run's time its checkpoints take: one of `seconds` after every
    `save_every` steps at `rate` images/s."""
    between = TrainConfig().save_every * batch_size / rate
    return seconds / (between + seconds)


def log_time(line: str) -> datetime:
    return datetime.strptime(line[:23], LOG_TIME)


class StepWorker:
    """The step benchmark's worker for our step (`bench.train_throughput.serve_steps`), kept
    warm while the training runs go on."""

    def __init__(self, preset: str, batch_size: int, device: str):
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=serve_steps, args=("fader", preset, batch_size, device, child)
        )
        self.process.start()
        try:
            self.flop_per_step = self.connection.recv()
            self.connection.recv()  # "ready": warmed up
        except EOFError:
            raise RuntimeError("The step benchmark's worker failed: see above.") from None

    def time_steps(self, n: int) -> list[float]:
        """The seconds of `n` steps, one by one."""
        seconds = []
        for _ in range(n):
            self.connection.send("step")
            seconds.append(self.connection.recv())
        return seconds

    def close(self) -> None:
        self.connection.send(None)
        self.process.join()


def machine(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = names[0] if names else cpu
    facts = {
        "torch": torch.__version__,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


def benchmark(args: argparse.Namespace, device: torch.device, work: Path) -> dict:
    data = benchmark_dataset(work, args.images)
    cache = work / "cache"
    image_size = PRESETS[args.preset]["model"]["image_size"]
    prepare(open_source(data), image_size, cache)  # the timed runs must only read it
    worker = StepWorker(args.preset, args.batch_size, str(device))
    runs = []
    try:
        around = [worker.time_steps(args.rounds)]  # step seconds before each run, after the last
        for _ in range(args.repeats):
            runs.append(train_once(args, data, cache, work, device))
            around.append(worker.time_steps(args.rounds))
    finally:
        worker.close()
    for run, before, after in zip(runs, around, around[1:], strict=False):
        run["step_img_per_s"] = args.batch_size / statistics.median(before + after)
        run["ratio"] = run["img_per_s"] / run["step_img_per_s"]
    trainer_rate = statistics.median(run["img_per_s"] for run in runs)
    step_rate = args.batch_size / statistics.median(t for steps in around for t in steps)
    checkpoints = [run["final_checkpoint_s"] for run in runs if run["final_checkpoint_s"]]
    checkpoint = statistics.median(checkpoints) if checkpoints else None
    share = checkpoint_share(checkpoint, trainer_rate, args.batch_size) if checkpoint else None
    command = train_command(args, data, cache, Path("RUN"), device)
    return {
        "benchmark": "trainer_throughput",
        "device": str(device),
        "preset": args.preset,
        "batch_size": args.batch_size,
        "processes": args.processes,
        "steps": args.steps,
        "images": args.images,
        "trainer_img_per_s": trainer_rate,
        "step_img_per_s": step_rate,
        "ratio": statistics.median(run["ratio"] for run in runs),
        "final_checkpoint_s": checkpoint,
        "checkpoint_share": share,
        "trainer_runs": runs,
        "step_seconds": [[round(t, 4) for t in steps] for steps in around],
        "step_gflop": worker.flop_per_step / 1e9,
        "machine": machine(device),
        "command": " ".join(["python", *command[1:]]),
    }


def train_once(
    args: argparse.Namespace, data: Path, cache: Path, work: Path, device: torch.device
) -> dict:
    out = Path(tempfile.mkdtemp(prefix="run.", dir=work))
    try:
        return run_trainer(train_command(args, data, cache, out, device), out)
    finally:
        shutil.rmtree(out)  # a checkpoint of hundreds of MB, each run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--steps", type=int, help="training steps per run (default: 20 on CPU, 300 on CUDA)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="step-benchmark steps timed before each training run and after the last "
        "(default: 4 on CPU, 30 on CUDA)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="training runs; their median is reported (3)"
    )
    parser.add_argument("--images", type=int, default=3000, help="JPEGs in the dataset (3000)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "fader-trainer-throughput",
        help="where the dataset and its cache are kept between runs (default: in the temp dir)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="train in N processes through torchrun (one per GPU; on CPU they share the cores, "
        "one thread each); the step beside it is one process's (default 1)",
    )
    parser.add_argument("--json", type=Path, help="also write the JSON object here")
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> None:
    """Refuse settings that would fail later, after minutes of work."""
    if args.images < 100:
        raise ValueError(f"--images must be at least 100 (10% are validation); got {args.images}.")
    if min(args.batch_size, args.steps, args.rounds, args.repeats, args.processes) < 1:
        raise ValueError(
            "--batch-size, --steps, --rounds, --repeats and --processes must be at least 1."
        )
    if args.batch_size % args.processes:
        raise ValueError("--batch-size is the global batch: make it a multiple of --processes.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device)
        if device.type not in DEFAULTS:
            raise ValueError(f"--device {args.device}: this benchmark runs on cpu or cuda.")
        for name, value in DEFAULTS[device.type].items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        check(args)
        args.work.mkdir(parents=True, exist_ok=True)
        report = benchmark(args, device, args.work)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        partial = args.json.with_name(args.json.name + ".tmp")
        partial.write_text(text + "\n")
        partial.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
