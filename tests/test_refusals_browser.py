"""A refused photo clears what the page showed for the previous one in the same moment as its
message appears, the message in view and no broken picture left in the photo box, in real
Chromium at desktop and phone size.

Needs Debian's Chromium (see tests/test_browser.py)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from fader.library import ModelLibrary, bundled_models
from page.photos import EXAMPLES
from tests.test_app import serve
from tests.test_browser import (
    ARTIFACTS,
    DESKTOP,
    PHONE,
    opened,
    pytestmark,  # noqa: F401 — skipped where Chromium is missing
)


@pytest.fixture(scope="module")
def digits_url() -> Iterator[str]:
    with serve(ModelLibrary(list(bundled_models()))) as url:
        yield url


SHOWN = """() => ({
    crop: !!document.querySelector('#edited-crop img'),
    photo: !!document.querySelector('#edited-photo img'),
    download: !!document.querySelector('#download a'),
})"""


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_refusal_clears_the_edit_and_the_download_with_its_message(
    digits_url, viewport, tmp_path: Path
):
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_text("a text file renamed .png")
    with opened(digits_url, viewport) as page:
        page.set_input_files("input[type=file]", str(EXAMPLES / "digits" / "three.png"))
        everything = f"() => Object.values(({SHOWN})()).every(Boolean)"
        page.wait_for_function(everything, timeout=60_000)  # the three's edit and download
        page.set_input_files("input[type=file]", str(not_a_photo))
        page.locator("#status").get_by_text("not an image we can read").wait_for(timeout=60_000)
        shown = page.evaluate(SHOWN)  # at once: no wait between the message and this look
        assert shown == {"crop": False, "photo": False, "download": False}, shown
        box = page.locator("#status").bounding_box()
        assert box is not None and box["y"] + box["height"] <= viewport["height"], "in view"
        boxes = page.locator("#slider-column [id^=slider-]:not(#slider-detail) input[type=number]")
        page.wait_for_function(  # the three's start (Three at 1) gone with it: as first shown
            "() => [...document.querySelectorAll("
            "'#slider-column [id^=slider-]:not(#slider-detail) input[type=number]')]"
            ".every(box => Number(box.value) === 0)",
            timeout=10_000,
        )
        assert boxes.count() >= 10
        broken = "img => img.naturalWidth === 0 && getComputedStyle(img).visibility !== 'hidden'"
        assert not page.locator("#photo img").evaluate_all(f"all => all.some({broken})")
        page.screenshot(path=str(ARTIFACTS / f"refused-{viewport['width']}.png"))
        page.locator("#examples-digits img").first.click()  # the next photo, in the same <img>
        page.wait_for_function(f"() => ({SHOWN})().crop", timeout=60_000)
        seen = "img => img.naturalWidth > 0 && getComputedStyle(img).visibility === 'visible'"
        page.wait_for_function(
            f"() => [...document.querySelectorAll('#photo img')].some({seen})", timeout=10_000
        )
        page.screenshot(path=str(ARTIFACTS / f"refused-then-example-{viewport['width']}.png"))


def test_after_an_example_a_refused_photo_still_gets_its_message(digits_url, tmp_path: Path):
    """An example's click updates the photo box, and Gradio then keeps a new instance of its
    component for the session: the photo's gate must be in that one too."""
    not_a_photo = tmp_path / "notes.png"
    not_a_photo.write_text("a text file renamed .png")
    with opened(digits_url) as page:
        page.locator("#examples-digits img").first.click()
        everything = f"() => Object.values(({SHOWN})()).every(Boolean)"
        page.wait_for_function(everything, timeout=60_000)  # the example's edit and download
        page.set_input_files("input[type=file]", str(not_a_photo))
        page.locator("#status").get_by_text("not an image we can read").wait_for(timeout=60_000)
        assert page.evaluate(SHOWN) == {"crop": False, "photo": False, "download": False}
        assert page.locator(".error").count() == 0, "no Gradio error badge"
        page.screenshot(path=str(ARTIFACTS / "refused-after-example.png"))
