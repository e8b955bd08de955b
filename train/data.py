"""Decode every image once into a uint8 cache on disk, then read only the rows each batch needs.

The cache is `images.npy` (N×3×S×S uint8). Training reads rows with `pread`, so the memory a run
holds does not grow with the dataset: only the batch being assembled is ever in the process; the
file's pages stay in the kernel's page cache, which the kernel frees whenever memory is needed.
"""

import hashlib
import itertools
import json
import logging
import os
import queue
import re
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from fader.photo import centre_square, load_photo
from train.config import default_cache_dir
from train.hub_datasets import ParquetImage, parquet_images
from train.sources import EXCLUDED, Source
from train.staging import remove_abandoned, staging_folder

CACHE_VERSION = 1
log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    # N×3×S×S uint8: a memory map of images.npy, used for its shape, file name and data offset;
    # rows are read with `read_images` (pread), never through the map.
    images: np.memmap
    labels: np.ndarray  # N×A float32
    attributes: list[str]
    split: np.ndarray  # N int8
    skipped: int
    path: Path
    # channels a model reads: 1 keeps the first of the cache's three, which grayscale data
    # (`is_grayscale`) holds three equal copies of
    channels: int = 3

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """C×S×S of one image as `read_images` returns it."""
        return (self.channels, *self.images.shape[2:])

    def is_grayscale(self, sample: int = 512) -> bool:
        """Whether the images (up to `sample` of them, spread over the file) have three equal
        channels, as grayscale sources decoded to RGB do: such data trains a 1-channel model."""
        rows = np.unique(np.linspace(0, len(self.images) - 1, min(sample, len(self.images))))
        rgb = replace(self, channels=3).read_images(rows.astype(np.int64))
        return bool((rgb[:, 0] == rgb[:, 1]).all() and (rgb[:, 1] == rgb[:, 2]).all())

    def background(self, sample: int = 512) -> str | None:
        """ "dark" or "light" when the images' edges (up to `sample` images, spread over the
        file) are mostly one or the other, as digits on black are; None for photos. The app
        then inverts a picture with the other background (a digit drawn on paper)."""
        rows = np.unique(np.linspace(0, len(self.images) - 1, min(sample, len(self.images))))
        images = self.read_images(rows.astype(np.int64)).astype(np.float32).mean(1)
        edges = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
        median = float(np.median(edges))
        return "dark" if median < 64 else "light" if median > 191 else None

    def indices(self, *splits: int) -> np.ndarray:
        """Rows in any of `splits` (TRAIN, VALIDATION, TEST), in file order."""
        return np.flatnonzero(np.isin(self.split, splits))

    def attribute_columns(self, names: list[str]) -> np.ndarray:
        return np.asarray([self.attributes.index(name) for name in names])

    def for_model(
        self, attributes: list[str], categories: dict[str, list[str]]
    ) -> tuple["PreparedData", int]:
        """The data as a model with these attributes reads it, and how many rows it leaves out.

        Labels become one value per model attribute: a binary one's 0/1, and for one with
        several values (`categories`) the index of the value whose attribute is on. A row with
        none or more than one of them on has no such value and is left out of every split.
        """
        labels = np.empty((len(self.labels), len(attributes)), dtype=np.float32)
        usable = np.ones(len(self.labels), dtype=bool)
        for i, name in enumerate(attributes):
            if name not in categories:
                labels[:, i] = self.labels[:, self.attributes.index(name)]
                continue
            on = self.labels[:, self.attribute_columns(categories[name])] > 0.5
            usable &= on.sum(1) == 1
            labels[:, i] = on.argmax(1)
        split = np.where(usable, self.split, EXCLUDED).astype(np.int8)
        grouped = replace(self, labels=labels, attributes=list(attributes), split=split)
        return grouped, int((~usable).sum())

    def read_images(self, rows: np.ndarray) -> np.ndarray:
        """The images at `rows` (B×C×S×S uint8, C = `channels`), read from the file rather than
        the memory map.

        Pages touched through a memory map count in the process's RSS, and the kernel maps them
        in folios of up to 2 MB, so reading a few rows at random through `images` grew RSS with
        the dataset (by 255 MB over 30 batches of a 375 MB cache). `pread` copies just the rows.
        """
        out = np.empty((len(rows), *self.images.shape[1:]), dtype=np.uint8)
        row_bytes = out[0].nbytes if len(rows) else 0
        with open(self.images.filename, "rb", buffering=0) as file:
            for slot, row in enumerate(rows):
                offset = self.images.offset + int(row) * row_bytes
                if os.preadv(file.fileno(), [out[slot]], offset) != row_bytes:
                    raise ValueError(f"{self.images.filename} is truncated: rebuild the cache.")
        return out if self.channels == 3 else np.ascontiguousarray(out[:, : self.channels])


def as_channels(data: PreparedData, channels: int | None) -> PreparedData:
    """The data as a network with `channels` image channels reads it; None picks from the data:
    1 for grayscale images (digits), else 3, so a grayscale dataset trains a grayscale model."""
    if channels is None:
        channels = 1 if data.is_grayscale() else 3
    if channels not in (1, 3):
        raise ValueError(f"--image-channels must be 1 (grayscale) or 3 (RGB), not {channels}.")
    return replace(data, channels=channels)


def load_training_image(path: Path | bytes | None, size: int, align: bool) -> np.ndarray | str:
    """One image (a file, or the encoded bytes a Hub dataset holds) as 3×size×size uint8, or
    the reason it was skipped (runs in worker processes).

    Decoding goes through `fader.photo.load_photo`, as in the app, so training and inference
    read EXIF orientation, transparency and 16-bit images the same way.
    """
    if path is None:
        return "no image in this row"
    try:
        image = load_photo(path, min_side=1)
        if align:
            # Only for --align: it loads OpenCV and a landmark backend, which need system
            # libraries (libGL) and model files that plain centre crops do not.
            from fader.align import align_for_training

            pixels = align_for_training(image, size)
            if pixels is None:
                return "no face found"
        else:
            pixels = np.asarray(centre_square(image, size))
    except (OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}"
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def cache_key(source: Source, size: int, align: bool) -> str:
    """Changes whenever the files, their labels or the preparation change."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, size, align, source.attributes]).encode())
    stats: dict[Path, os.stat_result | None] = {}
    for item in source.files:
        file = item.file if isinstance(item, ParquetImage) else item
        if file not in stats:
            stats[file] = file.stat() if file.exists() else None
        stat = stats[file]
        digest.update(f"{item}|{stat and stat.st_size}|{stat and stat.st_mtime_ns}\n".encode())
    digest.update(source.labels.tobytes())
    digest.update(source.split.tobytes())
    return digest.hexdigest()[:16]


def prepare(
    source: Source,
    size: int,
    cache_dir: Path | None = None,
    workers: int | None = None,
    align: bool = False,
) -> PreparedData:
    """Return the cached arrays for `source`, building them (once) if needed."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    named = re.sub(r"[^A-Za-z0-9_.]+", "-", source.dataset or source.layout)  # hf:a/b → hf-a-b
    name = f"{named}-{size}{'-aligned' if align else ''}"
    target = cache_dir / f"{name}-{cache_key(source, size, align)}"
    remove_abandoned(cache_dir)
    if (target / "meta.json").is_file():
        log.info("Using the preprocessed cache %s", target)
        return load_prepared(target)
    building = staging_folder(cache_dir, target.name)
    try:
        build_cache(source, size, building, workers or os.cpu_count() or 1, align)
        shutil.rmtree(target, ignore_errors=True)
        building.rename(target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return load_prepared(target)


def build_cache(source: Source, size: int, folder: Path, workers: int, align: bool) -> None:
    """Decode all images into `folder`; unreadable ones are skipped, counted and named.

    Rows are appended with plain writes, not through a memory map, for the reason given in
    `PreparedData.read_images`: preparing 20,000 images must not need 20,000 images of RAM.
    """
    n = len(source.files)
    row_shape = (3, size, size)
    kept: list[int] = []
    skipped: list[str] = []
    load = partial(load_training_image, size=size, align=align)
    with (
        open(folder / "staging.npy", "wb") as staging,
        tqdm(total=n, desc="Preprocessing images", unit="img") as progress,
    ):
        write_npy_header(staging, (n, *row_shape))
        images = image_inputs(source.files)
        for index, result in enumerate(parallel_map(load, images, n, workers)):
            if isinstance(result, str):
                skipped.append(f"{source.files[index].name}: {result}")
            else:
                staging.write(result.data)
                kept.append(index)
            progress.update()
    if not kept:
        raise ValueError(f"None of the {n} images could be read, e.g. {skipped[0]}.")
    if skipped:
        compact_rows(folder / "staging.npy", folder / "images.npy", len(kept))
        log.warning("Skipped %d unreadable image(s), e.g. %s", len(skipped), skipped[0])
    else:
        (folder / "staging.npy").rename(folder / "images.npy")
    np.save(folder / "labels.npy", source.labels[kept])
    np.save(folder / "split.npy", source.split[kept])
    meta = {"attributes": source.attributes, "skipped": len(skipped), "skipped_files": skipped[:50]}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def write_npy_header(file: BinaryIO, shape: tuple[int, ...]) -> None:
    """The .npy header of a C-ordered uint8 array of `shape`; the rows follow it."""
    header = {"descr": np.dtype(np.uint8).str, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(file, header)


def image_inputs(files: list[Path | ParquetImage]) -> Iterator[Path | bytes | None]:
    """What `load_training_image` reads for each of `files`: the path of a file, the encoded
    bytes of a parquet row (streamed, a few hundred rows at a time)."""
    for is_parquet, group in itertools.groupby(files, key=lambda f: isinstance(f, ParquetImage)):
        rows = list(group)
        yield from parquet_images(rows) if is_parquet else rows


def parallel_map(fn: Callable, items: Iterable, n: int, workers: int) -> Iterator:
    """`map` over `n` items in order, over processes when there is more than one worker to use.

    Items go to the pool a window at a time: `Executor.map` takes all of its input at once,
    and a Hub dataset's items are its encoded images (for CelebA, gigabytes).
    """
    if workers <= 1 or n < 64:
        yield from map(fn, items)
        return
    items = iter(items)
    with ProcessPoolExecutor(workers) as pool:
        while window := list(itertools.islice(items, 4096)):
            yield from pool.map(fn, window, chunksize=32)


def compact_rows(staging: Path, final: Path, n_rows: int) -> None:
    """Copy the first `n_rows` into an .npy of the right length, in 64 MB chunks."""
    with open(staging, "rb") as reader, open(final, "wb") as writer:
        np.lib.format.read_magic(reader)
        shape, _, _ = np.lib.format.read_array_header_1_0(reader)
        write_npy_header(writer, (n_rows, *shape[1:]))
        remaining = n_rows * int(np.prod(shape[1:]))
        while remaining:
            chunk = reader.read(min(remaining, 64 * 2**20))
            if not chunk:
                raise ValueError(f"{staging} ended early: the disk may be full; run again.")
            writer.write(chunk)
            remaining -= len(chunk)
    staging.unlink()


def load_prepared(folder: Path) -> PreparedData:
    meta = json.loads((folder / "meta.json").read_text())
    return PreparedData(
        images=np.load(folder / "images.npy", mmap_mode="r"),
        labels=np.load(folder / "labels.npy"),
        attributes=meta["attributes"],
        split=np.load(folder / "split.npy"),
        skipped=meta["skipped"],
        path=folder,
    )


def held_out_batches(
    data: PreparedData, indices: np.ndarray, columns: np.ndarray, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The rows `indices` in order, as (uint8 images, labels of `columns`) batches."""
    for start in range(0, len(indices), batch_size):
        rows = indices[start : start + batch_size]
        images = torch.from_numpy(data.read_images(rows))
        yield images, torch.from_numpy(data.labels[rows][:, columns])


def resident_images(
    data: PreparedData, indices: np.ndarray, device: torch.device, progress: bool = True
) -> torch.Tensor | None:
    """The images at `indices` copied once onto the GPU `device`, when they take at most half of
    its free memory (the rest is the step's); None otherwise, or off CUDA.

    A step then gathers its batch there: no host thread, no copy per step, nothing for the GPU
    to wait on. CelebA at 256² is 40 GB, which an 80 GB H100 or a 141 GB H200 holds. Off the GPU
    the batches keep being read from the file, so a CPU run's memory stays what it was.
    `progress`: a progress bar while copying (process 0's, with several).
    """
    if device.type != "cuda" or not len(indices):
        return None
    row_bytes = int(np.prod(data.image_shape))
    free, _ = torch.cuda.mem_get_info(device)
    needed = len(indices) * row_bytes
    if needed > free // 2:
        log.info(
            "Training images read from disk for each batch: their %.1f GB would take more than "
            "half of the GPU's %.1f GB free.",
            needed / 1e9,
            free / 1e9,
        )
        return None
    images = torch.empty((len(indices), *data.image_shape), dtype=torch.uint8, device=device)
    chunk = max(1, 2**28 // row_bytes)  # 256 MB at a time through pinned memory
    copying = tqdm(
        total=len(indices),
        desc="Copying training images to the GPU",
        unit="img",
        disable=not progress,
    )
    with copying as bar:
        for start in range(0, len(indices), chunk):
            rows = indices[start : start + chunk]
            host = torch.from_numpy(data.read_images(rows)).pin_memory()
            images[start : start + len(rows)].copy_(host)
            bar.update(len(rows))
    log.info("Training images kept on %s (%.1f GB).", device, needed / 1e9)
    return images


class BatchStream:
    """Random training batches whose content depends only on (seed, step).

    Stateless sampling means a resumed run sees exactly the batches an uninterrupted run would:
    each epoch is a permutation seeded by (seed, epoch); flips by (seed, step). With several
    processes each builds the same global batch and keeps its `share` of the rows. Batches come
    from `resident` images on the GPU (`resident_images`) when given, else from the file, built
    by a thread while the current step computes.
    """

    def __init__(
        self,
        data: PreparedData,
        indices: np.ndarray,
        attribute_columns: np.ndarray,
        batch_size: int,
        seed: int,
        flip: bool = True,
        share: slice = slice(None),
        resident: torch.Tensor | None = None,
    ):
        if len(indices) == 0:
            raise ValueError("The training split is empty: add images.")
        self.data, self.indices, self.columns = data, indices, attribute_columns
        self.batch_size, self.seed, self.flip = batch_size, seed, flip
        self.share, self.resident = share, resident
        self.batches_per_epoch = max(1, len(indices) // batch_size)
        self.epoch_order: tuple[int, torch.Tensor] | None = None

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's permutation, drawn once per epoch (for CelebA, 1–2 ms of every step)."""
        if self.epoch_order is None or self.epoch_order[0] != epoch:
            generator = seeded(self.seed, epoch)
            self.epoch_order = (epoch, torch.randperm(len(self.indices), generator=generator))
        return self.epoch_order[1]

    def positions(self, step: int) -> tuple[np.ndarray, torch.Tensor]:
        """Where this process's rows of `step`'s global batch are in `indices`, in file order,
        and which of them are mirrored."""
        epoch, position = divmod(step, self.batches_per_epoch)
        if len(self.indices) < self.batch_size:
            chosen = torch.randint(
                len(self.indices), (self.batch_size,), generator=seeded(self.seed, epoch)
            )
        else:
            start = position * self.batch_size
            chosen = self.order(epoch)[start : start + self.batch_size]
        positions = np.sort(chosen.numpy())  # indices are sorted: so are the rows
        mirrored = torch.zeros(len(positions), dtype=torch.bool)
        if self.flip:
            mirrored = torch.rand(len(positions), generator=seeded(self.seed, step, 1)) < 0.5
        return positions[self.share], mirrored[self.share]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images B×C×S×S (flipped at random) and float 0/1 labels B×A for `step`, on the
        resident images' device, or in host memory."""
        positions, mirrored = self.positions(step)
        rows = self.indices[positions]
        labels = torch.from_numpy(self.data.labels[rows][:, self.columns])
        if self.resident is not None:
            device = self.resident.device
            images = self.resident[torch.from_numpy(positions).to(device)]
            mirrored = mirrored.to(device).view(-1, 1, 1, 1)
            return torch.where(mirrored, images.flip(-1), images), labels.to(device)
        images = torch.from_numpy(self.data.read_images(rows))
        images[mirrored] = images[mirrored].flip(-1)
        return images, labels

    def batches(
        self, start: int, stop: int, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of steps start…stop-1 on `device`: gathered there from resident images,
        or read ahead by a thread (into pinned memory, for CUDA: the copy then overlaps)."""
        if self.resident is not None:
            return (self.batch(step) for step in range(start, stop))
        pin = device.type == "cuda"
        return (
            (images.to(device, non_blocking=True), labels.to(device, non_blocking=True))
            for images, labels in self.prefetch(start, stop, pin=pin)
        )

    def prefetch(
        self, start: int, stop: int, depth: int = 3, pin: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches for steps start…stop-1, built `depth` ahead in a background thread (in pinned
        memory with `pin`)."""
        ready: queue.Queue = queue.Queue(maxsize=depth)
        stop_flag = threading.Event()

        def produce() -> None:
            for step in range(start, stop):
                if stop_flag.is_set():
                    return
                images, labels = self.batch(step)
                ready.put((images.pin_memory(), labels.pin_memory()) if pin else (images, labels))

        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        try:
            for _ in range(start, stop):
                yield ready.get()
        finally:
            stop_flag.set()
            while worker.is_alive():
                try:
                    ready.get_nowait()
                except queue.Empty:
                    worker.join(0.01)


def seeded(*parts: int) -> torch.Generator:
    """A generator whose stream is a pure function of `parts`."""
    return torch.Generator().manual_seed(hash(parts) & 0x7FFF_FFFF_FFFF_FFFF)
