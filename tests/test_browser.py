"""The page as a person uses it: real Chromium, real upload, a real slider drag.

Needs Debian's Chromium at /usr/bin/chromium (`.ci/run` installs it) and the `playwright`
package; Playwright's own browser download is never used.
"""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skimage_data

import app
from fader.models import ModelLibrary
from tests.test_app import save_model, serve

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


@contextmanager
def opened(url: str) -> Iterator["Page"]:  # noqa: F821 — playwright is imported lazily
    """A page of the app in a fresh headless Chromium, closed afterwards."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url, timeout=60_000)
            yield page
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    model = save_model(tmp_path_factory.mktemp("model") / "face", "celeba", ["Smiling", "Male"])
    with serve(ModelLibrary([model], aligner="dlib")) as url:
        yield url


def test_upload_then_drag_a_slider_changes_the_edited_face(page_url: str, tmp_path: Path):
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(skimage_data.astronaut()).save(photo, quality=95)
    with opened(page_url) as page:
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


@pytest.fixture(scope="module")
def digits_page_url() -> Iterator[str]:
    from fader.models import bundled_models

    with serve(ModelLibrary(list(bundled_models()))) as url:
        yield url


def test_bundled_digits_model_starts_at_the_digit_it_reads(digits_page_url: str):
    three = Path(app.EXAMPLES) / "digits" / "three.png"
    with opened(digits_page_url) as page:
        page.get_by_text("does not edit faces").first.wait_for(timeout=60_000)
        page.set_input_files("input[type=file]", str(three))
        page.get_by_text("The classifier reads: Three").wait_for(timeout=60_000)
        numbers = page.locator("input[type=number]")
        page.wait_for_function(
            "() => [...document.querySelectorAll('input[type=number]')]"
            ".map(n => n.value).join(',').startsWith('0,0,0,1,0,0,0,0,0,0')",
            timeout=30_000,
        )
        assert [numbers.nth(i).input_value() for i in range(10)] == ["0"] * 3 + ["1"] + ["0"] * 6
        page.locator("#edited-crop img").wait_for(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "app-digits.png"), full_page=True)
