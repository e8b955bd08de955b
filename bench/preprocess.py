"""Preprocessing throughput (images/s) and peak memory of training against the cache's size.

1. Throughput: a synthetic CelebA folder (178×218 JPEGs, the real layout and label files) is
   decoded, centre-cropped and resized into the uint8 cache by `train.data.prepare`, once with
   one process and once with every core, each into a fresh cache.
2. Memory: `python -m train` runs the same number of steps on caches of two sizes (2,000 and
   20,000 images by default) in a child process whose memory is sampled from /proc. The cache
   is memory-mapped, so the anonymous memory (what the process owns: tensors, batches) must not
   depend on the cache's size; file-backed pages are the kernel's page cache, counted in RSS
   only while mapped and dropped whenever memory is needed.

Prints one JSON object.

    python bench/preprocess.py                            # 2,000 images; memory at 2k and 20k
    python bench/preprocess.py --images 500 --memory-images 500 2000 --memory-steps 5
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.builders import make_celeba  # noqa: E402 — the CelebA layout the tests train on
from train.data import prepare  # noqa: E402
from train.sources import open_source  # noqa: E402

MEMORY_FIELDS = ("VmRSS", "RssAnon", "RssFile")


def throughput(data: Path, size: int, workers: int, cache: Path) -> dict:
    source = open_source(data)
    start = time.perf_counter()
    prepared = prepare(source, size, cache_dir=cache, workers=workers)
    seconds = time.perf_counter() - start
    return {
        "workers": workers,
        "images": len(prepared.images),
        "seconds": round(seconds, 2),
        "img_per_s": round(len(prepared.images) / seconds, 1),
    }


def memory_mb(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {
        field: int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024
        for field in MEMORY_FIELDS
    }


def peak_memory_of_training(data: Path, cache: Path, size: int, steps: int, out: Path) -> dict:
    """Peaks of RSS and its anonymous and file-backed parts over a training run, in MB."""
    command = [
        sys.executable, "-m", "train", "--data", str(data), "--attrs", "Smiling",
        "--preset", "tiny", "--image-size", str(size), "--steps", str(steps),
        "--eval-every", str(steps), "--save-every", str(steps), "--cache-dir", str(cache),
        "--out", str(out),
    ]  # fmt: skip
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks = dict.fromkeys(MEMORY_FIELDS, 0.0)

    def sample() -> None:
        while child.poll() is None:
            try:
                for field, value in memory_mb(child.pid).items():
                    peaks[field] = max(peaks[field], value)
            except (FileNotFoundError, ProcessLookupError, AttributeError):
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, errors = child.communicate()
    sampler.join()
    if child.returncode:
        raise RuntimeError(f"Training failed:\n{errors.decode()[-2000:]}")
    return {f"peak_{field}_mb": round(value, 1) for field, value in peaks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000, help="JPEGs for the throughput run")
    parser.add_argument("--size", type=int, default=256, help="cache image size (throughput)")
    parser.add_argument("--memory-images", type=int, nargs=2, default=[2000, 20000])
    parser.add_argument("--memory-size", type=int, default=128, help="cache image size (memory)")
    parser.add_argument("--memory-steps", type=int, default=30, help="training steps per run")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    report: dict = {
        "benchmark": "preprocess",
        "machine": platform.processor() or platform.machine(),
        "cores": cores,
        "image": "178x218 JPEG (CelebA layout)",
        "size": args.size,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        data = make_celeba(tmp_path / f"celeba{args.images}", n=args.images)
        report["throughput"] = [
            throughput(data, args.size, workers, tmp_path / f"cache-{workers}")
            for workers in sorted({1, cores})
        ]
        memory = {}
        for n in args.memory_images:
            folder = make_celeba(tmp_path / f"memory{n}", n=n)
            cache = tmp_path / f"memory-cache{n}"
            prepare(open_source(folder), args.memory_size, cache_dir=cache)
            cache_bytes = sum(f.stat().st_size for f in cache.rglob("images.npy"))
            memory[str(n)] = {
                "cache_mb": round(cache_bytes / 2**20, 1),
                **peak_memory_of_training(
                    folder, cache, args.memory_size, args.memory_steps, tmp_path / f"run{n}"
                ),
            }
        report["training_memory"] = {
            "image_size": args.memory_size,
            "steps": args.memory_steps,
            "batch_size": 16,
            "by_cache_images": memory,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
