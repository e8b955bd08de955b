"""A slider's move on the app's own route, in real Chromium: the route makes it, a photo the
server let go comes back through Gradio with the photo itself, and a lost answer is said.

Needs Debian's Chromium (see tests/test_browser.py).
"""

import dataclasses
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from page.moves import AGAIN_FAILED_NOTE, MOVE_PATH
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
        let_go(library.editor(library.names[0]), photos["astronaut"], "another visitor")
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


def let_go(editor, photo: Path, session: str) -> None:
    """The store lets the page's photo go: untouched for longer than it keeps one, as `photo`
    comes in for `session`."""
    limits = editor.photos.limits
    editor.photos.limits = dataclasses.replace(limits, idle_seconds=0.0)
    try:
        editor.load(photo, session=session)
    finally:
        editor.photos.limits = limits


@contextmanager
def preparations_slowed(editor, seconds: float, first_only: bool = False) -> Iterator[list]:
    """The editor's preparations of photos slowed by `seconds` each (the first alone, when
    `first_only`); yields the list of what was prepared meanwhile, as it grows."""
    prepared, load_prepared = [], editor.load_prepared

    def slowly(*args, **kwargs):
        prepared.append(args)
        if not first_only or len(prepared) == 1:
            time.sleep(seconds)
        return load_prepared(*args, **kwargs)

    editor.load_prepared = slowly
    try:
        yield prepared
    finally:
        del editor.load_prepared


def move_answers(page) -> list:
    """The route's answers to the page's moves from now on, as the test goes."""
    answers = []
    page.on("response", lambda r: answers.append(r) if r.url.endswith(MOVE_PATH) else None)
    return answers


def wait_for_a_made_move(page, answers: list, after: int = 0) -> dict:
    """The last answer past `after` with pictures (a move made), once one came (waited for up to
    20 s: a preparation that ended leaves no move waiting for the 30 s the page waits at most)
    and the drag's moves have landed."""

    def made() -> list[dict]:
        return [reply for reply in (a.json() for a in answers[after:]) if "crop" in reply]

    for _ in range(100):
        if made():
            page.wait_for_timeout(1500)  # the drag's last move has landed
            return made()[-1]
        page.wait_for_timeout(200)
    raise AssertionError("no move was made after the photo was prepared again")


def test_moves_made_while_a_photo_let_go_is_prepared_again_wait_for_it_and_use_its_new_id(
    face_app,  # noqa: F811 — the fixtures imported above
    photos,  # noqa: F811
):
    """The photo prepared again through Gradio takes its turn with the moves: the rest of the
    drag and a drag made while it is prepared (slowed here to 2 s) wait, then go to the route
    under the new id. The photo is prepared once, one move is answered `again` (each move sent
    meanwhile under the old id was, before: 19 here), and the picture left is the last move's,
    not the older one the preparation painted."""
    url, library = face_app
    editor = library.editor(library.names[0])
    with opened(url) as page:
        upload_and_wait_for_the_edit(page, photos["astronaut"])
        slider = page.locator("#slider-column input[type=range]").first
        let_go(editor, photos["astronaut"], "a third visitor")
        answers = move_answers(page)
        with preparations_slowed(editor, 2.0) as prepared:
            drag(page, slider, 0.9, 0.3)
            page.wait_for_timeout(500)  # the photo is being prepared again
            drag(page, slider, 0.3, 0.7)
            last = wait_for_a_made_move(page, answers)
        replies = [answer.json() for answer in answers]
        assert len(prepared) == 1, "prepared again once, not once per move made meanwhile"
        assert replies[0] == {"again": True} and replies[-1] == last
        assert all("crop" in reply for reply in replies[1:]), "none asked for the photo again"
        shown = page.locator("#edited-crop img").get_attribute("src")
        assert shown == re.search(r'src="([^"]+)"', last["crop"]).group(1)
        assert page.locator(".toast-body").count() == 0


def test_a_failed_preparation_leaves_no_move_waiting(
    face_app,  # noqa: F811 — the fixtures imported above
    photos,  # noqa: F811
):
    """When the photo cannot be prepared again, the moves that waited for it go on at once, not
    after the 30 s the page waits at most (Gradio's front end runs a `.then` only after a
    success), and the note under the sliders says so: the next move asks again, and once the
    photo can be prepared it is, the move made, and the note emptied."""
    url, library = face_app
    editor = library.editor(library.names[0])

    def failing(*args, **kwargs):
        raise ValueError("This photo could not be prepared again.")

    with opened(url) as page:
        upload_and_wait_for_the_edit(page, photos["astronaut"])
        slider = page.locator("#slider-column input[type=range]").first
        let_go(editor, photos["astronaut"], "a fourth visitor")
        answers = move_answers(page)
        editor.load_prepared = failing
        try:
            drag(page, slider, 0.9, 0.3)
            for _ in range(75):  # a move after the failed preparation asks again, before 15 s
                if len(answers) >= 2:
                    break
                page.wait_for_timeout(200)
            replies = [answer.json() for answer in answers]
            assert len(replies) >= 2 and all(reply == {"again": True} for reply in replies)
            note = page.locator("#slider-note")
            note.get_by_text(AGAIN_FAILED_NOTE).wait_for(timeout=10_000)
        finally:
            del editor.load_prepared
        drag(page, slider, 0.3, 0.7)
        last = wait_for_a_made_move(page, answers, after=len(replies))
        shown = page.locator("#edited-crop img").get_attribute("src")
        assert shown == re.search(r'src="([^"]+)"', last["crop"]).group(1)
        assert AGAIN_FAILED_NOTE not in note.inner_text(), "a move made says nothing went wrong"


def test_a_photo_uploaded_while_the_one_let_go_is_prepared_again_is_the_one_edited(
    face_app,  # noqa: F811 — the fixtures imported above
    photos,  # noqa: F811
):
    """A photo uploaded while the one the server let go is prepared again (slowed here to 3 s)
    stays the page's photo when that preparation ends: the moves after it edit the new photo.
    The preparation's answer put the old photo's id back under it before, and the next moves
    edited the old photo behind the new one."""
    url, library = face_app
    editor = library.editor(library.names[0])
    mirrored = photos["astronaut"].with_name("astronaut-mirrored.jpg")
    ImageOps.mirror(Image.open(photos["astronaut"])).save(mirrored, quality=95)
    with opened(url) as page:
        upload_and_wait_for_the_edit(page, photos["astronaut"])
        slider = page.locator("#slider-column input[type=range]").first
        let_go(editor, photos["astronaut"], "a fifth visitor")
        answers = move_answers(page)
        with preparations_slowed(editor, 3.0, first_only=True) as prepared:
            drag(page, slider, 0.9, 0.3)  # answered `again`: the photo is prepared, slowly
            page.wait_for_timeout(300)
            page.set_input_files("input[type=file]", str(mirrored))
            page.wait_for_timeout(5000)  # both prepared, the slow one last
        assert answers[0].json() == {"again": True}
        assert [Path(path).name for path, *_ in prepared[:2]] == [
            photos["astronaut"].name,
            mirrored.name,
        ], "the new photo was prepared while the old one was"
        sent, before = [], len(answers)
        page.on("request", lambda r: sent.append(r) if r.url.endswith(MOVE_PATH) else None)
        drag(page, slider, 0.3, 0.8)
        wait_for_a_made_move(page, answers, after=before)
        session = page.evaluate("window.__gradio_session_hash__")
        photo_id = sent[-1].post_data_json["photo_id"]
        edited = np.asarray(editor.photo(photo_id, session).photo)
        assert np.array_equal(edited, np.asarray(Image.open(mirrored).convert("RGB")))
        assert photo_id == editor.photos.latest(session), "its downloads are made too"
