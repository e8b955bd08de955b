"""Publishing on the Hugging Face Hub: everything up to the network runs for real.

The Hub cannot be reached here. What would be uploaded is built from a real tiny run and checked
file by file; the upload itself goes either to a closed local port or a local HTTP server that
refuses (real network errors, real HTTP status codes), or — for the one successful upload — to
`HfApi.create_repo`/`upload_folder` replaced by a recorder that keeps what they were given.
Loading by repo id reads a Hugging Face cache laid out as a download leaves it, offline.
"""

import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard, constants
from safetensors.torch import load_file

from fader import FaderNetwork
from fader.card import model_card
from fader.model import FaderConfig
from tests.builders import make_class_folders
from train.__main__ import main as train_main
from train.push import main as push_main
from train.push import push_run, stage_upload

REPO = "alice/fader-day-night"
# What a push uploads, written out here rather than imported: a change to it must be deliberate.
MODEL_FILES = ["README.md", "config.json", "model.safetensors", "sample_grid.png"]
CLASSIFIER_FILES = ["classifier.json", "classifier.safetensors"]
NEVER_UPLOADED = ["checkpoint.safetensors", "train.log"]
TOKEN = "hf_testTOKENthatMustNeverBeShown0123"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("push")
    data = make_class_folders(root / "daynight")
    out = root / "run"
    code = train_main(
        [str(a) for a in ("--data", data, "--preset", "tiny", "--steps", 6, "--eval-every", 3,
                          "--out", out, "--cache-dir", root / "cache", "--workers", 1)]
    )  # fmt: skip
    assert code == 0
    return out


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend the machine may reach the Hub, with a token in HF_TOKEN as users set it."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)


@pytest.fixture
def recorded_uploads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict]:
    """Replace only HfApi's two network calls; keep a copy of each uploaded folder."""
    uploads: list[dict] = []

    def create_repo(self, repo_id: str, private: bool = False, exist_ok: bool = False, **_):
        uploads.append({"created": repo_id, "private": private, "token": self.token})
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, repo_id: str, folder_path: str, allow_patterns, commit_message):
        copy = tmp_path / f"upload{len(uploads)}"
        shutil.copytree(folder_path, copy)
        uploads.append({"repo": repo_id, "files": copy, "message": commit_message})
        assert sorted(allow_patterns) == sorted(MODEL_FILES + CLASSIFIER_FILES)

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return uploads


@pytest.fixture
def refusing_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """A local HTTP server answering every request with the status in the yielded list."""
    status = [401]

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.dumps({"error": "refused by the test server"}).encode()
            self.send_response(status[0])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_POST

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield status
    server.shutdown()


def downloaded(cache: Path, repo_id: str, files: Path) -> None:
    """Lay `files` out in `cache` as huggingface_hub leaves a downloaded repo."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(files, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_the_upload_is_the_model_and_its_card_named_for_the_repo(trained_run: Path, tmp_path):
    names = stage_upload(trained_run, tmp_path, REPO)
    assert sorted(names) == MODEL_FILES
    assert sorted(p.name for p in tmp_path.iterdir()) == MODEL_FILES
    assert not any("discriminator" in key for key in load_file(str(tmp_path / "model.safetensors")))

    card = ModelCard.load(tmp_path / "README.md")
    meta = card.data.to_dict()
    assert meta["library_name"] == "fader" and meta["pipeline_tag"] == "image-to-image"
    assert {"fader-networks", "image-to-image", "arxiv:1706.00409"} <= set(meta["tags"])
    assert meta["license"] == "mit"
    assert f"python app.py --model {REPO}" in card.text
    assert f'FaderNetwork.from_pretrained("{REPO}")' in card.text
    assert str(trained_run) not in card.text, "the pushed card names the repo, not a local path"
    assert "`day`" in card.text and "`night`" in card.text
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["metrics"]["reconstruction_mse"] > 0
    assert "PSNR" in card.text and "sample_grid.png" in card.text
    assert "Reconstruction MSE" in card.text


def test_a_folder_without_a_model_is_refused_before_any_network(tmp_path: Path, online):
    with pytest.raises(ValueError, match="holds no exported model"):
        push_run(tmp_path, REPO)


def test_push_uploads_exactly_the_model_files_and_leaves_the_run_as_it_was(
    trained_run: Path, online, recorded_uploads: list[dict], tmp_path: Path
):
    before = snapshot(trained_run)
    url = push_run(trained_run, REPO, private=True, commit_message="First")
    assert url == f"https://huggingface.co/{REPO}"
    created, upload = recorded_uploads
    assert created == {"created": REPO, "private": True, "token": None}
    assert upload["repo"] == REPO and upload["message"] == "First"
    files = upload["files"]
    assert sorted(p.name for p in files.iterdir()) == MODEL_FILES
    assert all((trained_run / name).is_file() for name in NEVER_UPLOADED)
    assert not any((files / name).exists() for name in NEVER_UPLOADED)
    assert (files / "model.safetensors").read_bytes() == before["model.safetensors"]
    assert snapshot(trained_run) == before, "a push never changes the run folder"

    # What was pushed loads back by repo id from a cache laid out as a download leaves it.
    cache = tmp_path / "hub"
    downloaded(cache, REPO, files)
    loaded = FaderNetwork.from_pretrained(REPO, cache_dir=cache)
    local = FaderNetwork.from_pretrained(trained_run)
    assert loaded.attributes == ["day", "night"] and loaded.config.image_channels == 1
    x = torch.rand(1, 1, 32, 32) * 2 - 1  # day/night pictures are gray: a 1-channel model
    with torch.inference_mode():
        assert torch.equal(
            loaded(x, loaded.slider_channels([1.0, 0.0])),
            local(x, local.slider_channels([1.0, 0.0])),
        )


def test_train_pushes_at_the_end_and_never_shows_the_token(
    tmp_path: Path, online, recorded_uploads: list[dict], capsys, caplog
):
    data = make_class_folders(tmp_path / "daynight")
    out = tmp_path / "run"
    code = train_main(
        [str(a) for a in ("--data", data, "--preset", "tiny", "--steps", 4, "--out", out,
                          "--cache-dir", tmp_path / "cache", "--workers", 1,
                          "--push-to-hub", REPO, "--push-every", 2)]
    )  # fmt: skip
    assert code == 0
    messages = [u["message"] for u in recorded_uploads if "message" in u]
    assert messages == ["Step 2", "Trained model"]
    final = recorded_uploads[-1]["files"]
    assert json.loads((final / "config.json").read_text())["training"]["steps_done"] == 4
    printed = capsys.readouterr()
    everything = printed.out + printed.err + caplog.text + (out / "train.log").read_text()
    assert f"Pushed to https://huggingface.co/{REPO}" in everything
    assert TOKEN not in everything


def test_no_token_or_offline_is_refused_before_training(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    data = make_class_folders(tmp_path / "daynight")
    args = ["--data", str(data), "--preset", "tiny", "--steps", "2", "--out", str(tmp_path / "r")]
    assert train_main([*args, "--push-to-hub", REPO]) == 2
    assert "No Hugging Face token found: run `hf auth login`" in capsys.readouterr().err
    assert not (tmp_path / "r").exists(), "nothing was trained"

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert train_main([*args, "--push-to-hub", REPO]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    assert train_main([*args, "--push-to-hub", "not a repo"]) == 2
    assert "is not a Hub repo id" in capsys.readouterr().err
    assert train_main([*args, "--push-every", "5"]) == 2
    assert "need --push-to-hub" in capsys.readouterr().err


def test_unreachable_hub_keeps_the_run_and_says_how_to_retry(
    trained_run: Path, online, monkeypatch, capsys
):
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    before = snapshot(trained_run)
    assert push_main([str(trained_run), "--repo", REPO]) == 2
    err = capsys.readouterr().err
    assert "Could not reach the Hugging Face Hub" in err and "push again" in err
    assert f"nothing was changed in {trained_run}" in err
    assert TOKEN not in err
    assert snapshot(trained_run) == before


@pytest.mark.parametrize(
    ("status", "message"),
    [(401, "refused the token (401"), (403, "may not write to alice/fader-day-night (403)")],
)
def test_hub_refusals_say_what_to_do(
    trained_run: Path, online, refusing_hub: list[int], status: int, message: str
):
    refusing_hub[0] = status
    with pytest.raises(ValueError) as error:
        push_run(trained_run, REPO)
    assert message in str(error.value)
    assert "huggingface.co/settings/tokens" in str(error.value)
    assert TOKEN not in str(error.value)


@pytest.mark.parametrize("given_out", [True, False])
def test_a_failed_final_push_exits_3_with_the_retry_command(
    tmp_path: Path, online, refusing_hub: list[int], caplog, monkeypatch, given_out: bool
):
    """The retry command names the run folder, also one the run chose itself (no --out)."""
    data = make_class_folders(tmp_path / "daynight")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run" if given_out else Path("runs") / "day-night"
    code = train_main(
        [str(a) for a in ("--data", data, "--preset", "tiny", "--steps", 3,
                          *(["--out", out] if given_out else []),
                          "--cache-dir", tmp_path / "cache", "--workers", 1,
                          "--push-to-hub", REPO, "--private")]
    )  # fmt: skip
    assert code == 3
    log = (out / "train.log").read_text()
    assert f"Retry with: python -m train.push {out} --repo {REPO} --private" in log
    assert FaderNetwork.from_pretrained(out).attributes == ["day", "night"]
    assert TOKEN not in log + caplog.text


def test_card_metadata_is_valid_yaml_for_celeba_runs_too():
    config = FaderConfig(attributes=["Smiling"], training={"layout": "celeba"})
    card = model_card(config, REPO)
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["datasets"] == ["celeba"]
    assert "non-commercial research only" in card


def test_a_cached_repo_that_is_not_a_fader_model_is_named_as_such(tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"hidden_size": 8}')
    (other / "model.safetensors").write_bytes(b"")
    downloaded(tmp_path / "hub", "bob/a-text-model", other)
    with pytest.raises(ValueError, match="bob/a-text-model is not a Fader model"):
        FaderNetwork.from_pretrained("bob/a-text-model", cache_dir=tmp_path / "hub")


def test_a_model_folder_with_a_classifier_uploads_it_too(tmp_path: Path):
    digits = Path(__file__).resolve().parents[1] / "assets" / "models" / "digits"
    names = stage_upload(digits, tmp_path, "alice/fader-digits")
    assert sorted(names) == sorted(MODEL_FILES + CLASSIFIER_FILES)
    assert (tmp_path / "classifier.safetensors").read_bytes() == (
        digits / "classifier.safetensors"
    ).read_bytes()
    assert 'from_pretrained("alice/fader-digits")' in (tmp_path / "README.md").read_text()
