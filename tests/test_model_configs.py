"""A model's config.json is operator input, and a Hub repo's is a stranger's: every size in it
is bounded, and the weights file is checked against it, before any network is built; the
classifier shipped beside a model alike.

Each config is written beside the weights of a small real model, as an edited or hostile repo
would be; the checks must answer with one plain sentence, never torch's allocation error.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from safetensors.torch import load_file, save_file

from fader.classifier import Classifier, ClassifierConfig
from fader.folder import CLASSIFIER_CONFIG, CONFIG_NAME
from fader.library import ModelLibrary, load_classifier, load_model
from fader.model import (
    MAX_PARAMETERS,
    WEIGHTS_NAME,
    FaderConfig,
    FaderNetwork,
    parameter_count,
)
from tests.builders import make_hub_repo, save_model
from tests.test_entry_points import ROOT, app_environment
from train.config import PRESETS


def model_with_config(folder: Path, **changes) -> Path:
    """A small model folder (1 attribute, 64²) whose config.json then gets `changes`."""
    save_model(folder, "center", ["Smiling"])
    config = json.loads((folder / CONFIG_NAME).read_text())
    (folder / CONFIG_NAME).write_text(json.dumps(config | changes))
    return folder


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_the_parameter_estimate_is_within_one_percent_of_the_built_network(preset: str):
    config = FaderConfig(attributes=["Smiling", "Male", "Young"], **PRESETS[preset]["model"])
    built = sum(p.numel() for p in FaderNetwork(config).parameters())
    assert parameter_count(config) == pytest.approx(built, rel=0.01)
    assert built < MAX_PARAMETERS / 5, "the limit is comfortably above the presets"


def test_a_config_over_the_parameter_limit_is_refused_saying_the_limit(tmp_path: Path):
    folder = model_with_config(tmp_path / "huge", init_fm=100_000, max_fm=100_000)
    with pytest.raises(ValueError, match="limit is 200 million") as refused:
        FaderNetwork.from_pretrained(folder)
    assert str(folder) in str(refused.value), "the message names the model"


def test_a_hundred_thousand_attributes_are_refused_before_the_decoder_is_built(tmp_path: Path):
    names = [f"attribute_{i}" for i in range(100_000)]
    folder = model_with_config(tmp_path / "wide", attributes=names)
    with pytest.raises(ValueError, match="at most 64 names, not 100000"):
        FaderNetwork.from_pretrained(folder)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"image_size": 65536}, "over the limit of 1024 pixels"),
        ({"n_layers": 10**9}, "divisible by 2\\*\\*n_layers"),
        ({"init_fm": "8"}, "init_fm must be a whole number"),
        ({"attributes": ["x" * 1_000_000]}, "names must be text of 1 to 100 characters"),
        ({"categories": {"Smiling": "abc"}}, "the values of Smiling must be a list"),
    ],
)
def test_config_values_that_would_size_the_network_wrongly_are_refused(
    tmp_path: Path, changes: dict, message: str
):
    with pytest.raises(ValueError, match=message):
        FaderNetwork.from_pretrained(model_with_config(tmp_path / "m", **changes))


def test_weights_that_do_not_fit_the_config_are_named_before_loading(tmp_path: Path):
    folder = model_with_config(tmp_path / "m", attributes=["Smiling", "Male", "Young"])
    with pytest.raises(ValueError, match="does not fit its config") as refused:
        FaderNetwork.from_pretrained(folder)
    message = str(refused.value)
    assert "decoder.layers.0.0.weight is [66, 32, 4, 4] in the file but [70, 32, 4, 4]" in message
    assert "Error(s) in loading state_dict" not in message


def test_a_weights_file_with_a_tensor_the_network_lacks_is_refused(tmp_path: Path):
    folder = Path(save_model(tmp_path / "m", "center", ["Smiling"]))
    tensors = load_file(folder / WEIGHTS_NAME) | {"stowaway": torch.zeros(3)}
    save_file(tensors, folder / WEIGHTS_NAME)
    with pytest.raises(ValueError, match="the file has stowaway, which the config has not"):
        FaderNetwork.from_pretrained(folder)


def test_a_hub_repo_with_a_hostile_config_is_refused_by_the_library(tmp_path, monkeypatch):
    """The same checks for a repo id: the app's library loads it from the Hub's cache here."""
    folder = model_with_config(tmp_path / "m", image_size=65536)
    files = {name: (folder / name).read_bytes() for name in (CONFIG_NAME, WEIGHTS_NAME)}
    make_hub_repo(tmp_path / "hub", "mallory/fader-huge", files, "model")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ValueError, match="mallory/fader-huge has a config.json that is refused"):
        load_model("mallory/fader-huge")
    with pytest.raises(ValueError, match="over the limit of 1024 pixels"):
        ModelLibrary(["mallory/fader-huge"]).editor("mallory/fader-huge")


def test_python_app_with_a_hostile_model_folder_exits_2_with_one_line(tmp_path: Path):
    folder = model_with_config(tmp_path / "huge-image", image_size=65536)
    result = subprocess.run(
        [sys.executable, "app.py", "--model", str(folder)],
        cwd=ROOT,
        env=app_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 2
    assert "error: " in result.stderr and "over the limit of 1024 pixels" in result.stderr
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width": 1_000_000}, "limit is 200 million"),
        ({"image_size": 65536}, "over the limit of 1024 pixels"),
        ({"attributes": [f"a{i}" for i in range(100_000)]}, "at most 64 names"),
        ({"attributes": ["day", "night", "dusk"]}, "does not fit its config"),
    ],
)
def test_a_classifier_shipped_beside_a_model_is_bounded_and_checked_alike(
    tmp_path: Path, changes: dict, message: str
):
    folder = Path(save_model(tmp_path / "m", "center", ["day", "night"]))
    Classifier(ClassifierConfig(["day", "night"], image_size=32)).save(folder)
    config = json.loads((folder / CLASSIFIER_CONFIG).read_text())
    (folder / CLASSIFIER_CONFIG).write_text(json.dumps(config | changes))
    with pytest.raises(ValueError, match=message):
        load_classifier(str(folder))
