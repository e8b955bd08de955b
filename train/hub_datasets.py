"""`--data hf:OWNER/NAME`: a labelled image dataset on the Hugging Face Hub, read from its parquet
files.

`huggingface_hub.snapshot_download` puts the files in the standard Hugging Face cache (with a
progress bar; an interrupted download resumes where it stopped) and finds them there offline. A
dataset of the right shape has an image column holding encoded image bytes (the `datasets`
Image feature: a struct with `bytes`, or plain binary) and attribute columns that are boolean or
hold only 0/1 or -1/1; other columns (an identity, landmarks) are left out. Its splits come from
the file names (`train-00000-of-00019.parquet`, `valid/0000.parquet` …); without them the
trainer's fixed split is used. The images stay inside the parquet files: `train/data.py` decodes
them from there into its cache like any other layout.
"""

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

HUB_PREFIX = "hf:"
# CelebA as the trainer fetches it when no --data is given: Flower Labs' copy keeps CelebA's own
# licence, its aligned 178×218 images, the identities, the 40 attributes and the official
# train/valid/test split (its folder img_align+identity+attr). Chosen from the repository's file
# listing; its card's column schema was not checked offline (see README, "Train a model").
CELEBA_REPO = "flwrlabs/celeba"
SPLIT_WORDS = {  # the split names Hub datasets use, by the split they are
    "train": 0,
    "training": 0,
    "validation": 1,
    "valid": 1,
    "val": 1,
    "dev": 1,
    "test": 2,
    "testing": 2,
}


@dataclass(frozen=True)
class ParquetImage:
    """One image stored in a parquet file: its row and column."""

    file: Path
    row: int
    column: str

    @property
    def name(self) -> str:
        return f"{self.file.name}[{self.row}]"


@dataclass
class HubTable:
    """What a Hub dataset's parquet files hold: images by reference, 0/1 labels, splits."""

    images: list[ParquetImage]
    labels: np.ndarray  # N×A float32 of 0/1
    attributes: list[str]
    split: np.ndarray | None  # N int8 of TRAIN/VALIDATION/TEST, None when the files name none


def hub_repo(data: Path | str) -> str | None:
    """The repo id of `--data hf:OWNER/NAME`, or None for any other --data."""
    text = str(data)
    return text[len(HUB_PREFIX) :] if text.startswith(HUB_PREFIX) else None


def download(repo: str) -> Path:
    """The dataset's parquet files, fetched into the Hugging Face cache (or found there when
    offline); a ValueError that says why when that cannot be done."""
    try:
        return Path(snapshot_download(repo, repo_type="dataset", allow_patterns=["*.parquet"]))
    except LocalEntryNotFoundError as error:
        raise ValueError(
            f"hf:{repo} is not in the Hugging Face cache and cannot be downloaded now "
            f"(offline, or the Hub is unreachable: {error}). Connect and run again."
        ) from error
    except (HfHubHTTPError, HFValidationError) as error:
        raise ValueError(f"hf:{repo} could not be fetched from the Hub: {error}") from error


def read_parquet_dataset(folder: Path) -> HubTable:
    """The image references, attributes and splits of every parquet file under `folder`."""
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise ValueError(f"{folder} holds no parquet files: not a dataset of images and labels.")
    schema = pq.read_schema(files[0])
    image_column = find_image_column(schema, files[0])
    candidates = [f.name for f in schema if f.name != image_column and is_flag_type(f.type)]
    images, labels, splits = [], [], []
    attributes: list[str] | None = None
    for file in files:
        table = pq.read_table(file, columns=candidates)
        flags = {name: as_flags(table.column(name)) for name in candidates}
        columns = [name for name in candidates if flags[name] is not None]
        if attributes is None:
            attributes = columns
        elif columns != attributes:
            raise ValueError(f"{file} has other attribute columns than {files[0]}.")
        labels.append(np.stack([flags[name] for name in columns], axis=1).astype(np.float32))
        images += [ParquetImage(file, row, image_column) for row in range(table.num_rows)]
        splits.append(np.full(table.num_rows, split_of(file.relative_to(folder)), dtype=object))
    if not attributes:
        raise ValueError(
            f"{files[0]} has no attribute columns (boolean, 0/1 or -1/1): its columns are "
            f"{schema.names}."
        )
    split = np.concatenate(splits)
    known = None if any(s is None for s in split) else split.astype(np.int8)
    return HubTable(images, np.concatenate(labels), attributes, known)


def find_image_column(schema: pa.Schema, file: Path) -> str:
    """The column of encoded images: a struct with a `bytes` field, or binary; `image` first."""
    found = [
        field.name
        for field in schema
        if pa.types.is_binary(field.type)
        or pa.types.is_large_binary(field.type)
        or (pa.types.is_struct(field.type) and field.type.get_field_index("bytes") >= 0)
    ]
    if not found:
        raise ValueError(f"{file} has no image column (encoded image bytes): {schema.names}.")
    return "image" if "image" in found else found[0]


def is_flag_type(kind: pa.DataType) -> bool:
    return pa.types.is_boolean(kind) or pa.types.is_integer(kind)


def as_flags(column: pa.ChunkedArray) -> np.ndarray | None:
    """A boolean, 0/1 or -1/1 column as 0/1 values; None for any other column (an id, a
    landmark coordinate) or one with missing values."""
    if column.null_count:
        return None
    values = column.to_numpy()
    if values.dtype == bool:
        return values
    seen = set(np.unique(values).tolist())
    if seen <= {0, 1} or seen <= {-1, 1}:
        return values > 0
    return None


def split_of(relative: Path) -> int | None:
    """The split a parquet file belongs to, from its name or folder (`train-00000-of-00019`,
    `validation/0000.parquet`), or None when its path names none."""
    for part in reversed(relative.with_suffix("").parts):
        word = part.split("-")[0].split("_")[0].lower()
        if word in SPLIT_WORDS:
            return SPLIT_WORDS[word]
    return None


def parquet_images(images: list[ParquetImage]) -> Iterator[bytes | None]:
    """The encoded bytes of `images` in order, read a few hundred rows at a time, so a dataset
    much larger than memory streams through (each file's rows come in order, as listed)."""
    for (file, column), group in itertools.groupby(images, key=lambda i: (i.file, i.column)):
        rows = [image.row for image in group]
        batches = pq.ParquetFile(file).iter_batches(batch_size=256, columns=[column])
        values = (value for batch in batches for value in batch.column(0).to_pylist())
        for expected, (row, value) in zip(rows, enumerate(values), strict=False):
            if row != expected:
                raise ValueError(f"{file}: rows out of order ({row} for {expected}).")
            yield value["bytes"] if isinstance(value, dict) else value
