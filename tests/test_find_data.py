"""`python -m train --attrs Smiling Male` as written: CelebA found where people keep it or in the
Hugging Face cache, Hub datasets (`--data hf:…`), the offline message, the run folder chosen.

Offline throughout: Hub datasets are parquet files the tests write into a Hugging Face cache
laid out as huggingface_hub lays it out, read with HF_HUB_OFFLINE=1.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fader import FaderNetwork
from tests.builders import CELEBA_ATTRIBUTES, hub_celeba_table, make_celeba, make_hub_dataset
from train.__main__ import main
from train.celeba import locate_celeba
from train.hub_datasets import CELEBA_REPO, read_parquet_dataset
from train.plan import new_run_folder
from train.sources import TEST, TRAIN, VALIDATION

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "tiny", "--steps", "2", "--workers", "1"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with an empty home and working folder, no XDG cache and no $FADER_CELEBA."""
    for name in ("HOME", "XDG_CACHE_HOME", "FADER_CELEBA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def train_cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """`python -m train …` in `cwd` with the user's environment `env` (and this checkout)."""
    clean = {k: v for k, v in os.environ.items() if k not in {"XDG_CACHE_HOME", "FADER_CELEBA"}}
    environment = {**clean, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **env}
    command = [sys.executable, "-m", "train", *args]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True)


@pytest.fixture
def hub_cache(tmp_path: Path) -> Path:
    """The Hub's CelebA in a Hugging Face cache: official split shards, boolean attributes."""
    cache = tmp_path / "hf-cache"
    folder = "img_align+identity+attr"
    make_hub_dataset(
        cache,
        CELEBA_REPO,
        {
            f"{folder}/train-00000-of-00002.parquet": hub_celeba_table(12, seed=1),
            f"{folder}/train-00001-of-00002.parquet": hub_celeba_table(12, seed=2),
            f"{folder}/valid-00000-of-00001.parquet": hub_celeba_table(4, seed=3),
            f"{folder}/test-00000-of-00001.parquet": hub_celeba_table(4, seed=4),
        },
    )
    return cache


def test_the_hub_celeba_shards_give_images_attributes_and_the_official_split(hub_cache: Path):
    (snapshot,) = (hub_cache / f"datasets--{CELEBA_REPO.replace('/', '--')}/snapshots").iterdir()
    table = read_parquet_dataset(snapshot)
    assert table.attributes == CELEBA_ATTRIBUTES, "celeb_id is an identity, not an attribute"
    assert [(table.split == s).sum() for s in (TRAIN, VALIDATION, TEST)] == [24, 4, 4]
    expected = hub_celeba_table(4, seed=3).to_pydict()
    rows = table.split == VALIDATION
    assert table.labels[rows].tolist() == [
        [float(expected[a][i]) for a in CELEBA_ATTRIBUTES] for i in range(4)
    ]


def test_python_m_train_attrs_smiling_male_trains_on_celeba_from_the_hugging_face_cache(
    tmp_path: Path, hub_cache: Path
):
    """The command exactly as the project describes it (plus the tiny preset), nothing else."""
    (tmp_path / "work").mkdir()
    env = {"HF_HUB_CACHE": str(hub_cache), "HOME": str(tmp_path / "home")}
    done = train_cli(tmp_path / "work", env, "--attrs", "Smiling", "Male", *TINY)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "work" / "runs" / "smiling-male"
    log = (run / "train.log").read_text().splitlines()
    assert log[0].endswith("Run folder: runs/smiling-male")
    found = f"Data: CelebA from the Hugging Face cache (hf:{CELEBA_REPO}; no --data given)."
    assert log[1].endswith(found)
    model = FaderNetwork.from_pretrained(run)
    assert model.attributes == ["Smiling", "Male"] and model.config.preprocessing == "celeba"
    assert model.config.training["dataset"] == "celeba" and model.config.training["layout"] == "hub"
    assert model.config.training["train_images"] == 24, "the official training split"
    card = (run / "README.md").read_text()
    assert "datasets:\n- celeba" in card and "non-commercial research only" in card
    assert "Model saved to runs/smiling-male" in done.stdout + done.stderr


def test_hub_datasets_with_plus_minus_one_and_boolean_columns_train_too(tmp_path: Path):
    """Any labelled image set on the Hub: -1/1 and boolean attribute columns, no split in its
    file names (so the fixed split), other columns left out."""
    cache = tmp_path / "hf-cache"
    pm1, boolean = hub_celeba_table(10, seed=5, labels="pm1"), hub_celeba_table(10, seed=6)
    shards = {"data/part-0.parquet": pm1, "data/part-1.parquet": boolean}
    make_hub_dataset(cache, "alice/faces", shards)
    (snapshot,) = (cache / "datasets--alice--faces" / "snapshots").iterdir()
    table = read_parquet_dataset(snapshot)
    assert table.attributes == CELEBA_ATTRIBUTES and table.split is None
    expected = [[v > 0 for v in pm1.column(a).to_pylist()] for a in CELEBA_ATTRIBUTES]
    assert np.array_equal(table.labels[:10], np.array(expected, dtype=np.float32).T)
    out = tmp_path / "run"
    env = {"HF_HUB_CACHE": str(cache)}
    done = train_cli(tmp_path, env, "--data", "hf:alice/faces", "--out", str(out), *TINY)
    assert done.returncode == 0, done.stderr
    model = FaderNetwork.from_pretrained(out)
    assert model.attributes == CELEBA_ATTRIBUTES, "all attributes by default, as for any dataset"
    assert model.config.preprocessing == "center"
    assert model.config.training["dataset"] == "hf:alice/faces"


def test_offline_with_no_celeba_anywhere_says_where_it_looked_and_how_to_get_it(tmp_path: Path):
    (tmp_path / "work").mkdir()
    env = {"HF_HUB_CACHE": str(tmp_path / "empty-hf"), "HOME": str(tmp_path / "home"),
           "XDG_CACHE_HOME": str(tmp_path / "xdg")}  # fmt: skip
    done = train_cli(tmp_path / "work", env, "--attrs", "Smiling", "Male", *TINY)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    message = done.stderr
    assert message.startswith("error: no --data given, and CelebA is in none of the places")
    places = ["data/celeba", f"{tmp_path}/home/.cache/fader/celeba", f"{tmp_path}/xdg/fader/celeba"]
    hints = [f"hf:{CELEBA_REPO}", "$FADER_CELEBA is not set", "img_align_celeba/*.jpg",
             "list_attr_celeba.txt", "mmlab.ie.cuhk.edu.hk", "--data DIR"]  # fmt: skip
    for place in places + hints:
        assert place in message, place
    assert not (tmp_path / "work" / "runs").exists(), "refused before any work"


DEFAULT_PLACES = ["$FADER_CELEBA", "data/celeba", "~/.cache/fader/celeba",
                  "$XDG_CACHE_HOME/fader/celeba",
                  "torchvision's celeba/ under ~/.cache/fader/celeba"]  # fmt: skip


@pytest.mark.parametrize("place", DEFAULT_PLACES)
def test_celeba_in_the_standard_layout_is_found_at_each_default_place(
    home: Path, monkeypatch: pytest.MonkeyPatch, place: str
):
    folders = {
        "$FADER_CELEBA": home / "mine",
        "data/celeba": home / "work" / "data" / "celeba",
        "~/.cache/fader/celeba": home / "home" / ".cache" / "fader" / "celeba",
        "$XDG_CACHE_HOME/fader/celeba": home / "xdg" / "fader" / "celeba",
        "torchvision's celeba/ under ~/.cache/fader/celeba": home / "home/.cache/fader/celeba",
    }
    monkeypatch.setenv("FADER_CELEBA", str(home / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    make_celeba(folders[place], n=6, torchvision_layout="torchvision" in place)
    root, note = locate_celeba()
    expected = folders[place] / "celeba" if "torchvision" in place else folders[place]
    assert root.resolve() == expected.resolve() and note.startswith(f"Data: CelebA found in {root}")


def test_fader_celeba_comes_first_and_a_run_without_data_uses_what_was_found(
    home: Path, monkeypatch: pytest.MonkeyPatch
):
    make_celeba(home / "work" / "data" / "celeba", n=8)
    make_celeba(home / "mine", n=8)
    monkeypatch.setenv("FADER_CELEBA", str(home / "mine"))
    assert locate_celeba()[0] == home / "mine"
    monkeypatch.delenv("FADER_CELEBA")
    assert main(["--attrs", "Smiling", "--cache-dir", str(home / "cache"), *TINY]) == 0
    log = (home / "work" / "runs" / "smiling" / "train.log").read_text()
    assert f"Data: CelebA found in {Path('data') / 'celeba'} (no --data given)." in log


def test_the_default_run_folder_is_numbered_when_taken_and_nothing_is_overwritten(
    home: Path, celeba_dir: Path, capsys
):
    taken = home / "work" / "runs" / "smiling-male"
    taken.mkdir(parents=True)
    (taken / "notes.txt").write_text("mine")
    args = ["--data", str(celeba_dir), "--attrs", "smiling", "MALE", "--cache-dir", str(home / "c")]
    assert main([*args, *TINY]) == 0
    assert (taken / "notes.txt").read_text() == "mine" and len(list(taken.iterdir())) == 1
    second = home / "work" / "runs" / "smiling-male-2"
    assert FaderNetwork.from_pretrained(second).attributes == ["Smiling", "Male"]
    assert (
        (second / "train.log")
        .read_text()
        .splitlines()[0]
        .endswith("Run folder: runs/smiling-male-2")
    )
    assert new_run_folder(["Smiling", "Male"]) == Path("runs/smiling-male-3")
    assert new_run_folder(["5_o_Clock_Shadow"]) == Path("runs/5-o-clock-shadow")
    assert main(["--resume"]) == 2
    assert "--resume needs --out RUN" in capsys.readouterr().err


def test_the_readme_training_section_starts_with_the_command_as_the_project_describes_it():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Train a model", 1)[1]
    first_block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    assert first_block.strip().splitlines()[-1] == "python -m train --attrs Smiling Male"
