"""Training throughput (images/s) of our step vs a straightforward PyTorch step, side by side.

The baseline is how the algorithm is usually first written: a separate batch for the latent
discriminator, encoded with autograd on (so its backward also runs through the encoder),
uint8→float conversion per batch, `zero_grad()` to zero tensors and Adam's default loop, NCHW,
PyTorch's own convolution modules. Ours is the step `python -m train` runs
(`train.loop.step_for_device`): one encoder pass shared by both updates, channels-last layout,
the tiny maps' convolutions as matrix products (`fader.conv`), fused Adam,
`zero_grad(set_to_none=True)`, freed activations kept in the heap (`fader.heap`); on CUDA also
bf16 autocast, TF32, cuDNN's autotuner and the whole step replayed as a CUDA graph
(`train.cuda_graph`). Each runs in a process of its own (so process-wide settings stay each
one's own); they step in turn, on the same data, so the ratio holds on a noisy machine. Each
step starts from a uint8 batch in CPU memory, as the data loader hands it over. Also reported:
the floating-point operations of one of our steps, and the fraction of the device's measured
matrix-product rate (float32 on CPU, bf16 on CUDA) they reach.
Prints one JSON object.

    python bench/train_throughput.py                 # paper and authors presets, batch 32, 256²
    python bench/train_throughput.py --device cuda --rounds 30
    python bench/train_throughput.py --presets tiny --batch-size 16 --rounds 5
"""

import argparse
import json
import multiprocessing
import platform
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fader.conv import DownConv, UpConv
from fader.heap import keep_freed_memory
from fader.model import (
    FaderConfig,
    FaderNetwork,
    LatentDiscriminator,
    attribute_channels,
    attribute_loss,
)
from train.config import PRESETS, TrainConfig
from train.loop import resolve_device, step_for_device
from train.step import adam, autocast_dtype, training_layout, use_fast_cuda_math


def baseline_step(
    model, discriminator, optimizers, dis_batch, ae_batch, lambda_dis, clip, device
) -> None:
    """A plain implementation: two encoder passes, one of them building an unused graph."""
    images, labels = dis_batch
    x, labels = (images.float() / 255 * 2 - 1).to(device), labels.to(device)
    loss = attribute_loss(discriminator(model.encode(x)), labels)
    optimizers["discriminator"].zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(discriminator.parameters(), clip)
    optimizers["discriminator"].step()

    images, labels = ae_batch
    x, labels = (images.float() / 255 * 2 - 1).to(device), labels.to(device)
    z = model.encode(x)
    loss = F.mse_loss(model.decode(z, attribute_channels(labels)), x)
    loss = loss + lambda_dis * attribute_loss(discriminator(z), 1 - labels)
    optimizers["autoencoder"].zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizers["autoencoder"].step()


def with_pytorch_convolutions(module: nn.Module) -> nn.Module:
    """The same network and weights, with nn.Conv2d / nn.ConvTranspose2d doing every convolution
    (what `fader.conv`'s modules extend): the straightforward implementation's layers."""
    for layer in module.modules():
        if isinstance(layer, DownConv | UpConv):
            layer.__class__ = layer.__class__.__base__
    return module


def networks(preset: str, n_attr: int = 2):
    torch.manual_seed(0)
    config = FaderConfig(attributes=[f"a{i}" for i in range(n_attr)], **PRESETS[preset]["model"])
    model, discriminator = FaderNetwork(config).train(), LatentDiscriminator(config).train()
    return config, model, discriminator


def random_batch(config: FaderConfig, batch_size: int, n_attr: int = 2):
    size = config.image_size
    images = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8)
    return images, torch.randint(0, 2, (batch_size, n_attr)).float()


def step_runner(
    name: str, preset: str, batch_size: int, device: torch.device
) -> Callable[[], None]:
    """One training step of implementation `name`, ready to call."""
    config, model, discriminator = networks(preset)
    ae_batch = random_batch(config, batch_size)
    if name == "baseline":
        model = with_pytorch_convolutions(model).to(device)
        discriminator = with_pytorch_convolutions(discriminator).to(device)
        optimizers = {
            "autoencoder": torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999)),
            "discriminator": torch.optim.Adam(
                discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999)
            ),
        }
        dis_batch = random_batch(config, batch_size)
        return lambda: baseline_step(
            model, discriminator, optimizers, dis_batch, ae_batch, 1e-4, 5.0, device
        )
    keep_freed_memory()  # as `python -m train` does at start
    model, discriminator = training_layout(model, device), training_layout(discriminator, device)
    train_config = TrainConfig()
    optimizers = {
        "autoencoder": adam(model, train_config),
        "discriminator": adam(discriminator, train_config),
    }
    if device.type == "cuda":
        ae_batch = tuple(t.pin_memory() for t in ae_batch)  # so the copy can run ahead

    train_step = step_for_device(model, discriminator, optimizers, 5.0, device)
    return lambda: train_step(*(t.to(device, non_blocking=True) for t in ae_batch), 1e-4)


def serve_steps(
    name: str, preset: str, batch_size: int, device: str, connection: Connection
) -> None:
    """A worker process: time one step each time the parent asks, until it sends None.

    Our worker first counts one step's floating-point operations and sends them."""
    device = torch.device(device)
    run = step_runner(name, preset, batch_size, device)
    if name == "fader":  # counted on an eager step: a CUDA graph's replay runs no operators
        with FlopCounterMode(display=False) as flops:
            run()
        connection.send(flops.get_total_flops())
    for _ in range(4):  # warm-up: allocator, oneDNN kernels, cuDNN's autotuner, graph capture
        run()
    connection.send("ready")
    while connection.recv() is not None:
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        connection.send(time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matrix_rate(device: torch.device) -> dict:
    """The device's measured matrix-product rate in the precision our step computes in."""
    dtype = autocast_dtype(device) or torch.float32
    n = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    seconds = []
    for _ in range(13):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    rate = 2 * n**3 / statistics.median(seconds[3:])
    return {"dtype": str(dtype).removeprefix("torch."), "size": n, "tflop_per_s": rate / 1e12}


def measure(preset: str, batch_size: int, rounds: int, device: torch.device) -> dict:
    """Both implementations in processes of their own (each with its own process settings),
    stepping in turn so that only one computes at a time."""
    context = multiprocessing.get_context("spawn")
    workers = {}
    for name in ("baseline", "fader"):
        parent, child = context.Pipe()
        process = context.Process(
            target=serve_steps, args=(name, preset, batch_size, str(device), child)
        )
        process.start()
        workers[name] = (process, parent)
    flop_per_step = workers["fader"][1].recv()
    for _, connection in workers.values():
        connection.recv()
    seconds: dict[str, list[float]] = {name: [] for name in workers}
    for _ in range(rounds):
        for name, (_, connection) in workers.items():
            connection.send("step")
            seconds[name].append(connection.recv())
    for process, connection in workers.values():
        connection.send(None)
        process.join()
    result = {f"{name}_img_per_s": batch_size / statistics.median(t) for name, t in seconds.items()}
    result["speedup"] = result["fader_img_per_s"] / result["baseline_img_per_s"]
    result["fader_gflop_per_step"] = flop_per_step / 1e9
    result["fader_tflop_per_s"] = flop_per_step / statistics.median(seconds["fader"]) / 1e12
    result["seconds_per_step"] = {name: [round(t, 4) for t in ts] for name, ts in seconds.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--presets", nargs="+", default=["paper", "authors"], choices=sorted(PRESETS)
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="timed steps per implementation")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    use_fast_cuda_math(device)  # for the matrix rate; our worker's step sets its own
    rate = matrix_rate(device)
    report = {
        "benchmark": "train_throughput",
        "batch_size": args.batch_size,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "machine": platform.processor() or platform.machine(),
        "matrix_rate": rate,
        "presets": {},
    }
    for preset in args.presets:
        result = measure(preset, args.batch_size, args.rounds, device)
        result["fraction_of_matrix_rate"] = result["fader_tflop_per_s"] / rate["tflop_per_s"]
        report["presets"][preset] = {
            "image_size": PRESETS[preset]["model"]["image_size"],
            **result,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
