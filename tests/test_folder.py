"""The one writer of a model folder: whole folders or none, run folders' other files kept."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fader import FaderConfig, FaderNetwork
from fader.classifier import Classifier, ClassifierConfig
from fader.folder import is_model_folder, write_model_folder

CARD = "---\nlibrary_name: fader\n---\n\n# A test card\n"


def tiny_model(seed: int) -> FaderNetwork:
    torch.manual_seed(seed)
    config = FaderConfig(["day", "night"], image_size=32, init_fm=8, max_fm=16, n_layers=3)
    return FaderNetwork(config).eval()


def contents(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def same_outputs(a: FaderNetwork, b: FaderNetwork) -> bool:
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        return torch.equal(
            a(x, a.slider_channels([1.0, 0.0], 2)), b(x, b.slider_channels([1.0, 0.0], 2))
        )


def test_a_new_folder_holds_exactly_the_model_files_and_loads(tmp_path: Path):
    model = tiny_model(0)
    grid = torch.rand(3, 20, 30)
    out = write_model_folder(tmp_path / "model", model, CARD, sample_grid=grid)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"], "no staging left beside it"
    assert sorted(contents(out)) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "sample_grid.png",
    ]
    assert (out / "README.md").read_text() == CARD, "our card, not the Hub mixin's generic one"
    assert is_model_folder(out)
    assert same_outputs(FaderNetwork.from_pretrained(out), model)
    pixels = torch.from_numpy(np.array(Image.open(out / "sample_grid.png"))).float()
    assert pixels.shape == (20, 30, 3)
    assert torch.allclose(pixels, grid.permute(1, 2, 0).mul(255).round(), atol=1)


def test_rewriting_a_run_folder_replaces_the_model_and_keeps_the_other_files(tmp_path: Path):
    run = tmp_path / "run"
    write_model_folder(run, tiny_model(0), CARD, sample_grid=torch.rand(3, 8, 8))
    (run / "checkpoint.safetensors").write_bytes(b"optimizer state")
    (run / "train.log").write_text("step 1\n")
    (run / "samples").mkdir()
    (run / "samples" / "step_1.png").write_bytes(b"png")
    grid_before = (run / "sample_grid.png").read_bytes()

    newer = tiny_model(1)
    write_model_folder(run, newer, CARD + "\nmore\n")  # no new grid: the last one stays

    assert (run / "checkpoint.safetensors").read_bytes() == b"optimizer state"
    assert (run / "train.log").read_text() == "step 1\n"
    assert (run / "samples" / "step_1.png").read_bytes() == b"png"
    assert (run / "sample_grid.png").read_bytes() == grid_before
    assert (run / "README.md").read_text().endswith("more\n")
    assert same_outputs(FaderNetwork.from_pretrained(run), newer)
    assert not [p for p in run.iterdir() if p.name.startswith(".")], "no staging left inside"


def test_a_failure_mid_write_leaves_the_previous_folder_as_it_was(tmp_path: Path):
    run = tmp_path / "run"
    old = tiny_model(0)
    write_model_folder(run, old, CARD)
    (run / "train.log").write_text("step 1\n")
    before = contents(run)

    # The weights and config are staged by then; the grid (not an image: 4-D) fails.
    with pytest.raises(RuntimeError):
        write_model_folder(run, tiny_model(1), "new card", sample_grid=torch.rand(1, 3, 8, 8))
    assert contents(run) == before
    assert same_outputs(FaderNetwork.from_pretrained(run), old)

    with pytest.raises(RuntimeError):
        write_model_folder(
            tmp_path / "fresh", tiny_model(1), CARD, sample_grid=torch.rand(1, 3, 8, 8)
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "no half-made folder appears"


def test_a_classifier_is_written_beside_the_model(tmp_path: Path):
    classifier = Classifier(ClassifierConfig(["day", "night"], exclusive=True, image_size=32))
    out = write_model_folder(tmp_path / "m", tiny_model(0), CARD, classifier=classifier.eval())
    assert {"classifier.json", "classifier.safetensors"} <= set(contents(out))
    loaded = Classifier.from_folder(out)
    x = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded(x), classifier(x))


def test_a_file_where_the_folder_should_be_is_refused(tmp_path: Path):
    (tmp_path / "model").write_text("not a folder")
    with pytest.raises(ValueError, match="is a file"):
        write_model_folder(tmp_path / "model", tiny_model(0), CARD)
    assert (tmp_path / "model").read_text() == "not a folder"
    assert not is_model_folder(tmp_path)
