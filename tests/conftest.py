"""Shared fixtures. The Hub is never reached from tests: offline mode is set before any import."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("FADER_OFFLINE", "1")

from pathlib import Path

import pytest

from tests.builders import make_celeba, save_model


@pytest.fixture(scope="session")
def celeba_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-image folder in CelebA's layout and file formats, shared by the tests that read it."""
    return make_celeba(tmp_path_factory.mktemp("celeba"))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A face model and a whole-image model, for the tests that serve the app."""
    root = tmp_path_factory.mktemp("models")
    return {
        "face": save_model(root / "face", "celeba", ["Smiling", "Male"]),
        "scene": save_model(root / "scene", "center", ["day", "night", "dusk"]),
    }
