"""Fader in the browser: upload a photo, slide attributes, download the edit.

    python app.py                       # the bundled model, http://127.0.0.1:7860
    python app.py --model runs/smile_male --model alice/fader-smiling-male

The same file runs on Hugging Face Spaces. Everything it calls lives in `fader/` and is tested
without a browser; this file only builds the page and turns errors into messages.
"""

import argparse
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import gradio as gr
import torch
from PIL import Image

from fader.editor import Editor
from fader.model import ALPHA_RANGE
from fader.models import ModelLibrary, authors_choices, bundled_models
from fader.photo import too_large_message

MAX_SLIDERS = 16  # Gradio needs components up front; models with fewer hide the rest
MAX_UPLOAD = "25mb"
QUEUE_CONCURRENCY = 4  # requests of one event handled at once; more wait in Gradio's queue
EXAMPLES = Path(__file__).resolve().parent / "assets" / "examples"
EXPORTS = Path(tempfile.gettempdir()) / "fader-exports"
log = logging.getLogger("fader.app")


def user_errors(handler: Callable) -> Callable:
    """Show what went wrong as a message; never a traceback, never a dead server."""

    @wraps(handler)
    def guarded(*args: Any) -> Any:
        try:
            return handler(*args)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        except Exception:
            log.exception("Unexpected error in %s", handler.__name__)
            raise gr.Error("Something went wrong on our side; please try another photo.") from None

    return guarded


def photo_input(**kwargs: Any) -> gr.Image:
    """gr.Image whose unreadable uploads become a message instead of a server error.

    `image_mode=None` keeps Gradio from decoding the upload: only the header is read here, and
    `fader.photo.load_photo` decides (size caps included) before any pixels are decoded. The
    instance's `preprocess` is wrapped rather than subclassed: Gradio's front end renders
    components by class name.
    """
    image = gr.Image(type="filepath", image_mode=None, **kwargs)
    preprocess = image.preprocess

    def readable(payload: Any) -> str | None:
        try:
            return preprocess(payload)
        except gr.Error:
            raise
        except Image.DecompressionBombError as error:  # PIL refuses it before decoding
            raise gr.Error(too_large_message(error)) from None
        except Exception as error:
            raise gr.Error(
                f"This file is not an image we can read ({type(error).__name__}). "
                "Upload a JPEG, PNG, WebP or GIF photo."
            ) from None

    image.preprocess = readable
    return image


def plain_words(attribute: str) -> str:
    """CelebA's `Wearing_Hat` → "Wearing hat"."""
    return attribute.replace("_", " ").capitalize()


def slider_settings(editor: Editor) -> list[dict[str, Any]]:
    """Labels, ranges and visibility of the fixed slider pool for this model."""
    low, high = editor.model.config.slider_range
    names = editor.attributes
    return [
        {
            "visible": i < len(names),
            "label": plain_words(names[i]) if i < len(names) else f"attribute {i}",
            "minimum": low,
            "maximum": high,
            "value": 0.0,
        }
        for i in range(MAX_SLIDERS)
    ]


def slider_values(editor: Editor, values: tuple[float, ...]) -> dict[str, float]:
    return {name: float(v or 0.0) for name, v in zip(editor.attributes, values, strict=False)}


def write_png(image: Image.Image, name: str) -> str:
    """A PNG for download, written atomically; fast compression, since it is made on release."""
    EXPORTS.mkdir(parents=True, exist_ok=True)
    path = EXPORTS / name
    partial = path.with_suffix(f".{threading.get_ident()}.tmp")
    image.save(partial, format="PNG", compress_level=1)
    os.replace(partial, path)
    return str(path)


def example_photos() -> dict[str, list[Path]]:
    """Photos in assets/examples/<kind>/, by kind ("digits", "faces"); their licences are in
    assets/examples/LICENSE.md."""
    suffixes = {".png", ".jpg", ".jpeg", ".webp"}
    kinds: dict[str, list[Path]] = {}
    for path in sorted(EXAMPLES.rglob("*")):
        if path.suffix.lower() in suffixes:
            kinds.setdefault(path.parent.name, []).append(path)
    return kinds


def encode_examples(editor: Editor) -> None:
    """Encode the example photos ahead (the examples' cache): a click then costs one decoder
    pass. Latents rather than Gradio's cached outputs, which would hold for one model only.
    An example the model cannot take (a digit for a face model) says so when clicked."""
    for path in [p for paths in example_photos().values() for p in paths]:
        try:
            editor.load(path)
        except ValueError:
            continue


def build_demo(library: ModelLibrary) -> gr.Blocks:
    first = library.editor(library.names[0])  # fails at start, not on the first upload
    encode_examples(first)

    @user_errors
    def encode(model_name: str, image: str | None) -> tuple[Any, str, str]:
        """Align (for face models) and encode the photo once; return the crop the model sees."""
        if not image:
            return None, "Upload a photo to start.", ""
        editor = library.editor(model_name)
        handle = editor.load(image)
        loaded = editor.get(handle)
        how = f"Face aligned with {loaded.face.backend}." if loaded.face else "Centre square."
        read = [plain_words(name) for name, value in loaded.start.items() if value]
        judged = f"The classifier reads: {', '.join(read) or 'none'}." if editor.classifier else ""
        return loaded.crop, " ".join(filter(None, [how, judged, loaded.note])), handle

    @user_errors
    def starting_sliders(model_name: str, handle: str) -> list:
        """Sliders at what the model's classifier reads from the photo (0 without one)."""
        editor = library.editor(model_name)
        start = editor.get(handle).start if handle else {}
        values = [start.get(name, 0.0) for name in editor.attributes]
        return [gr.update(value=v) for v in values] + [gr.update()] * (MAX_SLIDERS - len(values))

    def loaded(model_name: str, image: str | None, handle: str) -> tuple[Editor, str]:
        """The editor and a valid handle: the cached latent, re-encoded only if it was evicted."""
        editor = library.editor(model_name)
        try:
            editor.get(handle)
        except ValueError:
            if not image:
                raise
            handle = editor.load(image)
        return editor, handle

    @user_errors
    def edit(model_name: str, image: str | None, handle: str, *values: float) -> tuple:
        """The live path: decoder only, pasted into the preview-sized photo."""
        if not image and not handle:
            return None, None, handle
        editor, handle = loaded(model_name, image, handle)
        result = editor.edit(handle, slider_values(editor, values))
        return result.crop, result.photo, handle

    @user_errors
    def export(model_name: str, image: str | None, handle: str, *values: float) -> str | None:
        """The edit pasted into the full-resolution photo, as a PNG file to download."""
        if not image and not handle:
            return None
        editor, handle = loaded(model_name, image, handle)
        result = editor.edit(handle, slider_values(editor, values), full_resolution=True)
        return write_png(result.photo, f"fader-edit-{handle[:12]}.png")

    @user_errors
    def sweep(
        model_name: str,
        image: str | None,
        handle: str,
        attribute: str,
        steps: float,
        *values: float,
    ):
        """One attribute from the slider minimum to maximum, other sliders as set."""
        if not image and not handle:
            raise ValueError("Upload a photo first.")
        editor, handle = loaded(model_name, image, handle)
        name = next((a for a in editor.attributes if plain_words(a) == attribute), attribute)
        low, high = editor.model.config.slider_range
        return editor.sweep(handle, name, low, high, int(steps), slider_values(editor, values))

    @user_errors
    def switch_model(model_name: str) -> list:
        editor = library.editor(model_name)
        kind = (
            "faces (aligned like CelebA)" if editor.aligns_faces else "whole images (centre square)"
        )
        choices = [plain_words(a) for a in editor.attributes]
        info = f"**{model_name}** edits {kind}: {', '.join(choices)}."
        sliders = [gr.update(**settings) for settings in slider_settings(editor)]
        return [info, gr.update(choices=choices, value=choices[0]), *sliders]

    # Uploads and outputs older than an hour are deleted (hourly), so disk use stays bounded.
    with gr.Blocks(
        title="Fader: edit photos by sliding attributes", delete_cache=(3600, 3600)
    ) as demo:
        gr.Markdown(
            "# Fader\nUpload a photo, then slide attributes. "
            "[Fader Networks](https://arxiv.org/abs/1706.00409), Lample et al., NeurIPS 2017."
        )
        with gr.Row():
            model_name = gr.Dropdown(library.names, value=library.names[0], label="Model", scale=1)
            model_info = gr.Markdown()
        with gr.Row():
            with gr.Column():
                image = photo_input(
                    label="Photo",
                    sources=["upload", "webcam", "clipboard"],
                    height=320,
                )
                status = gr.Markdown("Upload a photo to start.")
                crop = gr.Image(
                    label="What the model sees", format="png", interactive=False, height=200
                )
                handle = gr.Textbox(visible=False)
            with gr.Column():
                sliders = [
                    gr.Slider(
                        *ALPHA_RANGE, value=0.0, step=0.05, label=f"attribute {i}", visible=False
                    )
                    for i in range(MAX_SLIDERS)
                ]
            with gr.Column():
                edited_crop = gr.Image(
                    label="Edited crop",
                    format="png",
                    interactive=False,
                    height=200,
                    elem_id="edited-crop",
                )
                edited_photo = gr.Image(
                    label="Edited photo (preview)",
                    format="jpeg",
                    interactive=False,
                    elem_id="edited-photo",
                )
                download = gr.File(label="Full-resolution PNG", interactive=False)
        with gr.Accordion("Sweep one attribute", open=False):
            with gr.Row():
                names = [plain_words(a) for a in first.attributes]
                sweep_attribute = gr.Dropdown(
                    names, value=names[0], label="Attribute", allow_custom_value=True
                )
                sweep_steps = gr.Slider(2, 16, value=7, step=1, label="Steps")
                sweep_button = gr.Button("Sweep")
            sweep_strip = gr.Image(label="Sweep", format="png", interactive=False)
        # A click sets the photo; its change event finds the latent `encode_examples` cached.
        for kind, paths in example_photos().items():
            gr.Examples([[str(p)] for p in paths], inputs=[image], label=f"Example {kind}")

        edit_inputs = [model_name, image, handle, *sliders]
        edit_outputs = [edited_crop, edited_photo, handle]
        gr.on(
            [s.input for s in sliders] + [s.release for s in sliders],
            edit,
            edit_inputs,
            edit_outputs,
            api_name="edit",
            trigger_mode="always_last",
            show_progress="hidden",
        )
        gr.on(
            [s.release for s in sliders],
            export,
            edit_inputs,
            download,
            api_name="export",
            trigger_mode="always_last",
            show_progress="hidden",
        )

        def then_show_edit(encoded: Any) -> None:
            """After a photo is encoded: sliders to their start, the edit, its download."""
            encoded.then(
                starting_sliders, [model_name, handle], sliders, api_visibility="private"
            ).then(edit, edit_inputs, edit_outputs, api_visibility="private").then(
                export, edit_inputs, download, api_visibility="private"
            )

        then_show_edit(
            gr.on(
                [image.input, image.change],
                encode,
                [model_name, image],
                [crop, status, handle],
                api_name="encode",
                trigger_mode="always_last",
            )
        )
        sweep_button.click(
            sweep,
            [model_name, image, handle, sweep_attribute, sweep_steps, *sliders],
            sweep_strip,
            api_name="sweep",
        )
        switched = model_name.change(
            switch_model,
            model_name,
            [model_info, sweep_attribute, *sliders],
            api_name="switch_model",
        )
        then_show_edit(
            switched.then(
                encode, [model_name, image], [crop, status, handle], api_visibility="private"
            )
        )
        demo.load(
            switch_model,
            model_name,
            [model_info, sweep_attribute, *sliders],
            api_visibility="private",
        )
    return demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY)


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
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--share", action="store_true", help="also serve on a public gradio.live link"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) // 2),
        help="PyTorch threads per request (default: half the cores, so concurrent users and the "
        "web server are not starved; on 2 busy cores, 2 threads made decodes 10x slower)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO)
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        names = args.model + list(bundled_models()) + authors_choices()
        library = ModelLibrary(names, args.aligner)
        demo = build_demo(library)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    demo.launch(
        server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
