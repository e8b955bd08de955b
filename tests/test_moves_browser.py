"""A slider's move on the app's own route, in real Chromium: the route makes it, a photo the
server let go comes back through Gradio with the photo itself, and a lost answer is said.

Needs Debian's Chromium (see tests/test_browser.py).
"""

import dataclasses

from page.moves import MOVE_PATH
from tests.test_browser import (  # noqa: F401 — fixtures, and skipped where Chromium is missing
    drag,
    face_app,
    opened,
    photos,
    pytestmark,
    upload_and_wait_for_the_edit,
)


def test_a_slider_move_goes_to_the_move_route_and_comes_back_for_a_photo_let_go(
    face_app,  # noqa: F811 — the fixtures imported above
    photos,  # noqa: F811
):
    """A drag's moves are POSTs to the app's own route (`page.moves`). When the server has let
    the photo go (untouched past the store's limit), the next move is made with the photo
    itself, prepared again, and the route holds it once more; a move whose answer is lost says
    so under the sliders. No error badge on the way."""
    url, library = face_app
    store = library.editor(library.names[0]).photos

    def crop_changes_from(src: str) -> str:
        page.wait_for_function(
            "src => document.querySelector('#edited-crop img').src !== src", arg=src, timeout=30_000
        )
        page.wait_for_timeout(1500)  # the release's move has landed
        return page.locator("#edited-crop img").get_attribute("src")

    with opened(url) as page:
        shown = upload_and_wait_for_the_edit(page, photos["astronaut"])
        slider = page.locator("#slider-column input[type=range]").first
        with page.expect_response(lambda r: r.url.endswith(MOVE_PATH)) as answer:
            drag(page, slider, 0.4, 0.9)
        assert "crop" in answer.value.json(), "the route made the move"
        shown = crop_changes_from(shown)
        limits = store.limits  # the photo untouched for longer than the store keeps one
        store.limits = dataclasses.replace(limits, idle_seconds=0.0)
        try:
            library.editor(library.names[0]).load(photos["astronaut"], session="another visitor")
        finally:
            store.limits = limits
        with page.expect_response(lambda r: r.url.endswith(MOVE_PATH)) as answer:
            drag(page, slider, 0.9, 0.3)
        assert answer.value.json() == {"again": True}, "the route no longer holds the photo"
        shown = crop_changes_from(shown)  # made through Gradio, with the photo itself
        with page.expect_response(lambda r: r.url.endswith(MOVE_PATH)) as answer:
            drag(page, slider, 0.3, 0.7)
        assert "crop" in answer.value.json(), "the photo prepared again, under its new id"
        shown = crop_changes_from(shown)
        page.route(f"**{MOVE_PATH}", lambda route: route.abort())  # the answer lost on the way
        drag(page, slider, 0.7, 0.2)
        page.locator("#slider-note").get_by_text("did not answer").wait_for(timeout=30_000)
        assert page.locator("#edited-crop img").get_attribute("src") == shown
        assert page.locator(".toast-body").count() == 0, "said in words, not an error badge"
        assert "no longer loaded" not in page.locator("body").inner_text()
