"""A photo edited for the page and the API: the live edit (the preview, or inline for a slider
move), the full-resolution export and its file name, the edit by attribute names, the sweep.
"""

import contextlib
import functools
import math
import os
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from fader.attributes import finite, flat_values, positions_by_name
from fader.editor import Editor, EditResult, PreparedPhoto
from fader.library import ModelLibrary
from fader.web_pictures import (
    UneditedPreviews,
    inline_crop,
    inline_photo,
    labelled_strip,
    shown,
)
from page.inputs import Photo, RejectedPhoto
from page.photos import faces_present, photo_for
from page.sliders import detail_value, slider_values, swept, typing

EXPORT_PREFIX = "fader-export-"  # each export's own folder
NOT_ACCEPTED = (  # a photo shown with no id: refused (said under it), or sent to the API bare
    "This photo was not accepted (the page says why under it): upload another, or send it to "
    "/encode first and pass the photo_id it answers."
)
NO_PHOTO = "Upload a photo first (through the API: /encode it, then pass the photo_id it answers)."
UNEDITED_PREVIEWS = UneditedPreviews()  # the rows of a move's preview it leaves as they were


def edited(
    editor: Editor,
    model_name: str,
    image: Photo,
    photo_id: str,
    values: Sequence[float],
    session: str,
    full_resolution: bool,
    *,
    detail: float | None = None,
    faces: Sequence[int] | None = None,
    found: tuple[str, PreparedPhoto] | None = None,
) -> tuple[EditResult, str, PreparedPhoto, dict[str, float]] | None:
    """What `edit` and `export` share, with the model `model_name`'s `editor`: the inputs
    checked, the photo found (or `found`, as `edit_by_name` finds it first), the edit made; the
    photo's id and prepared photo with it. None when no photo was accepted. `detail` is "keep
    photo detail" (None: the model's default), `faces` the face numbers to edit (None: all)."""
    sliders = slider_values(editor, model_name, values)
    detail = detail_value(detail)
    found = found or photo_for(editor, image, photo_id, session)
    if found is None:
        return None
    photo_id, prepared = found
    faces = faces_present(prepared, faces)
    result = editor.edit(
        photo_id, sliders, session, full_resolution=full_resolution, detail=detail, faces=faces
    )
    return result, photo_id, prepared, sliders


def nothing_to_edit(image: Photo) -> ValueError:
    """Why there is no photo to edit: the one sent was refused before decoding (its reason),
    or has no id (refused on the page, or sent to the API without /encode), or none was sent."""
    if isinstance(image, RejectedPhoto):
        return ValueError(image.message)
    return ValueError(NOT_ACCEPTED if image else NO_PHOTO)


def edit(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    *values: float,
    session: str = "",
    inline: bool = False,
    **options: Any,
) -> tuple:
    """The live path: decoder only, pasted into the preview-sized photo (`options` as `edited`
    takes them). `inline`, as the page shows a slider move: the crop and the preview as <img>s
    whose pictures travel inside the event's own message, so no file is written and the browser
    makes no second request before it can paint ("" clears them, with no photo). The API's edit
    (not inline) with no photo accepted says what to send (`nothing_to_edit`)."""
    if inline and typing(values, options):
        return gr.skip(), gr.skip(), gr.skip()
    editor = library.editor(model_name)
    done = edited(editor, model_name, image, photo_id, values, session, False, **options)
    if done is None:  # no photo: the page's move clears its pictures; the API's, what to send
        if not inline:
            raise nothing_to_edit(image)
        return "", "", ""
    result, photo_id, prepared, _ = done
    if inline:
        whole = functools.partial(editor.shown, prepared=prepared, whole_photo=True)
        unedited = UNEDITED_PREVIEWS.of(prepared.preview, whole)
        preview = inline_photo(result.photo, unedited, result.boxes)
        return inline_crop(result.crop), preview, photo_id
    return shown(result.crop), result.photo, photo_id


def edit_again(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    *values: float,
    session: str = "",
    **options: Any,
) -> tuple:
    """`edit`, inline, of a photo the server let go, with the photo itself to prepare it again
    (the page's hidden button: `page.moves`). Nothing changes when the session's page was given
    another photo meanwhile, or none (an upload refused): this answer would put the old photo's
    id back under it, for the next moves to edit; the old photo is let go again, so the store's
    latest photo of the session (what its downloads check) is the one shown."""
    if typing(values, options):  # a box with no number yet: nothing to edit
        return gr.skip(), gr.skip(), gr.skip()
    photos = library.editor(model_name).photos
    mark = photos.load_mark()
    answer = edit(
        library, model_name, image, photo_id, *values, session=session, inline=True, **options
    )
    if photos.shown_since(session, mark) - {answer[2]}:  # another photo, or none (refused)
        photos.discard(session, answer[2])  # not the page's photo: not its latest either
        return gr.skip(), gr.skip(), gr.skip()
    return answer


def edit_by_name(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    values: Any,
    session: str = "",
    **options: Any,
) -> tuple:
    """`edit` with the attribute values as an object by name (`values_by_position`): the
    attributes not named stay at the photo's start, what the classifier reads from it."""
    editor = library.editor(model_name)
    found = photo_for(editor, image, photo_id, session)
    if found is None:
        raise nothing_to_edit(image)
    positional = positions_by_name(editor.model.config, values, found[1].slider_start)
    done = edited(
        editor, model_name, image, photo_id, positional, session, False, found=found, **options
    )
    result, photo_id, _, _ = done
    return shown(result.crop), result.photo, photo_id


def export(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    *values: float,
    session: str = "",
    **options: Any,
) -> str:
    """The edit pasted into the full-resolution photo, as a PNG file of this request's own
    (`options` as `export_png` takes them); with no photo accepted, what to send."""
    editor = library.editor(model_name)
    path = export_png(editor, model_name, image, photo_id, values, session, **options)
    if path is None:
        raise nothing_to_edit(image)
    return path


def export_png(
    editor: Editor,
    model_name: str,
    image: Photo,
    photo_id: str,
    values: Sequence[float],
    session: str,
    folder: Path | None = None,
    **options: Any,
) -> str | None:
    """`export` with the model `model_name`'s `editor`: the PNG file's path, in a folder of its
    own in `folder` (default: the system's temporary folder)."""
    done = edited(editor, model_name, image, photo_id, values, session, True, **options)
    if done is None:
        return None
    result, photo_id, prepared, sliders = done
    folder = folder or Path(tempfile.gettempdir())
    remove_emptied_exports(folder)
    strength = editor.detail_strength(detail_value(options.get("detail")))
    moved_detail = None if math.isclose(strength, editor.detail_strength()) else strength
    path = Path(tempfile.mkdtemp(dir=folder, prefix=EXPORT_PREFIX)) / download_name(
        model_name, sliders, prepared.slider_start, moved_detail
    )
    result.photo.save(path, format="PNG", compress_level=1)  # fast: it is made on release
    return str(path)


def remove_emptied_exports(folder: Path) -> None:
    """Remove the export folders Gradio has emptied. Each export has a folder of its own (for
    its download name); Gradio deletes the file an hour on, never the folder, so a public app
    would gather one empty folder per export. Only those unchanged for a minute go: a new one
    is empty for a moment, until its file is written."""
    settled = time.time() - 60
    for entry in os.scandir(folder):
        if entry.name.startswith(EXPORT_PREFIX) and entry.stat().st_mtime < settled:
            with contextlib.suppress(OSError):  # not empty (or already gone): it stays
                os.rmdir(entry.path)


def download_name(model_name: str, sliders: dict, start: dict, detail: float | None = None) -> str:
    """`fader-<model>-<attribute>=<value>….png`, in characters every file system takes: the
    values not 0 or not at the photo's `start` (a three's `three=0`), or "unchanged" when every
    slider is at its start; then "keep photo detail" when it is not the model's default
    (`detail`, None: the default), never cut off by the name's length limit."""
    model = re.sub(r"[^A-Za-z0-9]+", "-", Path(model_name).name).strip("-")[:40] or "model"
    flat, begun = flat_values(sliders), flat_values(start)
    moved = {name for name, value in flat.items() if not math.isclose(value, begun.get(name, 0))}
    values = "_".join(f"{name}={value:g}" for name, value in flat.items() if value or name in moved)
    label = values if moved else "unchanged"
    suffix = "" if detail is None else f"_detail={detail:g}"
    name = re.sub(r"[^A-Za-z0-9=._-]+", "-", f"fader-{model}-{label}")
    return name[: 120 - len(suffix)] + suffix + ".png"


class PageExports:
    """Each session's last export from the page, by the inputs it was made of. An upload (and
    "Reset all") asks for one export twice: at the end of its chain, and as the sliders are
    set to the photo's start, whose `change` a move's download follows; the second is answered
    with the first's file, waiting for it if it is still being made."""

    def __init__(self, sessions: int = 1024, locks: int = 64):
        self.sessions = sessions
        self.last: OrderedDict[str, tuple[tuple, str]] = OrderedDict()  # session → (inputs, path)
        self.locks = [threading.Lock() for _ in range(locks)]  # a session's exports in turn

    def made(self, session: str, inputs: tuple, make: Callable[[], str | None]) -> str | None:
        with self.locks[hash(session) % len(self.locks)]:
            known, path = self.last.get(session, ((), ""))
            if known == inputs and os.path.isfile(path):
                return path
            path = make()
            if path is not None:
                self.last[session] = inputs, path
                self.last.move_to_end(session)
                while len(self.last) > self.sessions:
                    self.last.popitem(last=False)
            return path


def page_export(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    *values: float,
    session: str = "",
    exports: PageExports,
    **options: Any,
) -> Any:
    """`export` (the same `options`) as the page asks for it: once per set of inputs."""
    editor = library.editor(model_name)
    return export_once(editor, model_name, image, photo_id, values, session, exports, **options)


def export_once(
    editor: Editor,
    model_name: str,
    image: Photo,
    photo_id: str,
    values: Sequence[float],
    session: str,
    exports: PageExports,
    **options: Any,
) -> Any:
    """`page_export` with the model `model_name`'s `editor`. With no face ticked the download
    is left as it is: the move's note under the sliders says to tick one. (A whole-image
    model's photo has no faces to tick: none is all of it.)"""
    faces = options.get("faces")
    if faces is not None and not faces and editor.aligns_faces:
        return gr.skip()
    inputs = (model_name, photo_id, values, options.get("detail"), faces and tuple(faces))
    return exports.made(
        session,
        inputs,
        lambda: export_png(editor, model_name, image, photo_id, values, session, **options),
    )


def export_move(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    *values: float,
    session: str = "",
    exports: PageExports,
    **options: Any,
) -> Any:
    """`page_export` (the same `options`) for slider moves, answered a moment late
    (`app.EXPORT_WAIT`): for a photo the session no longer shows (another was uploaded
    meanwhile) it leaves the download alone, as it does when there is no photo (a refused
    photo's download is cleared by the upload's own export), and while a slider's box holds
    no number (`typing`)."""
    if typing(values, options):
        return gr.skip()
    editor = library.editor(model_name)
    if photo_id and editor.photos.latest(session) != photo_id:
        return gr.skip()
    path = export_once(editor, model_name, image, photo_id, values, session, exports, **options)
    return gr.skip() if path is None else path


def sweep(
    library: ModelLibrary,
    model_name: str,
    image: Photo,
    photo_id: str,
    attribute: str,
    steps: float,
    *values: float,
    detail: float | None = None,
    faces: Sequence[int] | None = None,
    session: str = "",
) -> Image.Image:
    """One attribute from the slider minimum to maximum, other sliders as set; a row per face."""
    (steps,) = finite([steps], "The number of steps")
    editor = library.editor(model_name)
    sliders = slider_values(editor, model_name, values)
    detail = detail_value(detail)
    found = photo_for(editor, image, photo_id, session)
    if found is None:
        raise nothing_to_edit(image)
    photo_id, prepared = found
    name, label = swept(editor, attribute)
    low, high = editor.model.config.slider_range
    faces = faces_present(prepared, faces)
    strip = editor.sweep(photo_id, name, low, high, int(steps), sliders, session, detail, faces)
    return labelled_strip(strip, np.linspace(low, high, int(steps)).tolist(), label)
