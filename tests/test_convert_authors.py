"""The authors' released models, converted without running their pickles, compute what they did.

The real files (dl.fbaipublicfiles.com/FaderNetworks/*.pth) cannot be downloaded here; the tests
build files with the same class paths, layer structure and legacy torch format instead.
"""

import builtins
import http.server
import json
import os
import pickle
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from fader.authors.__main__ import main
from fader.authors.cache import authors_model
from fader.authors.conversion import convert_checkpoint
from fader.authors.legacy_pickle import read_legacy_checkpoint
from fader.model import FaderNetwork
from tests.legacy_checkpoints import (
    AutoEncoder,
    authors_y,
    random_autoencoder,
    save_like_torch_0_3,
    save_with_torch,
    src_model_importable,
    write_legacy,
)

WRITERS = {"torch_0_3_pickle": save_like_torch_0_3, "torch_legacy_save": save_with_torch}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Tiny convolutions: thread hand-offs on a busy 2-core machine cost 100× the arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def convert_with_cli(checkpoint: Path, out: Path, *extra: str) -> FaderNetwork:
    assert "src" not in sys.modules and "src.model" not in sys.modules  # nothing to import
    main([str(checkpoint), "--out", str(out), *extra])
    return FaderNetwork.from_pretrained(out)


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize(
    "attr", [(("Eyeglasses", 2),), (("Male", 2), ("Young", 2))], ids=["one", "two"]
)
def test_converted_model_computes_what_the_authors_model_computed(tmp_path, writer, attr):
    authors = random_autoencoder(attr=attr)
    checkpoint = WRITERS[writer](authors, tmp_path / "authors.pth")
    ours = convert_with_cli(checkpoint, tmp_path / "converted")

    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), authors.encode(x)[-1], atol=1e-5, rtol=0)
        for alpha in (0.0, 1.0, 2.0, -1.0, 0.3, 10.0):
            alphas = [alpha, 1.0 - alpha][: len(attr)]
            expected = authors(x, authors_y(alphas, len(x)))
            edited = ours.decode(ours.encode(x), ours.slider_channels(alphas, len(x)))
            torch.testing.assert_close(edited, expected, atol=1e-5, rtol=0)
    assert ours.attributes == [name for name, _ in attr]


def test_batchnorm_epsilon_and_affine_free_norms_convert_exactly(tmp_path):
    authors = random_autoencoder(seed=3)
    authors.enc_layers[2][1].eps = 1e-3
    authors.dec_layers[0][1].eps = 1e-2
    norm = authors.dec_layers[1][1]
    norm.affine, norm.weight, norm.bias = False, None, None
    ours = convert_with_cli(save_like_torch_0_3(authors, tmp_path / "a.pth"), tmp_path / "out")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        expected = authors(x, authors_y([2.0], 2))
        torch.testing.assert_close(
            ours(x, ours.slider_channels([2.0], 2)), expected, atol=1e-5, rtol=0
        )


def test_model_folder_records_origin_licence_and_the_authors_slider_range(tmp_path):
    checkpoint = save_like_torch_0_3(random_autoencoder(attr=(("Young", 2),)), tmp_path / "y.pth")
    out = tmp_path / "young"
    model = convert_with_cli(checkpoint, out)

    assert model.config.preprocessing == "celeba"
    assert model.config.slider_range == (-9.0, 10.0)  # interpolate.py --alpha_max 10
    assert model.config.training["license"] == "cc-by-nc-4.0"
    card = ModelCard.load(out / "README.md")
    assert card.data.license == "cc-by-nc-4.0" and "non-commercial" in card.text
    assert "https://dl.fbaipublicfiles.com/FaderNetworks/young.pth" in card.text
    assert "`y.pth`" in card.text, "converted from the file given"
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert json.loads((out / "config.json").read_text())["attributes"] == ["Young"]


def test_alpha_range_can_be_overridden_and_unknown_attributes_default_to_0_1(tmp_path):
    checkpoint = save_with_torch(random_autoencoder(attr=(("Smiling", 2),)), tmp_path / "s.pth")
    assert convert_checkpoint(checkpoint).config.slider_range == (0.0, 1.0)
    model = convert_with_cli(checkpoint, tmp_path / "s", "--alpha-range", "-2", "3")
    assert model.config.slider_range == (-2.0, 3.0)


class RunsCode:
    """What a malicious checkpoint looks like: unpickling it calls `function(*args)`."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


@pytest.mark.parametrize("where", ["object", "inside_module", "header"])
@pytest.mark.parametrize("attack", ["os.system", "builtins.eval", "builtins.exec"])
def test_pickles_that_would_run_code_are_refused_and_nothing_runs(tmp_path, where, attack):
    marker = tmp_path / "pwned"
    command = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    payload = {
        "os.system": RunsCode(os.system, f"touch {marker}"),
        "builtins.eval": RunsCode(builtins.eval, command),
        "builtins.exec": RunsCode(builtins.exec, command),
    }[attack]
    checkpoint = tmp_path / "evil.pth"
    if where == "header":
        checkpoint.write_bytes(pickle.dumps(payload, protocol=2))
    elif where == "object":
        write_legacy(payload, checkpoint, pickle.Pickler)
    else:
        module = random_autoencoder()
        module.img_sz = payload  # tucked into an otherwise well-formed AutoEncoder
        save_like_torch_0_3(module, checkpoint)

    with pytest.raises(ValueError, match="Refusing to load"):
        read_legacy_checkpoint(checkpoint)
    with pytest.raises(SystemExit) as exit_:
        main([str(checkpoint), "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_cli_bad_input_is_an_error_line_with_exit_code_2(tmp_path, capsys):
    for model in (str(tmp_path / "missing.pth"), "bald"):
        with pytest.raises(SystemExit) as exit_:
            main([model, "--out", str(tmp_path / "out")])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "neither a file nor a released name" in err
        assert "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_the_pickled_classes_are_never_used_even_when_importable(tmp_path, monkeypatch):
    checkpoint = save_like_torch_0_3(random_autoencoder(), tmp_path / "a.pth")
    calls = []
    monkeypatch.setattr(AutoEncoder, "__setstate__", lambda self, state: calls.append(state))
    with src_model_importable():
        convert_checkpoint(checkpoint)
    assert calls == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_skip": 1}, "skip connection"),
        ({"deconv_method": "upsampling"}, "upsampling"),
        ({"instance_norm": True}, "instance normalization"),
        ({"attr": [("Hair", 3)], "n_attr": 3}, "categorical"),
    ],
)
def test_variants_our_network_cannot_represent_are_refused(tmp_path, change, message):
    module = random_autoencoder()
    for name, value in change.items():
        setattr(module, name, value)
    checkpoint = save_like_torch_0_3(module, tmp_path / "variant.pth")
    with pytest.raises(ValueError, match=message):
        convert_checkpoint(checkpoint)


def test_other_files_are_refused_with_a_reason(tmp_path):
    zip_file = tmp_path / "new.pth"
    torch.save({"weight": torch.zeros(2)}, zip_file)
    with pytest.raises(ValueError, match="zip-format"):
        convert_checkpoint(zip_file)

    state_dict = tmp_path / "state_dict.pth"
    torch.save(random_autoencoder().state_dict(), state_dict, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"not the authors' src\.model\.AutoEncoder"):
        convert_checkpoint(state_dict)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(os.urandom(1000))
    with pytest.raises(ValueError, match="corrupt or truncated"):
        convert_checkpoint(garbage)


# ------------------------------------------------------------------ downloads, from 127.0.0.1


class FileServer(http.server.ThreadingHTTPServer):
    """Serves {path: (body, declared Content-Length)} and counts the requests it gets."""

    def __init__(self, files: dict[str, tuple[bytes, int]]):
        self.files, self.requests = files, 0
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests += 1
        if self.path.lstrip("/") not in self.server.files:
            self.send_error(404)
            return
        body, length = self.server.files[self.path.lstrip("/")]
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path_factory, monkeypatch) -> Iterator[FileServer]:
    """The authors' download site on 127.0.0.1, with a good eyeglasses.pth; online mode on."""
    checkpoint = save_like_torch_0_3(
        random_autoencoder(), tmp_path_factory.mktemp("site") / "eyeglasses.pth"
    )
    body = checkpoint.read_bytes()
    server = FileServer({"eyeglasses.pth": (body, len(body))})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("FADER_AUTHORS_URL", server.url)
    monkeypatch.delenv("FADER_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.shutdown()
    server.server_close()


def test_authors_model_downloads_converts_once_then_works_offline(server, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    folder = authors_model("eyeglasses", cache)
    model = FaderNetwork.from_pretrained(folder)
    assert model.attributes == ["Eyeglasses"]
    assert model.config.slider_range == (-1.0, 2.0)
    assert sorted(p.name for p in cache.iterdir()) == ["eyeglasses", "eyeglasses.pth"]

    monkeypatch.setenv("FADER_OFFLINE", "1")
    assert authors_model("eyeglasses", cache) == folder
    assert server.requests == 1


def test_cli_with_a_released_name_downloads_into_the_cache(server, tmp_path):
    main(["eyeglasses", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    assert (tmp_path / "cache" / "eyeglasses.pth").is_file()
    assert FaderNetwork.from_pretrained(tmp_path / "out").attributes == ["Eyeglasses"]


@pytest.mark.parametrize("variable", ["FADER_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_refuses_to_download(server, tmp_path, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ValueError, match="offline"):
        authors_model("eyeglasses", tmp_path / "cache")
    assert server.requests == 0
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_cut_short_or_corrupt_downloads_leave_nothing_in_the_cache(server, tmp_path):
    body, length = server.files["eyeglasses.pth"]
    cache = tmp_path / "cache"

    server.files["eyeglasses.pth"] = (body[: length // 2], length)  # connection drops
    with pytest.raises(ValueError, match=f"stopped after {length // 2} of {length} bytes"):
        authors_model("eyeglasses", cache)
    assert list(cache.iterdir()) == []

    server.files["eyeglasses.pth"] = (body[: length - 100], length - 100)  # a truncated file
    with pytest.raises(ValueError, match="truncated"):
        authors_model("eyeglasses", cache)
    assert list(cache.iterdir()) == []

    server.files.clear()
    with pytest.raises(ValueError, match="Could not download .*404"):
        authors_model("eyeglasses", cache)
    assert list(cache.iterdir()) == []


def test_unknown_released_name_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match="eyeglasses"):
        authors_model("bald", tmp_path)
