"""The live webcam in real Chromium: a fake camera plays a clip the test writes (the astronaut
moving, then a stretch with no face), the page streams it, and the edited frames come back.

Needs Debian's Chromium at /usr/bin/chromium and the `playwright` package (as test_browser.py).
"""

import base64
import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import app
from fader.library import ModelLibrary
from fader.stream import NO_FACE, Streams
from tests.builders import save_model
from tests.clips import clip, write_y4m
from tests.test_app import free_port
from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, DESKTOP

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)

FACE_FRAMES, EMPTY_FRAMES = 36, 12
# Each frame shown in the edited box, with when it appeared and whether a face was edited.
WATCH_FRAMES = """() => {
  window.shown = [];
  const box = document.querySelector('#live-edited');
  new MutationObserver(() => {
    const img = box.querySelector('img');
    const last = window.shown[window.shown.length - 1];
    if (img && (!last || img.src !== last.src)) {
      window.shown.push({t: performance.now(), src: img.src, edited: img.dataset.edited});
    }
  }).observe(box, {subtree: true, childList: true, attributes: true});
  // Every note shown under it: a frame's note may be painted after its picture.
  window.notes = [];
  const note = document.querySelector('#live-note');
  new MutationObserver(() => window.notes.push(note.innerText.trim()))
    .observe(note, {subtree: true, childList: true, characterData: true});
}"""


@contextmanager
def serve_with(library: ModelLibrary, streams: Streams) -> Iterator[str]:
    """The app on 127.0.0.1 (as tests.test_app.serve) with the test's own `streams`, so the test
    can see what the sessions hold."""
    demo = app.build_demo(library, streams=streams)
    launched = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        **app.LAUNCH,
    )
    try:
        yield launched[1]
    finally:
        demo.close()


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return clip(FACE_FRAMES, EMPTY_FRAMES)


@pytest.fixture(scope="module")
def webcam_app(tmp_path_factory, frames) -> Iterator[tuple[str, Streams, Path]]:
    folder = tmp_path_factory.mktemp("webcam")
    model = save_model(folder / "face", "celeba", ["Smiling", "Male"])
    streams = Streams()
    with serve_with(ModelLibrary([model], aligner="dlib"), streams=streams) as url:
        yield url, streams, write_y4m(folder / "clip.y4m", frames)


def decoded(src: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))


def test_the_camera_stream_is_edited_as_it_plays_and_stops_cleanly(webcam_app, frames):
    from playwright.sync_api import sync_playwright  # optional: only the browser tests need it

    url, streams, y4m = webcam_app
    camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    args = [*CHROMIUM_FLAGS, *camera, f"--use-file-for-fake-video-capture={y4m}"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_context(viewport=DESKTOP, permissions=["camera"]).new_page()
            page.goto(url, timeout=60_000)
            # Detail 0: the (random) decoder's face replaces the camera's, so an edit shows. At
            # the face model's default of 1 with the sliders at 0, a frame comes back unchanged.
            page.get_by_text("edits faces").first.wait_for(timeout=60_000)  # the page loaded
            detail = page.locator(
                "#slider-column .block:has-text('Keep photo detail') input[type=number]"
            )
            detail.fill("0")
            detail.press("Enter")
            assert detail.input_value() == "0"
            page.get_by_text("Live webcam").first.click()
            page.get_by_text("Click to Access Webcam").click()
            page.evaluate(WATCH_FRAMES)
            record = page.locator("#live-camera button[aria-label='capture photo']")
            record.get_by_text("Start live edit").wait_for(timeout=30_000)  # nothing is recorded
            assert "Record" not in record.inner_text()
            record.click()
            # Until both kinds have been shown several times (the fake camera loops the clip).
            page.wait_for_function(
                """([noFace]) => window.shown.filter(s => s.edited === '1').length >= 12
                      && window.shown.filter(s => s.edited === '0').length >= 4
                      && window.notes.includes(noFace)""",
                arg=[NO_FACE],
                timeout=240_000,
                polling=500,
            )
            assert len(streams) == 1  # this tab's tracker, kept between frames
            page.screenshot(path=str(ARTIFACTS / "webcam.png"), full_page=True)
            record.click()  # stop
            page.get_by_text("Camera stopped.").wait_for(timeout=60_000)
            shown, notes = page.evaluate("[window.shown, window.notes]")
            page.wait_for_timeout(1000)
            assert page.evaluate("window.shown.length") == len(shown)  # nothing after the stop
        finally:
            browser.close()
    assert len(streams) == 0  # the stop freed what the session held

    # The browser mirrors the camera (a selfie view) before sending it.
    mirrored = [np.ascontiguousarray(frame[:, ::-1]) for frame in frames]
    empty, faces = mirrored[-1], mirrored[:FACE_FRAMES]
    passed = [decoded(s["src"]) for s in shown if s["edited"] == "0"]
    edited = [decoded(s["src"]) for s in shown if s["edited"] == "1"]
    assert all(image.shape == empty.shape for image in passed + edited)
    # Unedited: a frame of the camera's as it was, up to two JPEG encodings. Most show no face;
    # a few show the face coming back, before the search (every few frames) finds it again. The
    # browser may send a black frame or two as the camera starts (Gradio draws the <video> onto
    # a canvas once it has a size, which can be before its first picture; seen in CI).
    black = [i for i, s in enumerate(shown) if s["edited"] == "0" and decoded(s["src"]).max() <= 16]
    assert black == list(range(len(black))), "black frames only before the camera's first"
    camera_frames = [image for image in passed if image.max() > 16]
    for image in camera_frames:
        assert min(np.abs(image.astype(int) - f).mean() for f in [empty, *faces]) < 6
    assert any(np.abs(image.astype(int) - empty).mean() < 6 for image in passed)
    face = (slice(120, 330), slice(220, 420))  # where the face sits in every frame of the clip
    for image in edited:
        source = min(faces, key=lambda f: np.abs(f.astype(int) - image).mean())
        difference = np.abs(source.astype(int) - image).mean(axis=2)
        outside = np.ones(difference.shape, bool)
        outside[face] = False
        assert difference[face].mean() > 4 * difference[outside].mean()  # the face was redrawn
    assert NO_FACE in notes

    seconds = (shown[-1]["t"] - shown[0]["t"]) / 1000
    figures = {"frames_shown": len(shown), "seconds": seconds, "shown_per_second": 0.0}
    figures["shown_per_second"] = (len(shown) - 1) / seconds
    (ARTIFACTS / "webcam_browser.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures))
