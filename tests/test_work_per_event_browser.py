"""The work one visitor's action costs, counted on the real server as real Chromium sends it:
an upload is encoded once and exported once, a slider move decodes its edit once and exports
at most once, and never encodes. The page wires an upload to two events (`input` and
`change`) and a move to several (`input`, `release`, `change`): counting is what shows none of
them doubles the work.

The real `Editor` is counted in-process (its methods wrapped on the instance the server uses):
nothing of the model is mocked. Needs Debian's Chromium (see tests/test_browser.py)."""

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from functools import wraps

import pytest
from PIL import Image

from fader.editor import Editor
from fader.library import ModelLibrary, bundled_models
from page.photos import EXAMPLES
from tests.test_app import serve
from tests.test_browser import opened, pytestmark  # noqa: F401 — skipped where Chromium is missing

SETTLE_MS = 3000  # after the page shows the result, time for any late event to arrive and run


class Work:
    """How often the editor encoded, loaded, edited live and exported, counted by wrapping the
    methods of the editor the server uses."""

    def __init__(self, editor: Editor):
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        encoder = editor.model.encoder
        encoder.register_forward_hook(lambda *_: self.count("encode"))
        self.wrap(editor, "load_prepared", lambda *a, **k: "load")
        self.wrap(editor, "_decode", lambda *a, **k: "decode batch")
        self.wrap(
            editor, "edit", lambda *a, **k: "export" if k.get("full_resolution") else "live edit"
        )

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def wrap(self, editor: Editor, method: str, kind: Callable[..., str]) -> None:
        real = getattr(editor, method)

        @wraps(real)
        def counted(*args, **kwargs):
            self.count(kind(*args, **kwargs))
            return real(*args, **kwargs)

        setattr(editor, method, counted)

    def taken(self) -> dict[str, int]:
        """The counts so far, then zero again."""
        with self.lock:
            counts = dict(self.counts)
            self.counts.clear()
        return counts


@pytest.fixture(scope="module")
def digits() -> Iterator[tuple[str, Work]]:
    library = ModelLibrary(list(bundled_models()))
    with serve(library) as url:
        yield url, Work(library.editor("digits"))


def test_an_upload_encodes_once_and_a_slider_move_decodes_once_and_never_encodes(digits, tmp_path):
    url, work = digits
    # Not an example photo, which the app encodes before it serves (a click costs no encode).
    photo = tmp_path / "three-mirrored.png"
    three = Image.open(EXAMPLES / "digits" / "three.png")
    three.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo)
    with opened(url) as page:
        page.get_by_text("Upload a photo, then slide attributes").wait_for(timeout=60_000)
        work.taken()  # the page's own loading
        page.set_input_files("input[type=file]", str(photo))
        page.locator("#edited-crop img").wait_for(timeout=60_000)
        page.locator("#download").get_by_text("fader-digits-").wait_for(timeout=60_000)
        page.wait_for_timeout(SETTLE_MS)
        upload = work.taken()
        assert upload.get("encode") == 1, f"an upload is encoded once: {upload}"
        assert upload.get("load") == 1, f"an upload is loaded once: {upload}"
        assert upload.get("live edit") == 1, f"an upload's edit is shown once: {upload}"
        assert upload.get("export") == 1, f"an upload is exported once: {upload}"
        assert upload.get("decode batch") == 2, f"the shown edit and the export: {upload}"

        before = page.locator("#edited-crop img").get_attribute("src")
        track = page.locator("#slider-0 input[type=range]")
        track.focus()
        page.keyboard.press("ArrowRight")  # one step: one move, as a key press makes it
        page.wait_for_function(
            "before => document.querySelector('#edited-crop img').src !== before",
            arg=before,
            timeout=30_000,
        )
        page.locator("#download").get_by_text("=0.05").wait_for(timeout=30_000)
        page.wait_for_timeout(SETTLE_MS)
        move = work.taken()
        assert "encode" not in move and "load" not in move, f"a move never encodes: {move}"
        assert move.get("live edit") == 1, f"a move's edit is made once: {move}"
        assert move.get("export", 0) <= 1, f"a move is exported at most once: {move}"
        assert move.get("decode batch") == 1 + move.get("export", 0), f"no decode twice: {move}"
