"""Small real datasets built on disk by the tests: JPEG files in the layouts users have.

Each attribute draws something visible, so a model can learn it and a grid shows it:
"Smiling" a bright mouth bar, "Male" a dark band across the top, "Eyeglasses" two rings.
"""

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image, ImageDraw

from fader.model import FaderConfig, FaderNetwork

CELEBA_ATTRIBUTES = ["Eyeglasses", "Male", "Smiling"]


def face_like_image(
    flags: dict[str, bool], seed: int, size: tuple[int, int] = (178, 218)
) -> Image.Image:
    rng = np.random.default_rng(seed)
    width, height = size
    base = rng.integers(60, 180, 3)
    gradient = np.linspace(0.7, 1.3, height)[:, None, None] * base[None, None, :]
    pixels = np.clip(gradient + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(np.broadcast_to(pixels, (height, width, 3)).copy())
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.2, height * 0.2, width * 0.8, height * 0.85), fill=(200, 160, 130))
    if flags.get("Smiling"):
        draw.rectangle(
            (width * 0.35, height * 0.65, width * 0.65, height * 0.72), fill=(250, 250, 250)
        )
    if flags.get("Male"):
        draw.rectangle((0, 0, width, height * 0.25), fill=(30, 30, 30))
    if flags.get("Eyeglasses"):
        for x in (0.38, 0.62):
            cx, cy, r = width * x, height * 0.45, width * 0.09
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(0, 0, 0), width=4)
    return image


def make_celeba(root: Path, n: int = 40, torchvision_layout: bool = False) -> Path:
    """CelebA's layout and file formats: img_align_celeba/*.jpg, attribute and partition files."""
    base = root / "celeba" if torchvision_layout else root
    images = base / "img_align_celeba"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = [str(n), " ".join(CELEBA_ATTRIBUTES)]
    partition = []
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        flags = {a: bool(rng.integers(2)) for a in CELEBA_ATTRIBUTES}
        face_like_image(flags, seed=i).save(images / name, quality=92)
        lines.append(name + "".join(f" {1 if flags[a] else -1:>2}" for a in CELEBA_ATTRIBUTES))
        partition.append(f"{name} {0 if i < n * 0.8 else 1 if i < n * 0.9 else 2}")
    (base / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (base / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return root


def make_labelled_folder(root: Path, n: int = 24) -> tuple[Path, Path]:
    """Images of any size plus labels.csv with a `file` column and 0/1 columns."""
    root.mkdir(parents=True, exist_ok=True)
    rows = ["file,Smiling,Male"]
    for i in range(n):
        flags = {"Smiling": i % 2 == 0, "Male": i % 3 == 0}
        face_like_image(flags, seed=i, size=(120 + i, 100)).save(root / f"photo_{i}.png")
        rows.append(f"photo_{i}.png,{int(flags['Smiling'])},{int(flags['Male'])}")
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return root, labels


def make_class_folders(root: Path, per_class: int = 12) -> Path:
    """day/ (bright) and night/ (dark) sub-folders: each class becomes an attribute.

    Every image of a class has a bar of the other brightness in its own place (no two alike up
    to 180 per class), so what an image shows besides its class differs from image to image.
    """
    for name, level in (("day", 210), ("night", 40)):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((64, 64, 3), level, np.uint8)
            row, column = 5 + (i * 7) % 45, (i * 3) % 20
            pixels[row : row + 10, column + 5 : column + 40] = 255 - level
            Image.fromarray(pixels).save(folder / f"{i}.jpg")
    return root


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def hub_celeba_table(n: int, seed: int, labels: str = "bool") -> pa.Table:
    """Rows in the schema of the Hub's CelebA parquet files: `image` as the `datasets` Image
    feature (a struct of encoded `bytes` and a `path`), `celeb_id`, then one column per
    attribute: boolean (`labels="bool"`) or CelebA's own -1/1 (`labels="pm1"`)."""
    rng = np.random.default_rng(seed)
    flags = [{a: bool(rng.integers(2)) for a in CELEBA_ATTRIBUTES} for _ in range(n)]
    images = [
        {"bytes": jpeg_bytes(face_like_image(f, seed=seed * 1000 + i)), "path": f"{i:06d}.jpg"}
        for i, f in enumerate(flags)
    ]
    columns = {
        "image": pa.array(images, pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "celeb_id": pa.array(rng.integers(1, 10_000, n), pa.int64()),
    }
    for attribute in CELEBA_ATTRIBUTES:
        values = [f[attribute] for f in flags]
        columns[attribute] = (
            pa.array(values, pa.bool_())
            if labels == "bool"
            else pa.array([1 if v else -1 for v in values], pa.int64())
        )
    return pa.table(columns)


def make_hub_repo(hub_cache: Path, repo: str, files: dict[str, bytes], kind: str) -> Path:
    """A repo (`kind` "model" or "dataset") as huggingface_hub lays it out in its cache after a
    download: `{kind}s--OWNER--NAME/refs/main` naming a revision, `snapshots/<rev>/<path>`
    linking to `blobs/<hash>`. Returns the snapshot folder."""
    repo_dir = hub_cache / f"{kind}s--{repo.replace('/', '--')}"
    revision = hashlib.sha1(repo.encode()).hexdigest()
    snapshot = repo_dir / "snapshots" / revision
    (repo_dir / "blobs").mkdir(parents=True)
    for name, content in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(revision)
    return snapshot


def make_hub_dataset(hub_cache: Path, repo: str, shards: dict[str, pa.Table]) -> Path:
    """A dataset of parquet shards in the Hub's cache (see `make_hub_repo`)."""
    files = {}
    for name, table in shards.items():
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        files[name] = buffer.getvalue().to_pybytes()
    return make_hub_repo(hub_cache, repo, files, "dataset")


def save_model(folder: Path, preprocessing: str, attributes: list[str]) -> str:
    """A small random Fader model folder (64², 4 layers): the app's tests need a model, not a
    trained one."""
    torch.manual_seed(0)
    config = FaderConfig(
        attributes=attributes,
        image_size=64,
        init_fm=8,
        max_fm=64,
        n_layers=4,
        preprocessing=preprocessing,
    )
    FaderNetwork(config).save_pretrained(folder)
    return str(folder)
