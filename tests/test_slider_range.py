"""The app's sliders and sweep follow the range a model's config gives (here −1 … 2)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fader.library import ModelLibrary
from fader.model import FaderConfig, FaderNetwork
from page.edits import sweep
from page.inputs import RejectedPhoto
from page.models import switch_model
from page.photos import NO_CLASSIFIER, encode
from page.sliders import MAX_SLIDERS, slider_settings

LOW, HIGH = -1.0, 2.0


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelLibrary, str]:
    folder = tmp_path_factory.mktemp("models") / "ranged"
    torch.manual_seed(0)
    config = FaderConfig(
        attributes=["day", "night"],
        image_size=32,
        init_fm=8,
        max_fm=32,
        n_layers=3,
        preprocessing="center",
        slider_range=(LOW, HIGH),
    )
    FaderNetwork(config).save_pretrained(folder)
    return ModelLibrary([str(folder)]), str(folder)


def test_the_sliders_span_the_models_range(library):
    library, name = library
    shown = [s for s in slider_settings(library.editor(name)) if s["visible"]]
    assert [(s["label"], s["minimum"], s["maximum"]) for s in shown] == [
        ("Day", -1.0, 2.0),
        ("Night", -1.0, 2.0),
    ]
    page = switch_model(library, name)
    updates = [u for u in page if isinstance(u, dict) and u.get("visible") and "minimum" in u]
    assert [(u["minimum"], u["maximum"]) for u in updates] == [(-1.0, 2.0)] * 2


def test_the_sweep_runs_from_the_ranges_low_end_to_its_high_end(library, tmp_path: Path):
    library, name = library
    photo = tmp_path / "scene.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photo)
    _, status, photo_id = encode(library, name, str(photo))
    assert NO_CLASSIFIER in status, "no classifier here: the page says where the sliders start"
    others = [0.5] + [0.0] * (MAX_SLIDERS - 1)  # night as the sliders set it
    strip = sweep(library, name, str(photo), photo_id, "Night", 4, *others)
    side = strip.width // 4  # the crops, enlarged pixel for pixel, with α written under them
    assert side % 32 == 0 and strip.height > side
    tiles = [np.asarray(strip.crop((i * side, 0, (i + 1) * side, side))) for i in range(4)]
    editor = library.editor(name)
    for tile, night in zip(tiles, [-1.0, 0.0, 1.0, 2.0], strict=True):
        crop = editor.edit(photo_id, {"day": 0.5, "night": night}).crop
        expected = crop.resize((side, side), Image.Resampling.NEAREST)
        off = np.abs(tile.astype(int) - np.asarray(expected, dtype=int)).max()
        assert off <= 1, f"the tile at night = {night} is {off}/255 off"  # batched vs single
    assert np.abs(tiles[0].astype(int) - tiles[-1]).mean() > 5, "the ends differ visibly"


def test_a_sweep_without_a_photo_accepted_says_which_is_missing(library, tmp_path: Path):
    """No photo at all: upload one. A photo on the page with no id (refused, its reason said
    under it, or sent to the API without /encode): not accepted, and what to do. A photo refused
    before it was read: its reason."""
    library, name = library
    photo = tmp_path / "scene.png"
    Image.new("RGB", (64, 48), "navy").save(photo)
    sliders = [0.0] * MAX_SLIDERS
    with pytest.raises(ValueError, match="Upload a photo first"):
        sweep(library, name, None, "", "Night", 4, *sliders)
    with pytest.raises(ValueError, match="not accepted .* send it to /encode first"):
        sweep(library, name, str(photo), "", "Night", 4, *sliders)
    with pytest.raises(ValueError, match="^Not a picture.$"):
        sweep(library, name, RejectedPhoto("Not a picture."), "", "Night", 4, *sliders)
