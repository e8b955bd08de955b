"""Where the result sits while the sliders are used, in real Chromium: in view at desktop and
phone size with nothing painted over it, the preview no smaller than the crop, the download's
whole name shown.

Needs Debian's Chromium (see tests/test_browser.py)."""

from collections.abc import Iterator

import pytest

from fader.library import ModelLibrary, bundled_models
from page.photos import EXAMPLES
from tests.test_app import serve
from tests.test_browser import (
    ARTIFACTS,
    PHONE,
    opened,
    pytestmark,  # noqa: F401 — skipped where Chromium is missing
)

DESKTOP = {"width": 1280, "height": 900}
# The elements painted across the result (a 5x5 grid of points): its own picture each time, not
# a slider's label.
ON_TOP = """selector => {
    const picture = document.querySelector(selector), box = picture.getBoundingClientRect();
    const at = [0.05, 0.25, 0.5, 0.75, 0.95];
    return at.every(fx => at.every(fy => document.elementFromPoint(
        box.left + box.width * fx, box.top + box.height * fy) === picture));
}"""


@pytest.fixture(scope="module")
def digits_url() -> Iterator[str]:
    with serve(ModelLibrary(list(bundled_models()))) as url:
        yield url


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_result_stays_in_view_and_uncovered_while_the_last_slider_is_typed(
    digits_url, viewport
):
    with opened(digits_url, viewport) as page:
        page.set_input_files("input[type=file]", str(EXAMPLES / "digits" / "three.png"))
        page.locator("#download").get_by_text("unchanged").wait_for(timeout=60_000)
        nine = page.locator("#slider-9 input[type=number]")
        nine.scroll_into_view_if_needed()
        before = page.locator("#edited-crop img").get_attribute("src")
        nine.fill("1.5")
        nine.press("Tab")
        page.wait_for_function(
            "before => document.querySelector('#edited-crop img').src !== before",
            arg=before,
            timeout=30_000,
        )
        page.locator("#download").get_by_text("nine=1.5").wait_for(timeout=30_000)  # all landed
        for picture in ["#edited-crop img", "#edited-photo img"]:
            box = page.locator(picture).bounding_box()
            assert box is not None and 0 <= box["y"] <= viewport["height"] - box["height"], picture
            assert page.evaluate(ON_TOP, picture), f"something is painted over {picture}"
        crop = page.locator("#edited-crop img").bounding_box()
        preview = page.locator("#edited-photo img").bounding_box()
        assert preview["width"] >= crop["width"] - 1, "the preview no smaller than the crop"
        page.screenshot(path=str(ARTIFACTS / f"layout-sliders-{viewport['width']}.png"))


def test_the_download_shows_its_whole_name(digits_url):
    with opened(digits_url, PHONE) as page:
        page.set_input_files("input[type=file]", str(EXAMPLES / "digits" / "three.png"))
        page.locator("#download").get_by_text("unchanged").wait_for(timeout=60_000)
        for digit, value in [(8, "1.5"), (7, "-0.5"), (2, "2.25")]:
            page.locator(f"#slider-{digit} input[type=number]").fill(value)
            page.locator(f"#slider-{digit} input[type=number]").press("Tab")
        name = "fader-digits-two=2.25_three=1_seven=-0.5_eight=1.5"
        stem = page.locator("#download .stem").get_by_text(name)
        stem.wait_for(timeout=30_000)
        cut = stem.evaluate("element => element.scrollWidth > element.clientWidth + 1")
        assert not cut, "the name is shown whole"
        box = stem.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"]
        page.locator("#download").screenshot(path=str(ARTIFACTS / "layout-download-name.png"))
