"""The model list offers what can really be loaded now, and a model that fails to load leaves
the page as it was. The authors' download site is played by a server on 127.0.0.1."""

import http.server
import threading
from collections.abc import Iterator

import pytest
from gradio_client import Client

from fader.library import ModelLibrary, authors_choices, choice_label
from tests.builders import save_model
from tests.legacy_checkpoints import random_autoencoder, save_like_torch_0_3
from tests.test_app import serve


class Site(http.server.ThreadingHTTPServer):
    def __init__(self, files: dict[str, bytes]):
        self.files = files
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.answer(body=False)

    def do_GET(self) -> None:
        self.answer(body=True)

    def answer(self, body: bool) -> None:
        data = self.server.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def site(tmp_path_factory, tmp_path, monkeypatch) -> Iterator[Site]:
    """Only eyeglasses.pth is published; online mode on, an empty cache."""
    checkpoint = save_like_torch_0_3(
        random_autoencoder(), tmp_path_factory.mktemp("site") / "eyeglasses.pth"
    )
    server = Site({"eyeglasses.pth": checkpoint.read_bytes()})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("FADER_AUTHORS_URL", server.url)
    monkeypatch.setenv("FADER_AUTHORS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FADER_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.shutdown()
    server.server_close()


def test_the_authors_models_are_offered_when_the_download_would_succeed(site, monkeypatch):
    assert authors_choices() == ["authors: eyeglasses"], "the server has that file only"
    size_mb = len(site.files["eyeglasses.pth"]) / 2**20
    label = choice_label("authors: eyeglasses")
    assert f"downloads {size_mb:.0f} MB once" in label and "non-commercial" in label
    monkeypatch.setenv("FADER_AUTHORS_URL", "http://127.0.0.1:9")  # nothing listens there
    assert authors_choices() == [], "an unreachable site offers nothing"


def test_choosing_a_model_that_downloads_works_and_one_that_fails_keeps_the_page(site, tmp_path):
    scene = save_model(tmp_path / "scene", "center", ["day", "night"])
    library = ModelLibrary([scene, "authors: eyeglasses", "authors: male"])
    with serve(library) as url:
        client = Client(url, verbose=False)
        choice, info, *_, status = client.predict("authors: male", scene, api_name="/switch_model")
        assert choice["value"] == scene and info == {"__type__": "update"}, "the page stays"
        assert "Could not load **authors: male**" in status and "404" in status, status
        choice, info, *_ = client.predict("authors: eyeglasses", scene, api_name="/switch_model")
        assert choice["value"] == "authors: eyeglasses"
        assert "Eyeglasses" in info and "faces" in info
    assert choice_label("authors: eyeglasses") == "authors: eyeglasses", "converted: no download"
