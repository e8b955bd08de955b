"""The page as a person uses it: real Chromium, real upload, a real slider drag.

Needs Debian's Chromium at /usr/bin/chromium (`.ci/run` installs it) and the `playwright`
package; Playwright's own browser download is never used.
"""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skimage_data

import app
from fader.editor import ModelLibrary
from tests.test_app import free_port, save_model

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = save_model(tmp_path_factory.mktemp("model") / "face", "celeba", ["Smiling", "Male"])
    demo = app.build_demo(ModelLibrary([model], aligner="dlib"))
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True
    )
    try:
        yield url
    finally:
        demo.close()


def test_upload_then_drag_a_slider_changes_the_edited_face(page_url: str, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage_data.astronaut()).save(photo, quality=95)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(page_url, timeout=60_000)
        page.get_by_text("Upload a photo, then slide attributes").wait_for(timeout=60_000)
        page.set_input_files("input[type=file]", str(photo))
        edited = page.locator("#edited-crop img")
        edited.wait_for(timeout=60_000)
        page.get_by_text("Face aligned with dlib").wait_for(timeout=30_000)
        before = edited.get_attribute("src")

        slider = page.locator("input[type=range]").first
        box = slider.bounding_box()
        assert box is not None
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.4, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.95, y, steps=8)
        page.mouse.up()
        page.wait_for_function(
            "before => document.querySelector('#edited-crop img').src !== before",
            arg=before,
            timeout=30_000,
        )
        assert page.locator("#edited-photo img").count() == 1
        page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
        browser.close()
