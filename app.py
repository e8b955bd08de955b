"""Fader in the browser: upload a photo, slide attributes, download the edit.

    python app.py                       # the bundled model, http://127.0.0.1:7860
    python app.py --model runs/smile_male --model alice/fader-smiling-male

The same file runs on Hugging Face Spaces. This file is the page: `layout` builds it, `wire`
ties its events to the handlers in `page/` (plain functions of the model library, their inputs
and the visitor's session, testable without a server), and `main` starts it. The handlers
edit through `fader/`.
"""

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import torch
from starlette.middleware import Middleware

from fader.library import ModelLibrary, authors_choices, bundled_models, choice_label
from fader.photo import MAX_BYTES
from fader.request_limits import RequestLimits
from fader.stream import Streams
from page.api import api_docs, api_examples, documented
from page.calls import for_session, limited, pictures_as_files, user_errors
from page.edits import (
    PageExports,
    edit,
    edit_again,
    edit_by_name,
    export,
    export_move,
    page_export,
    sweep,
)
from page.inputs import CountSlider, FaceChoice, NameChoice, PhotoId, TypedSlider, photo_input
from page.models import EXAMPLE_KINDS, GET_A_FACE_MODEL, example_kind, switch_model
from page.moves import (
    DEMO_MOVES,
    MOVE_AGAIN_ID,
    MOVE_ROUTE,
    MOVE_SCRIPT,
    Moves,
    after_preparing,
)
from page.photos import (
    FACE_LABELS,
    encode,
    encode_examples,
    example_photos,
    face_choices,
    page_encode,
    picked_faces,
)
from page.queue_pace import pace_queue
from page.sliders import (
    DETAIL_RANGE,
    reset_all,
    reset_targets,
    slider_settings,
    starting_sliders,
    sweep_choices,
)
from page.webcam import LiveWebcam, live_webcam_layout, wire_live_webcam

MAX_UPLOAD = f"{MAX_BYTES // 2**20}mb"  # the photo cap, as Gradio's upload route takes it
QUEUE_CONCURRENCY = 4  # requests of one event handled at once; more wait in Gradio's queue
TRACK_DOWNLOADS = gr.Progress(track_tqdm=True)  # a handler's default: Gradio fills it per call
LIVE_EDITS = QUEUE_CONCURRENCY  # slider moves in flight at once: their decodes share a batch
LIVE_FRAMES = QUEUE_CONCURRENCY  # webcam frames edited at once, whatever the number of streams
EXPORT_WAIT = 0.3  # seconds a slider move's export waits, so the live edit has the CPU
CACHE_LIFETIME = 3600  # seconds Gradio keeps uploads and exports (checked as often)
# Gradio's queue rebuilds its monitoring summary (a pandas table over its last 10,000 events)
# after every queued event by default; the app has no use for it, so once per 1,000 events over
# the last 1,000 (bench/move_cost.py measures the difference). A host's own values are kept.
GRADIO_SETTINGS = {
    "GRADIO_ANALYTICS_CACHE_FREQUENCY": "1000",
    "GRADIO_ANALYTICS_MAX_EVENTS": "1000",
}
ASSETS = Path(__file__).resolve().parent / "assets"
CSS = (ASSETS / "page.css").read_text()  # the layout on a desktop and on a phone
# Gradio scopes `css` to its container, so the container's own overflow (hidden, which would
# disable sticky positioning) is overridden from the page's head instead.
HEAD = (
    "<style>.gradio-container { overflow: visible !important; }</style>"
    f"<script>{(ASSETS / 'page.js').read_text()}</script>"
)


LAUNCH = {  # every launch of the page
    "css": CSS,
    "head": HEAD,
    "max_file_size": MAX_UPLOAD,
    "app_kwargs": {"middleware": [Middleware(RequestLimits)], "routes": [MOVE_ROUTE]},
}


@dataclass
class Page:
    model_name: gr.Dropdown
    current_model: gr.State  # the model the page shows: where a failed switch goes back to
    model_loading: gr.Markdown  # a model's download shows its progress here
    model_info: gr.Markdown
    face_help: gr.Accordion  # how to get a face model, folded; shown with other models
    image: gr.Image
    examples: list[gr.Column]  # example photos by kind (EXAMPLE_KINDS), the model's shown
    status: gr.Markdown
    crop: gr.Image
    photo_id: gr.Textbox
    sliders: list[gr.Slider]
    slider_note: gr.Markdown
    reset_all: gr.Button
    reset_targets: gr.HTML  # where each slider's ↺ goes (`reset_targets`), hidden
    detail: gr.Slider
    faces: gr.CheckboxGroup
    faces_ticked: gr.State  # the ticked face numbers (None: all), as Gradio's page events read them
    move_again: gr.Button  # hidden: a move's script clicks it for a photo the server let go
    edited_crop: gr.HTML  # the live edit, its pictures inline (`edit(inline=True)`)
    edited_photo: gr.HTML
    edit_files: list[gr.Image]  # never shown: the `/edit` API's crop and preview, as files
    values: gr.JSON  # never shown: `/edit_by_name`'s attribute values by name
    download: gr.File
    sweep_attribute: gr.Dropdown
    sweep_steps: gr.Slider
    sweep_button: gr.Button
    sweep_strip: gr.Image
    webcam: LiveWebcam | None = None

    @property
    def encoded(self) -> list:
        """What `/encode` answers: the crop the model sees, the note, the photo's id."""
        return [self.crop, self.status, self.photo_id]

    @property
    def page_encoded(self) -> list:
        """The page's own encoding: a refusal also clears the last photo's edit and download,
        at once."""
        return [*self.encoded, self.edited_crop, self.edited_photo, self.download]

    @property
    def edit_inputs(self) -> list:
        """What the API's edits take: the model, the photo, its id, the sliders, the controls."""
        controls = [self.detail, self.faces]
        return [self.model_name, self.image, self.photo_id, *self.sliders, *controls]

    @property
    def page_inputs(self) -> list:
        """The page's own Gradio events (the downloads, an edit with the photo itself): they
        read the ticked faces from the session (see `layout`)."""
        return [*self.edit_inputs[:-1], self.faces_ticked]

    @property
    def move_fields(self) -> list:
        """What a move sends to its route (`page.moves.Move`'s order): the ticks by label, as
        its script sees them (a script cannot read a State; the route drops absent faces)."""
        return [self.model_name, self.photo_id, *self.sliders, self.detail, self.faces]

    @property
    def move_outputs(self) -> list:
        """What a move's answer sets: the pictures, the sliders settled, the note under them."""
        return [self.edited_crop, self.edited_photo, *self.sliders, self.detail, self.slider_note]

    @property
    def edit_outputs(self) -> list:
        """What the page shows of an edit."""
        return [self.edited_crop, self.edited_photo, self.photo_id]

    @property
    def api_outputs(self) -> list:
        """The API's edit: the crop and the preview, as files, and the photo's id."""
        return [*self.edit_files, self.photo_id]


def layout(library: ModelLibrary) -> Page:
    first = library.editor(library.names[0])
    gr.Markdown(
        "# Fader\nUpload a photo, then slide attributes. "
        "[Fader Networks](https://arxiv.org/abs/1706.00409), Lample et al., NeurIPS 2017."
    )
    with gr.Row():
        choices = [(choice_label(name), name) for name in library.names]
        with gr.Column(scale=1):
            model_name = NameChoice(
                choices=choices, value=library.names[0], label="Model", allow_custom_value=True
            )
            # Where a model's download shows its progress: under the list, not over any text.
            model_loading = gr.Markdown("", elem_id="model-loading")
        current_model = gr.State(library.names[0])
        with gr.Column(scale=2):
            model_info = gr.Markdown(elem_id="model-info")
            with gr.Accordion(
                "How to get a face model", open=False, visible=False, elem_id="face-help"
            ) as face_help:
                gr.Markdown(GET_A_FACE_MODEL)
    with gr.Row(elem_id="workspace"):
        with gr.Column(elem_id="photo-column"):
            sources = ["upload", "webcam", "clipboard"]
            image = photo_input(label="Photo", sources=sources, height=320, elem_id="photo")
            status = gr.Markdown("Upload a photo to start.", elem_id="status")  # in view
            # A click sets the photo; its change event finds the latent `encode_examples` cached.
            # Under the photo box, so that both are on the first screen; those of the model's kind.
            kind = example_kind(first)
            examples = []
            for each in EXAMPLE_KINDS:
                with gr.Column(visible=each == kind, elem_id=f"examples-{each}") as column:
                    paths = example_photos().get(each, [])
                    gr.Examples([[str(p)] for p in paths], inputs=[image], label=f"Example {each}")
                examples.append(column)
            download = gr.File(label="Full-resolution PNG", interactive=False, elem_id="download")
            crop = gr.Image(
                label="What the model sees", format="png", interactive=False, height=200
            )
            photo_id = PhotoId(visible=False, label="photo_id")
        with gr.Column(elem_id="slider-column"):
            # Built for the first model (the API page describes them so), then set per model.
            sliders = [
                TypedSlider(
                    **settings, step=0.05, elem_id=f"slider-{i}", elem_classes=["attribute-slider"]
                )
                for i, settings in enumerate(slider_settings(first))
            ]
            slider_note = gr.Markdown(elem_id="slider-note")  # a typed value set to an end
            reset_all = gr.Button("Reset all", size="sm", elem_id="reset-all")
            targets = gr.HTML(reset_targets([], 0.0), elem_id="reset-targets")  # read by HEAD
            detail = TypedSlider(
                *DETAIL_RANGE,
                value=0.0,
                step=0.05,
                label="Keep photo detail",
                info="0: the model's output alone; 1: the photo's own detail kept (lower it "
                "for strong edits, where the old shape shows through)",
                elem_id="slider-detail",
            )
            labels = FACE_LABELS  # the API's choices; the page shows the photo's
            faces = FaceChoice(
                labels, value=labels, type="index", label="Faces to edit", visible=False
            )
            # What the page's Gradio events (the downloads, an edit with the photo itself) read
            # instead of the checkboxes: one sent while a new photo's faces are listed would
            # carry the old photo's ticks, which Gradio refuses against the new choices (an
            # error on the page); `faces_present` drops the faces a photo does not have. A move
            # (`page.moves`) sends the ticks by label, as its script sees them: a script cannot
            # read a State, and the route takes any label.
            faces_ticked = gr.State(None)
            move_again = gr.Button("Edit again", elem_id=MOVE_AGAIN_ID)  # hidden by page.css
        with gr.Column(elem_id="result-column"):
            edited_crop = gr.HTML(
                label="Edited crop", show_label=True, container=True, elem_id="edited-crop"
            )
            edited_photo = gr.HTML(
                label="Edited photo (preview)",
                show_label=True,
                container=True,
                elem_id="edited-photo",
            )
            edit_files = [
                gr.Image(format="png", interactive=False, visible=False, label="edited_crop"),
                gr.Image(format="jpeg", interactive=False, visible=False, label="edited_photo"),
            ]
            values = gr.JSON(visible=False, label="values")  # /edit_by_name's object by name
    with gr.Accordion("Sweep one attribute", open=False):
        with gr.Row():
            names = sweep_choices(first)
            sweep_attribute = NameChoice(
                choices=names,
                value=names[0] if names else None,
                label="Attribute",
                allow_custom_value=True,
            )
            sweep_steps = CountSlider(2, 16, value=7, step=1, label="Steps")
            sweep_button = gr.Button("Sweep")
        sweep_strip = gr.Image(label="Sweep", format="png", interactive=False)
    webcam = live_webcam_layout(first.aligns_faces)
    return Page(
        model_name, current_model, model_loading, model_info, face_help, image, examples, status,
        crop, photo_id, sliders, slider_note, reset_all, targets, detail, faces, faces_ticked,
        move_again, edited_crop, edited_photo, edit_files, values, download, sweep_attribute,
        sweep_steps, sweep_button, sweep_strip, webcam=webcam,
    )  # fmt: skip


def model_page(page: Page) -> list:
    """What `switch_model` updates."""
    return [
        page.model_name, page.current_model, page.model_info, page.face_help,
        page.sweep_attribute, *page.sliders, page.detail, *page.examples, page.webcam.section,
        page.model_loading,
    ]  # fmt: skip


HIDDEN = {"api_visibility": "private"}  # the page's own events, not the API's
LIVE = {"trigger_mode": "always_last", "show_progress": "hidden"}  # follows a slider as it goes


def bound_handlers(page: Page, library: ModelLibrary) -> dict[str, Callable]:
    """The handlers in `page/`, each bound to the library and the visitor's session, answering
    pictures as files where the API needs them; the public ones named and described for
    clients."""
    # Every file answered to a visitor (exports, the API's pictures) is the request's own, in
    # the app's own folder of Gradio's cache: deleted as the cache is.
    files = Path(page.download.GRADIO_CACHE) / "fader-files"
    exports = files / "exports"  # apart from the pictures, so clearing them reads few entries
    exports.mkdir(parents=True, exist_ok=True)
    controls = ("detail", "faces")  # the inputs after the sliders, by their keyword names
    once = {"exports": PageExports()}  # the page's exports: one per set of inputs

    def with_files(handler: Callable, outputs: Sequence[gr.Image]) -> Callable:
        return pictures_as_files(handler, outputs, files)

    bound = {
        "encode": for_session(with_files(encode, page.encoded), library),
        "page_encode": for_session(with_files(page_encode, page.page_encoded), library),
        "starting_sliders": for_session(starting_sliders, library),
        "reset_all": for_session(reset_all, library),
        "face_choices": for_session(face_choices, library),
        "edit": for_session(with_files(edit, page.api_outputs), library, controls),
        "edit_by_name": for_session(with_files(edit_by_name, page.api_outputs), library, controls),
        "edit_again": for_session(edit_again, library, controls),
        "sweep": for_session(with_files(sweep, [page.sweep_strip]), library, controls),
        "export": for_session(export, library, controls, folder=exports),
        "page_export": for_session(page_export, library, controls, folder=exports, **once),
        "export_move": for_session(export_move, library, controls, folder=exports, **once),
    }
    for name, (names, doc) in api_docs(library).items():
        documented(bound[name], names, doc)
    return bound


def wire(
    page: Page, library: ModelLibrary, edits: asyncio.Semaphore, streams: Streams | None = None
) -> None:
    """Each part of the page tied to its handlers. Gradio's API page lists the public
    endpoints in the order they are wired here, and names an event given no name after its
    handler (`edit`, then `edit_1`…): the API's own endpoints come first, to keep theirs."""
    bound = bound_handlers(page, library)
    wire_api_edits(page, bound, edits)
    wire_slider_moves(page, bound, limited(bound["edit_again"], edits))
    wire_faces_and_reset(page, bound)
    wire_photo(page, bound)
    wire_sweep(page, bound)
    wire_model_switch(page, library, bound)
    assert page.webcam is not None
    webcam_controls = [page.model_name, *page.sliders, page.detail]
    streams = Streams() if streams is None else streams
    wire_live_webcam(page.webcam, webcam_controls, library, streams, LIVE_FRAMES)


def then_move(event: Any, page: Page) -> Any:
    """After `event`, the page's edit as a slider's move makes it: on the app's own route, in
    turn with the sliders' moves (`page.moves`), so no older edit is shown over a newer one."""
    return event.then(None, page.move_fields, page.move_outputs, js=MOVE_SCRIPT, **HIDDEN)


def wire_slider_moves(page: Page, bound: dict[str, Callable], moving: Callable) -> None:
    """A slider's move: the live edit with the box set to an end, then its download; for a
    photo the server let go, the edit through Gradio (`moving`), which prepares it again."""
    # A drag fires input (live) and release, keys and typing input and change, the reset button
    # input and change (HEAD's script types the photo's start into the box), a value the server
    # sets change: the edit follows input and release, the download release and change.
    moved = [*page.sliders, page.detail]
    slider_moves = [s.input for s in moved] + [s.release for s in moved]
    # A move is one POST to the app's own route (`page.moves`), made by the event's script:
    # Gradio's handling of an event costs the server more than a face's edit after its decode.
    # Its answer also settles the sliders: a number typed past an end set to the end, and a
    # word under the sliders (`settle`).
    gr.on(slider_moves, None, page.move_fields, page.move_outputs, js=MOVE_SCRIPT, **LIVE, **HIDDEN)
    # The photo itself, for the one the route no longer holds: the edit answers its new id. It
    # takes its turn with the moves: those made meanwhile wait for it (at most MOVE_TIMEOUT_MS),
    # then go under that id (`after_preparing`, on its success or failure), so none is painted
    # over by it and none asks for the photo again meanwhile.
    again = {"api_name": "move_again", "queue": False, **LIVE, **HIDDEN}
    prepared = page.move_again.click(moving, page.page_inputs, page.edit_outputs, **again)
    prepared.success(None, page.photo_id, None, js=after_preparing(failed=False), **HIDDEN)
    failed = after_preparing(failed=True)
    prepared.failure(None, page.photo_id, page.slider_note, js=failed, **HIDDEN)
    # The download follows outside the queue too, EXPORT_WAIT after its trigger (a drag fires
    # `change` as it goes): exported alongside, a live edit took ~2x as long to paint on 2 cores
    # (bench/browser_latency.py); the download is not what the eye follows. The last trigger's
    # values are still the ones exported (always_last).
    releases = [s.release for s in moved] + [s.change for s in moved]
    exporting = limited(
        bound["export_move"], asyncio.Semaphore(QUEUE_CONCURRENCY), wait=EXPORT_WAIT
    )
    export_options = {"api_name": "export_move", "queue": False, **LIVE, **HIDDEN}
    gr.on(releases, exporting, page.page_inputs, page.download, **export_options)


def wire_faces_and_reset(page: Page, bound: dict[str, Callable]) -> None:
    """Ticking a face, and "Reset all": each followed by the edit (as a move) and its download."""
    # Ticking a face: kept for the downloads first, then the edit and its download.
    picked = page.faces.input(
        picked_faces, page.faces, page.faces_ticked, api_name="pick_faces", queue=False, **HIDDEN
    )
    then_move(picked, page).then(
        bound["page_export"], page.page_inputs, page.download, api_name="export_faces", **HIDDEN
    )
    reset = page.reset_all.click(
        bound["reset_all"],
        [page.model_name, page.photo_id],
        [*page.sliders, page.detail, page.reset_targets, page.slider_note],
        api_name="reset_all",
        queue=False,
        **HIDDEN,
    )
    then_move(reset, page).then(bound["page_export"], page.page_inputs, page.download, **HIDDEN)


def wire_api_edits(page: Page, bound: dict[str, Callable], edits: asyncio.Semaphore) -> None:
    """The API's own endpoints, which nothing in the page triggers, in the order a client
    calls them (the API page lists them so): the encoding, the edit (sharing `edits` with the
    page's moves) and the edit by name, answering files through the queue, and the export."""
    api = {"concurrency_limit": None}  # waiting for a turn holds no thread
    edit_inputs, outputs = page.edit_inputs, page.api_outputs
    gr.on([], bound["encode"], [page.model_name, page.image], page.encoded, api_name="encode")
    gr.on([], limited(bound["edit"], edits), edit_inputs, outputs, api_name="edit", **api)
    by_name = [*edit_inputs[:3], page.values, page.detail, page.faces]  # the values by name
    gr.on(
        [], limited(bound["edit_by_name"], edits), by_name, outputs, api_name="edit_by_name",
        **api,
    )  # fmt: skip
    gr.on([], bound["export"], edit_inputs, page.download, api_name="export")  # at once


def then_show_edit(event: Any, page: Page, bound: dict[str, Callable]) -> None:
    """After a photo is encoded: sliders to their start, the faces found, the edit, its
    download (or, for a refused photo, every output cleared)."""
    photo = [page.model_name, page.photo_id]
    faces = [page.faces, page.faces_ticked]
    starts = [*page.sliders, page.reset_targets, page.slider_note]
    faced = event.then(bound["starting_sliders"], photo, starts, **HIDDEN).then(
        bound["face_choices"], photo, faces, **HIDDEN
    )
    then_move(faced, page).then(bound["page_export"], page.page_inputs, page.download, **HIDDEN)


def wire_photo(page: Page, bound: dict[str, Callable]) -> None:
    """A photo uploaded (or an example clicked): encoded, then shown edited."""
    # `change` alone: an upload fires `input` and `change`, and both encoded and exported the
    # photo twice (tests/test_work_per_event_browser.py); an example click fires only `change`.
    uploaded = gr.on(
        [page.image.change],
        bound["page_encode"],
        [page.model_name, page.image],
        page.page_encoded,
        api_name="page_encode",
        trigger_mode="always_last",
        **HIDDEN,
    )
    then_show_edit(uploaded, page, bound)


def wire_sweep(page: Page, bound: dict[str, Callable]) -> None:
    sweep_inputs = [page.model_name, page.image, page.photo_id, page.sweep_attribute]
    page.sweep_button.click(
        bound["sweep"],
        [*sweep_inputs, page.sweep_steps, *page.sliders, page.detail, page.faces],
        page.sweep_strip,
        api_name="sweep",
    )


def wire_model_switch(page: Page, library: ModelLibrary, bound: dict[str, Callable]) -> None:
    """Another model chosen: its page (its download's progress under the list), then, once the
    page is on it, the photo encoded for it and shown edited."""

    def switch(model_name: str, current: str, progress=TRACK_DOWNLOADS) -> list:
        """The page's own switch to another of the app's models, from the one it shows: the
        parts of the page for that model. API clients need not call it: every edit names its
        model."""
        # `progress`: downloads and conversions show their progress (tqdm) in the page.
        return switch_model(library, model_name, current)

    # On `change`, not `input`: Gradio's list fires `input` on every blur, so choosing an option
    # fired two switches (the second waited on the first's download, and the page showed its
    # status, never the download's bar), and a click into the list and out reset the sliders.
    page.model_name.change(
        user_errors(switch),
        [page.model_name, page.current_model],
        model_page(page),
        api_name="switch_model",
        show_progress_on=page.model_loading,  # a download's bar in one place, not on every slider
        # A model chosen during a download waits for it; the list then shows the model the page
        # moved to (the switch's answer sets it), and the waiting switch changes nothing.
        trigger_mode="always_last",
    )
    # Only when the page moved to another model: a refused name (the list set back) keeps the
    # photo, the sliders and the edit as they were.
    encoded = page.current_model.change(
        bound["page_encode"], [page.model_name, page.image], page.page_encoded, **HIDDEN
    )
    then_show_edit(encoded, page, bound)


def build_demo(
    library: ModelLibrary,
    live_edits: int = LIVE_EDITS,
    streams: Streams | None = None,
    cache_lifetime: int = CACHE_LIFETIME,
) -> gr.Blocks:
    """The page for `library`'s models. `live_edits` slider moves are handled at once (their
    decodes batched); 1 handles them one at a time, the baseline `bench/app_load.py` measures.
    `streams` holds the live webcam's per-session trackers (a fresh one by default); uploads
    and answers are deleted `cache_lifetime` seconds on."""
    encode_examples(library, library.names[0])  # and a model that cannot load fails here
    with gr.Blocks(
        title="Fader: edit photos by sliding attributes",
        delete_cache=(cache_lifetime, cache_lifetime),
    ) as demo:
        page = layout(library)
        api_examples(library, page.image, page.photo_id, page.values)
        # The page's moves (`page.moves`, and the page's other edits) and the API's edits share
        # `live_edits` turns: the decodes of those in flight are batched together.
        edits = asyncio.Semaphore(live_edits)
        wire(page, library, edits, streams)
        DEMO_MOVES[demo] = Moves(library, edits)
        demo.load(
            user_errors(lambda model_name: switch_model(library, model_name)),
            page.model_name,
            model_page(page),
            api_visibility="private",
        )
    return pace_queue(demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Edit photos by sliding attributes (Fader Networks)."
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        help="a bundled model name, 'authors: eyeglasses' (the authors' CelebA models, downloaded "
        "and converted on first use), a local model folder or a Hugging Face repo id (repeatable; "
        "the first is shown first). The bundled models are always offered.",
    )
    parser.add_argument("--aligner", default="auto", choices=["auto", "dlib", "face_alignment"])
    parser.add_argument(
        "--host",
        help="address to serve on (default: $GRADIO_SERVER_NAME, as a Space sets it, else "
        "127.0.0.1; 0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port", type=int, help="port (default: $GRADIO_SERVER_PORT, else 7860 or the next free)"
    )
    parser.add_argument(
        "--share", action="store_true", help="also serve on a public gradio.live link"
    )
    parser.add_argument(
        "--mcp",
        action="store_true",
        help="also serve the API as an MCP server at /gradio_api/mcp/, for assistants: encode a "
        "photo, edit it by attribute values, sweep an attribute (needs gradio[mcp])",
    )
    parser.add_argument(
        "--live-edits",
        type=int,
        default=LIVE_EDITS,
        help=f"slider moves handled at once, their decodes batched (default {LIVE_EDITS}; "
        "1 handles one move at a time)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="threads PyTorch and OpenCV may use for one request's work (default: half the "
        "cores, so concurrent users and the web server are not starved; on 2 busy cores, 2 "
        "threads made decodes 10x slower)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)  # its pastes too: more threads cost a busy server more CPU
    for name, value in GRADIO_SETTINGS.items():  # read as the queue is made, in build_demo
        os.environ.setdefault(name, value)
    try:
        # The user's models first; else a face model when one can be had (the authors', once
        # converted or downloadable), else the bundled one, so a visitor meets a face model.
        names = args.model + authors_choices() + list(bundled_models())
        library = ModelLibrary(names, args.aligner)
        if args.live_edits < 1:
            raise ValueError("--live-edits must be at least 1.")
        demo = build_demo(library, args.live_edits)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # Only what the user gave: Gradio reads GRADIO_SERVER_NAME/PORT itself (a Space sets them),
    # and an explicit value would override them.
    demo.launch(
        server_name=args.host, server_port=args.port, share=args.share, mcp_server=args.mcp,
        **LAUNCH,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
