"""The real Gradio server on 127.0.0.1, driven through gradio_client as API users would."""

import asyncio
import base64
import io
import os
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from skimage import data as skimage_data

import app
from fader import web_pictures
from fader.library import ModelLibrary
from fader.model import FaderConfig, FaderNetwork
from page import edits
from page.calls import limited
from page.edits import EXPORT_PREFIX, PageExports, export_move
from page.moves import MAX_MOVE_BYTES, MOVE_PATH, Move, Moves
from page.photos import NO_CLASSIFIER, example_photos, face_choices
from page.sliders import MAX_SLIDERS, slider_settings
from tests.group_photo import changed, group_photo

NEUTRAL = [0.0] * MAX_SLIDERS
LARGEST = ["Face 1 (largest)"]  # the "Faces to edit" input after "Keep photo detail"


def sliders(**values: float) -> list[float]:
    order = ["Smiling", "Male"]
    return [values.get(order[i], 0.0) if i < len(order) else 0.0 for i in range(MAX_SLIDERS)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serve(
    library: ModelLibrary, cache_lifetime: int = app.CACHE_LIFETIME, **launch
) -> Iterator[str]:
    """The app on 127.0.0.1, as `python app.py` launches it (`launch` overriding its launch
    options), for as long as the caller holds it; yields its URL."""
    demo = app.build_demo(library, cache_lifetime=cache_lifetime)
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        **(app.LAUNCH | launch),
    )
    server = demo.server
    try:
        yield url
    finally:
        demo.close()  # waits 5 s at most; the shutdown then deletes this server's cache files,
        if server is not None:  # which may have the same paths (same content) as the next
            server.thread.join(120)  # test's: it must not overlap it


@pytest.fixture(scope="module")
def server(models: dict[str, str]) -> Iterator[tuple[Client, str]]:
    with serve(ModelLibrary([models["face"], models["scene"]], aligner="dlib")) as url:
        yield Client(url, verbose=False), url


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("photos")
    files = {
        "astronaut": Image.fromarray(skimage_data.astronaut()),
        "coffee": Image.fromarray(skimage_data.coffee()),
        "tiny": Image.new("RGB", (16, 16), "white"),
    }
    paths = {}
    for name, image in files.items():
        paths[name] = folder / f"{name}.jpg"
        image.save(paths[name], quality=95)
    paths["text"] = folder / "notes.jpg"
    paths["text"].write_text("this is not an image")
    paths["empty"] = folder / "empty.png"
    paths["empty"].write_bytes(b"")
    paths["huge"] = folder / "huge.png"  # a 12000×12000 header: must be refused before decoding
    paths["huge"].write_bytes(png(12000, 12000, 8, 2, b""))
    paths["truncated"] = folder / "truncated.jpg"
    paths["truncated"].write_bytes(paths["astronaut"].read_bytes()[:3000])
    return paths


def test_every_event_has_an_api_name(server):
    client, _ = server
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/encode", "/edit", "/export", "/sweep", "/switch_model"} <= set(endpoints)


def test_upload_edit_sweep_through_the_real_server(server, models, photos):
    client, _ = server
    crop, status, handle = client.predict(
        models["face"], handle_file(photos["astronaut"]), api_name="/encode"
    )
    assert "Face aligned with dlib" in status and handle
    assert ("classifier reads" in status) != (NO_CLASSIFIER in status), "where sliders start"
    shown = np.asarray(Image.open(crop))
    assert shown.shape == (192, 192, 3), "a 64² crop is shown 3× larger"
    assert np.array_equal(shown, shown[::3, ::3].repeat(3, 0).repeat(3, 1)), "pixel for pixel"
    neutral_crop, _, same = client.predict(models["face"], None, handle, *NEUTRAL, api_name="/edit")
    smiling_crop, smiling_photo, _ = client.predict(
        models["face"], None, handle, *sliders(Smiling=2.0), api_name="/edit"
    )
    assert same == handle
    assert Image.open(smiling_photo).size == (512, 512), "a 512² photo is its own preview"
    assert not np.array_equal(
        np.asarray(Image.open(neutral_crop)), np.asarray(Image.open(smiling_crop))
    )
    strip = client.predict(models["face"], None, handle, "Smiling", 5, *NEUTRAL, api_name="/sweep")
    assert Image.open(strip).size == (5 * 128, 128 + 24), "five 2× tiles over a row of α labels"


def test_clicking_an_example_finds_it_already_encoded(models, tmp_path):
    """Examples are encoded when the app starts: the click's encode runs no encoder."""
    library = ModelLibrary([models["scene"]])
    examples = [p for paths in example_photos().values() for p in paths]
    not_an_example = tmp_path / "mirrored.png"
    Image.open(examples[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(not_an_example)
    encoder_calls = []
    with serve(library) as url:
        encoder = library.editor(models["scene"]).model.encoder
        hook = encoder.register_forward_hook(lambda *_: encoder_calls.append(1))
        client = Client(url, verbose=False)
        for example in examples:
            crop, status, _ = client.predict(
                models["scene"], handle_file(example), api_name="/encode"
            )
            if example.parent.name == "faces":  # this model edits no faces, and says so
                assert "shows a face" in status and crop is None
            else:
                assert status.startswith("Centre square") and Image.open(crop).size == (192, 192)
        assert len(examples) >= 5 and encoder_calls == []
        client.predict(models["scene"], handle_file(not_an_example), api_name="/encode")
        hook.remove()
    assert encoder_calls == [1], "a photo that is not an example is encoded on upload"


def test_a_forgotten_latent_is_rebuilt_from_the_photo(server, models, photos):
    client, _ = server
    crop, _, handle = client.predict(
        models["face"], handle_file(photos["astronaut"]), "not-a-handle", *NEUTRAL, api_name="/edit"
    )
    assert Image.open(crop).size == (192, 192) and handle != "not-a-handle"


def test_a_photo_sent_to_edit_without_an_id_is_answered_with_what_to_do(server, models, photos):
    """/edit and /export with the photo itself and no photo_id say to /encode it first, and
    with neither, to upload one, where they answered empty outputs with no word why."""
    client, _ = server
    astronaut = handle_file(photos["astronaut"])
    for endpoint in ("/edit", "/export"):
        with pytest.raises(AppError, match="send it to /encode first"):
            client.predict(models["face"], astronaut, "", *NEUTRAL, api_name=endpoint)
        with pytest.raises(AppError, match="Upload a photo first"):
            client.predict(models["face"], None, "", *NEUTRAL, api_name=endpoint)


def test_switching_models_relabels_the_sliders(server, models):
    client, _ = server
    choice, info, sweep_choice, *slider_states, _ = client.predict(
        models["scene"], models["face"], api_name="/switch_model"
    )
    assert choice["value"] == models["scene"]
    assert "does not edit faces" in info and "Day, Night, Dusk" in info
    assert "0 = without the attribute, 1 = with it" in info, "the sliders' meaning is on the page"
    assert sweep_choice["value"] == "Day"
    assert [s["label"] for s in slider_states[:3]] == ["Day", "Night", "Dusk"]
    assert [s["visible"] for s in slider_states[2:5]] == [True, False, False]


def test_models_without_alignment_edit_any_picture(server, models, photos):
    client, _ = server
    _, status, handle = client.predict(
        models["scene"], handle_file(photos["coffee"]), api_name="/encode"
    )
    assert "Centre square" in status
    _, photo, _ = client.predict(models["scene"], None, handle, *NEUTRAL, api_name="/edit")
    assert Image.open(photo).size == Image.open(photos["coffee"]).size
    crop, _, _ = client.predict(models["scene"], None, handle, *NEUTRAL, 0.0, [], api_name="/edit")
    assert crop, "no face to pick (the page's choice is empty): the picture is edited"


def png(width: int, height: int, bit_depth: int, colour_type: int, pixels: bytes) -> bytes:
    """PNG bytes written by hand: for files PIL will not write (16-bit, absurd sizes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(pixels)) if pixels else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")


def sixteen_bit_png(path: Path) -> Path:
    rows = b"".join(b"\x00" + struct.pack(">64H", *([i * 1000] * 64)) for i in range(64))
    path.write_bytes(png(64, 64, 16, 0, rows))
    return path


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("text", "not an image|cannot be read|not a picture"),
        ("empty", "empty|not an image|cannot be read"),
        ("truncated", "damaged|truncated"),
        ("coffee", "No face found"),
        ("tiny", "too small"),
        ("huge", "too large|megapixels|too big"),
    ],
)
def test_bad_uploads_get_a_clear_message_and_the_server_keeps_serving(
    server, models, photos, name, message
):
    client, _ = server
    crop, status, photo_id = client.predict(
        models["face"], handle_file(photos[name]), api_name="/encode"
    )
    assert crop is None and photo_id == "", "nothing is kept of a refused photo"
    assert re.search(message, status, re.IGNORECASE), status
    assert "Error" not in status and "Traceback" not in status, "plain words, no internals"
    crop, status, handle = client.predict(
        models["face"], handle_file(photos["astronaut"]), api_name="/encode"
    )
    assert handle and "Face aligned" in status and Image.open(crop).size == (192, 192)


def test_unusual_image_modes_are_read(server, models, tmp_path):
    client, _ = server
    astronaut = Image.fromarray(skimage_data.astronaut())
    rgba = tmp_path / "rgba.png"
    astronaut.convert("RGBA").save(rgba)
    cmyk = tmp_path / "cmyk.jpg"
    astronaut.convert("CMYK").save(cmyk)
    gray = tmp_path / "gray.png"
    astronaut.convert("L").save(gray)
    gif = tmp_path / "animated.gif"
    astronaut.save(gif, save_all=True, append_images=[Image.new("RGB", astronaut.size)])
    for path in (rgba, cmyk, gray, gif):
        crop, status, handle = client.predict(models["face"], handle_file(path), api_name="/encode")
        assert handle and "Face aligned" in status, path.name
        pixels = np.asarray(Image.open(crop).convert("RGB"), dtype=float)
        assert pixels.shape == (192, 192, 3) and pixels.std() > 10, "a face, not a blank crop"
    crop, status, handle = client.predict(
        models["scene"], handle_file(sixteen_bit_png(tmp_path / "deep.png")), api_name="/encode"
    )
    rows = np.asarray(Image.open(crop).convert("L"), dtype=float).mean(1)
    assert handle and rows[-1] > rows[0], "the 16-bit ramp (dark top, light bottom) survives"


def test_page_is_served(server):
    import urllib.request

    _, url = server
    with urllib.request.urlopen(url, timeout=30) as response:
        page = response.read().decode()
    assert response.status == 200
    assert "Fader: edit photos by sliding attributes" in page, "the page's own title, not a stub"


def test_png_bytes_are_what_the_page_receives(server, models, photos):
    """Outputs are lossless PNG (Gradio's default would be lossy WebP)."""
    client, _ = server
    _, _, handle = client.predict(
        models["face"], handle_file(photos["astronaut"]), api_name="/encode"
    )
    crop, _, _ = client.predict(models["face"], None, handle, *NEUTRAL, api_name="/edit")
    assert Path(crop).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(Path(crop).read_bytes())).format == "PNG"


def test_export_is_the_full_resolution_photo_as_png(server, models, tmp_path):
    client, _ = server
    big = tmp_path / "big.jpg"
    Image.fromarray(skimage_data.astronaut()).resize((1500, 1500)).save(big, quality=95)
    _, _, handle = client.predict(models["face"], handle_file(big), api_name="/encode")
    _, preview, _ = client.predict(
        models["face"], None, handle, *sliders(Male=1.0), api_name="/edit"
    )
    exported = client.predict(models["face"], None, handle, *sliders(Male=1.0), api_name="/export")
    assert max(Image.open(preview).size) == 768, "live edits paste into a preview"
    assert Image.open(exported).size == (1500, 1500) and Image.open(exported).format == "PNG"


def call_raw(url: str, api: str, data: list) -> list:
    """One call of a named endpoint over Gradio's plain HTTP API (as curl would send it)."""
    import json
    import urllib.request

    request = urllib.request.Request(
        f"{url.rstrip('/')}/gradio_api/call/{api}",
        data=json.dumps({"data": data}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        event_id = json.loads(reply.read())["event_id"]
    with urllib.request.urlopen(f"{url.rstrip('/')}/gradio_api/call/{api}/{event_id}") as reply:
        lines = reply.read().decode().splitlines()
    event = next(i for i, line in enumerate(lines) if line.startswith("event: "))
    return [lines[event], json.loads(lines[event + 1].removeprefix("data: "))]


def data_url(body: bytes) -> dict:
    import base64

    encoded = base64.b64encode(body).decode()
    return {"url": f"data:image/png;base64,{encoded}", "meta": {"_type": "gradio.FileData"}}


def test_a_data_url_passes_the_same_gate_as_an_upload(server, models, photos):
    _, url = server
    kind, (_, status, photo_id) = call_raw(
        url, "encode", [models["face"], data_url(photos["astronaut"].read_bytes())]
    )
    assert kind == "event: complete" and photo_id and "Face aligned" in status
    kind, (_, status, photo_id) = call_raw(
        url, "encode", [models["face"], data_url(photos["huge"].read_bytes())]
    )
    assert photo_id == "" and re.search("(?i)too large.*megapixels", status), status
    over_the_cap = png(64, 64, 8, 2, b"\0" * 64) + os.urandom(25 * 2**20 + 2**18)
    kind, (_, status, photo_id) = call_raw(url, "encode", [models["face"], data_url(over_the_cap)])
    assert photo_id == "" and "25 MB" in status, status


def test_another_sessions_photo_id_is_refused_like_an_unknown_one(server, models, photos):
    _, url = server
    owner, stranger = Client(url, verbose=False), Client(url, verbose=False)
    _, _, photo_id = owner.predict(
        models["face"], handle_file(photos["astronaut"]), api_name="/encode"
    )
    owner.predict(models["face"], None, photo_id, *NEUTRAL, api_name="/edit")
    for api, extra in [("/edit", ()), ("/export", ()), ("/sweep", ("Smiling", 3))]:
        with pytest.raises(AppError, match="no longer loaded"):
            stranger.predict(models["face"], None, photo_id, *extra, *NEUTRAL, api_name=api)
    _, _, own_id = stranger.predict(
        models["face"], handle_file(photos["astronaut"]), api_name="/encode"
    )
    assert own_id != photo_id, "the same photo, another id: sharing the work, not the access"


def live_move(
    url: str,
    session: str,
    model: str,
    photo_id: str | None,
    values: list,
    faces: list | None = LARGEST,
) -> httpx.Response:
    """A slider move as the page's script sends it: one POST to the app's own route, the faces
    ticked by their labels."""
    fields = {"model": model, "photo_id": photo_id, "values": values, "detail": 1.0}
    body = {"session": session, **fields, "faces": faces}
    return httpx.post(f"{url}{MOVE_PATH.lstrip('/')}", json=body)


def inline_picture(html: str) -> Image.Image:
    """The picture of an <img> whose src is a base64 `data:` URL."""
    data = re.search(r'src="data:image/\w+;base64,([^"]+)"', html).group(1)
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def test_a_late_slider_export_for_a_photo_replaced_meanwhile_leaves_the_download_alone(
    models, photos
):
    """A slider move's export answers EXPORT_WAIT after the move: if another photo was uploaded
    meanwhile, its download (from the upload) must stay."""
    scene = models["scene"]
    library = ModelLibrary([scene])
    editor = library.editor(scene)
    old = editor.load(photos["astronaut"], session="alice")
    exports = PageExports()  # the page's: one export per set of inputs
    values = [1.0, 0.0] + [0.0] * (MAX_SLIDERS - 2)
    late = export_move(library, scene, None, old, *values, session="alice", exports=exports)
    assert Path(late).is_file(), "while the photo is shown, its export is made"
    editor.load(photos["coffee"], session="alice")
    late = export_move(library, scene, None, old, *values, session="alice", exports=exports)
    assert late == gr.skip(), "another photo is shown now"


def test_an_export_clears_the_export_folders_gradio_emptied(models, photos, tmp_path):
    """Gradio deletes an export an hour on but not the folder it was made in: the next export
    removes those folders once they have been empty a minute, and nothing else."""
    scene = models["scene"]
    library = ModelLibrary([scene])
    photo_id = library.editor(scene).load(photos["astronaut"], session="alice")
    emptied, fresh, holding = (tmp_path / f"{EXPORT_PREFIX}{n}" for n in "abc")
    for folder in (emptied, fresh, holding):
        folder.mkdir()
    (holding / "fader-scene-unchanged.png").write_bytes(b"an export still served")
    (tmp_path / "not-an-export").mkdir()
    an_hour_ago = time.time() - 3600
    for folder in (emptied, holding, tmp_path / "not-an-export"):
        os.utime(folder, (an_hour_ago, an_hour_ago))
    values = [1.0, 0.0] + [0.0] * (MAX_SLIDERS - 2)
    path = Path(
        edits.export(library, scene, None, photo_id, *values, session="alice", folder=tmp_path)
    )
    assert path.is_file() and path.parent.parent == tmp_path
    assert not emptied.exists(), "emptied an hour ago: removed"
    assert fresh.is_dir() and holding.is_dir() and (tmp_path / "not-an-export").is_dir()


def test_the_pages_live_edit_answers_inline_and_only_to_the_photos_session(server, models, photos):
    client, url = server
    _, _, photo_id = client.predict(
        models["face"], handle_file(photos["astronaut"]), api_name="/encode"
    )
    values = sliders(Smiling=1.5)
    crop_file, _, _ = client.predict(
        models["face"], None, photo_id, *values, 1.0, LARGEST, api_name="/edit"
    )
    answer = live_move(url, client.session_hash, models["face"], photo_id, values).json()
    crop_html, photo_html = answer["crop"], answer["photo"]
    assert 'src="data:image/jpeg;base64,' in photo_html
    src = crop_html.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    inline = Image.open(io.BytesIO(base64.b64decode(src))).convert("RGB")
    enlarged = Image.open(crop_file).convert("RGB")
    assert np.array_equal(np.asarray(web_pictures.shown(inline)), np.asarray(enlarged)), (
        "/edit's crop"
    )
    elsewhere = live_move(url, "another-tab", models["face"], photo_id, values)
    assert elsewhere.json() == {"again": True}, "another session's photo is none of its own"


def test_a_move_overtaken_while_it_waited_for_a_turn_is_not_made(models, photos):
    """A client that sends moves without waiting for answers waits behind itself no longer
    than one move: the route makes a session's newest move, not each (as the page's script
    sends them, one at a time)."""
    scene = models["scene"]
    library = ModelLibrary([scene])
    photo_id = library.editor(scene).load(photos["coffee"], session="s")

    def move(value: float) -> Move:
        return Move("s", scene, photo_id, [value, *NEUTRAL[1:]], 0.0, None)

    async def two_moves_while_every_turn_is_taken() -> tuple[dict, dict, Moves]:
        turns = asyncio.Semaphore(1)  # made in the loop that runs them, as the server's are
        moves = Moves(library, turns)
        async with turns:
            first = asyncio.create_task(moves.answer(move(0.5)))
            second = asyncio.create_task(moves.answer(move(1.0)))
            await asyncio.sleep(0.2)
        return await first, await second, moves

    first, second, moves = asyncio.run(two_moves_while_every_turn_is_taken())
    assert first == {"skip": True} and set(second) == {"crop", "photo", "settled"}
    assert not moves.newest, "nothing kept once the moves are answered"


def test_a_move_never_loads_a_model_the_page_has_not(models):
    """A bare POST naming one of the app's models not yet loaded (an authors' model would be
    downloaded and converted) is refused before any work."""
    library = ModelLibrary([models["scene"]])
    move = Move("s", models["scene"], "", NEUTRAL, 0.0, None)
    with pytest.raises(ValueError, match="on the page first"):
        asyncio.run(Moves(library, asyncio.Semaphore(1)).answer(move))
    assert not library.loaded(models["scene"])


def test_a_move_is_checked_before_it_is_made_and_refused_in_words(server, models, photos):
    """The move route checks what Gradio's components would, before any work: the body's size
    (before it is parsed), each field's type and length; a box with no number is a move that
    changes nothing yet."""
    client, url = server
    _, _, photo_id = client.predict(
        models["face"], handle_file(photos["astronaut"]), api_name="/encode"
    )
    session, face = client.session_hash, models["face"]
    route = f"{url}{MOVE_PATH.lstrip('/')}"
    json_type = {"content-type": "application/json"}

    def sent(body: bytes) -> httpx.Response:
        return httpx.post(route, content=body, headers=json_type)

    huge = sent(b"{" + b" " * (2 * MAX_MOVE_BYTES) + b"}")
    assert huge.status_code == 413 and "small JSON object" in huge.json()["error"]
    as_text = httpx.post(route, content=b"{}", headers={"content-type": "text/plain"})
    assert as_text.status_code == 415, "a page's move is JSON: not a form any site can post"
    one = ["smile", *NEUTRAL[1:]]
    refusals = {
        "not JSON": (sent(b"\xff{"), "JSON object"),
        "a list": (sent(b"[1, 2]"), "JSON object"),
        "nested deep": (sent(b"[" * (MAX_MOVE_BYTES - 1)), "JSON object"),
        "5,000 digits": (sent(b"1" * 5000), "JSON object"),
        "17 values": (live_move(url, session, face, photo_id, [0.0] * 17), "list of 16"),
        "2 values": (live_move(url, session, face, photo_id, [0.0] * 2), "list of 16"),
        "a word": (live_move(url, session, face, photo_id, one), "takes a number"),
        "a long number": (live_move(url, session, face, photo_id, ["1" * 40] * 16), "32 chars"),
        "an id too long": (live_move(url, session, face, "x" * 200, NEUTRAL), "of 24 chars"),
        "no session": (live_move(url, None, face, photo_id, NEUTRAL), "are text"),
        "another model": (live_move(url, session, "evil/repo", photo_id, NEUTRAL), "Unknown"),
        "no such face": (live_move(url, session, face, photo_id, NEUTRAL, ["Face 99"]), "labels"),
    }
    for name, (reply, words) in refusals.items():
        assert reply.status_code == 400 and words in reply.json()["error"], (name, reply.text)
        assert "Traceback" not in reply.text, name
    typing = live_move(url, session, face, photo_id, [None, *NEUTRAL[1:]])
    assert typing.json() == {"skip": True}, "a box with no number: nothing changes yet"
    made = live_move(url, session, face, photo_id, sliders(Smiling=1.0)).json()
    assert set(made) == {"crop", "photo", "settled"} and made["settled"][-1] == "", "no note"
    past_an_end = live_move(url, session, face, photo_id, sliders(Smiling=70.0)).json()
    *boxes, detail, note = past_an_end["settled"]
    assert boxes[0]["value"] < 70 and "70 is set to" in note, "the box set to its end, and said"
    assert boxes[1] == detail == gr.skip(), "the other sliders and the detail left as they are"
    before_a_photo = live_move(url, session, face, None, sliders(Smiling=70.0)).json()
    assert before_a_photo["crop"] == before_a_photo["photo"] == "", "no photo: nothing shown"
    assert "70 is set to" in before_a_photo["settled"][-1], "a number typed before a photo"


def test_the_pages_moves_and_the_apis_edits_share_the_live_edit_limit():
    running, most = [0], [0]
    lock = threading.Lock()

    def move(i: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)  # long enough for the other moves to arrive meanwhile
        with lock:
            running[0] -= 1
        return i

    async def eight_moves_of_two_events() -> list[int]:
        turns = asyncio.Semaphore(3)  # made in the loop that runs them, as the app's server does
        page, api = limited(move, turns), limited(move, turns)
        return await asyncio.gather(*((page if i % 2 else api)(i) for i in range(8)))

    assert asyncio.run(eight_moves_of_two_events()) == list(range(8)), "each gets its answer"
    assert most[0] == 3, "the page's moves and the API's edits share their turns"


def test_visitors_getting_identical_pictures_at_once_each_get_them_whole(server, models, photos):
    """Gradio writes a returned picture in place at a path named by its content: eight visitors
    with one photo and the same sliders rewrote that file under each other's downloads (httpx's
    RemoteProtocolError, "received 0 bytes", in every run of this test before the fix)."""
    from concurrent.futures import ThreadPoolExecutor

    _, url = server
    values = [*sliders(Smiling=0.5), 0.0, LARGEST]

    def visitor(_: int) -> list[bytes]:
        client = Client(url, verbose=False)
        crop, _, handle = client.predict(
            models["face"], handle_file(photos["astronaut"]), api_name="/encode"
        )
        pictures = [crop]
        for _ in range(10):
            pictures += client.predict(models["face"], None, handle, *values, api_name="/edit")[:2]
        pictures.append(
            client.predict(models["face"], None, handle, "Smiling", 3, *values, api_name="/sweep")
        )
        return [np.asarray(Image.open(picture)).tobytes() for picture in pictures]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(visitor, range(8)))
    assert all(answer == answers[0] for answer in answers), "the same pictures, whole, for all"


def test_parallel_exports_of_one_photo_each_get_their_own_edit(server, models, photos):
    from concurrent.futures import ThreadPoolExecutor

    _, url = server
    # Four encodes at once on 2 cores: a picture's download can wait past httpx's 5 s default
    # (seen in CI: a ReadTimeout on the encode's picture, the server fine)
    patient = {"verbose": False, "httpx_kwargs": {"timeout": 120}}
    reference = Client(url, **patient)
    _, _, reference_id = reference.predict(
        models["face"], handle_file(photos["astronaut"]), api_name="/encode"
    )

    def export(client_number: int) -> tuple[float, bytes, str]:
        client = Client(url, **patient)
        _, _, photo_id = client.predict(
            models["face"], handle_file(photos["astronaut"]), api_name="/encode"
        )
        smiling = client_number / 2 - 1
        path = client.predict(
            models["face"], None, photo_id, *sliders(Smiling=smiling), api_name="/export"
        )
        return smiling, np.asarray(Image.open(path)).tobytes(), Path(path).name

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(export, range(4)) for _ in range(3))
    results = [r for round_ in results for r in round_]
    for smiling, pixels, name in results:
        expected = reference.predict(
            models["face"], None, reference_id, *sliders(Smiling=smiling), api_name="/export"
        )
        assert np.asarray(Image.open(expected)).tobytes() == pixels, f"not its own edit ({smiling})"
        assert f"Smiling={smiling:g}" in name or smiling == 0, name


def test_slider_values_must_be_finite(server, models):
    _, url = server
    photo_id = ""  # checked before any photo is looked at
    for api, extra in [("edit", []), ("export", []), ("sweep", ["Smiling", 3])]:
        values = [float("nan")] + [0.0] * (MAX_SLIDERS - 1)
        inputs = [models["face"], None, photo_id, *extra, *values, 1.0, LARGEST]
        kind, message = call_raw(url, api, inputs)
        assert kind == "event: error" and "finite" in str(message), (api, message)
        inputs = [models["face"], None, photo_id, *extra, *NEUTRAL, float("nan"), LARGEST]
        kind, message = call_raw(url, api, inputs)
        assert kind == "event: error" and "finite" in str(message), (api, message)
    kind, message = call_raw(
        url,
        "sweep",
        [models["face"], None, photo_id, "Smiling", float("nan"), *NEUTRAL, 1.0, LARGEST],
    )
    assert kind == "event: error" and "finite" in str(message), message


def test_keep_photo_detail_reaches_the_preview_and_the_download(server, models, photos):
    """At the sliders' start, full detail gives back the photo itself; none, the model's
    output (a random decoder's noise). The page starts at the model's default."""
    client, _ = server
    *_, detail_state, _ = client.predict(models["face"], models["scene"], api_name="/switch_model")
    assert detail_state["value"] == 1.0, "face models keep the photo's detail"
    *_, detail_state, _ = client.predict(models["scene"], models["face"], api_name="/switch_model")
    assert detail_state["value"] == 0.0, "whole-image models do not"
    astronaut = np.asarray(Image.open(photos["astronaut"]), float)
    _, _, handle = client.predict(
        models["face"], handle_file(photos["astronaut"]), api_name="/encode"
    )
    previews = {}
    for detail, close in ((1.0, True), (0.0, False)):
        _, preview, _ = client.predict(
            models["face"], None, handle, *NEUTRAL, detail, api_name="/edit"
        )
        exported = client.predict(
            models["face"], None, handle, *NEUTRAL, detail, api_name="/export"
        )
        previews[detail] = np.abs(np.asarray(Image.open(preview), float) - astronaut).mean(-1)
        export_off = np.abs(np.asarray(Image.open(exported), float) - astronaut).mean()
        assert (export_off < 1 / 255) == close, (detail, export_off)
    face = previews[0.0] > 30  # where the random decoder's output was pasted
    assert face.mean() > 0.02 and previews[1.0][face].mean() < 5, "the preview (a JPEG) too"
    strips = [
        np.asarray(Image.open(client.predict(
            models["face"], None, handle, "Smiling", 3, *NEUTRAL, detail, api_name="/sweep"
        )))
        for detail in (0.0, 1.0)
    ]  # fmt: skip
    assert not np.array_equal(*strips), "the sweep follows the control too"


def test_exports_live_in_gradios_cache_and_name_the_model_and_values(server, models, photos):
    import tempfile

    client, _ = server
    _, _, photo_id = client.predict(
        models["face"], handle_file(photos["astronaut"]), api_name="/encode"
    )
    values = sliders(Smiling=1.5, Male=-0.5)
    path = client.predict(models["face"], None, photo_id, *values, 1.0, api_name="/export")
    assert Path(path).name == "fader-face-Smiling=1.5_Male=-0.5.png"  # detail: the default, 1
    path = client.predict(models["face"], None, photo_id, *values, 0.5, api_name="/export")
    assert Path(path).name == "fader-face-Smiling=1.5_Male=-0.5_detail=0.5.png"
    assert not list(Path(tempfile.gettempdir()).glob("fader-exports/*")), "no shared export folder"


def test_a_long_download_name_keeps_its_detail_whole():
    sliders = {f"attribute_{i}": 0.5 + i for i in range(16)}  # every one moved: a long name
    name = edits.download_name("face", sliders, {}, detail=0.45)
    assert name.endswith("_detail=0.45.png") and len(name) <= 124, name
    assert (
        edits.download_name("face", {"a": 0.0}, {}, detail=0.5)
        == "fader-face-unchanged_detail=0.5.png"
    )


def test_a_face_photo_under_a_model_that_does_not_edit_faces_says_so(server, models, photos):
    client, _ = server
    crop, status, photo_id = client.predict(
        models["scene"], handle_file(photos["astronaut"]), api_name="/encode"
    )
    assert crop is None and photo_id == ""
    assert "shows a face" in status and "python -m train --attrs Smiling Male" in status
    _, status, photo_id = client.predict(
        models["scene"], handle_file(photos["coffee"]), api_name="/encode"
    )
    assert photo_id and "Centre square" in status, "a picture without a face is edited"


def test_a_group_photo_edits_every_face_or_the_ones_picked(server, models, tmp_path):
    client, url = server
    path = tmp_path / "group.png"
    group = group_photo()
    group.save(path)
    _, status, handle = client.predict(models["face"], handle_file(path), api_name="/encode")
    assert "2 faces found" in status
    library = ModelLibrary([models["face"]], aligner="dlib")
    photo_id = library.editor(models["face"]).load(group)
    choice, ticked = face_choices(library, models["face"], photo_id)
    assert choice["choices"] == choice["value"] == ["Face 1 (largest)", "Face 2"]
    assert ticked == [0, 1], "the page's edits read every face"
    assert choice["visible"], "the page shows the faces found"
    hopper, astronaut = (face.box for face in library.editor(models["face"]).photo(photo_id).faces)
    edited = {}
    for name, picked in (("all", []), ("astronaut", [["Face 2"]])):
        exported = client.predict(
            models["face"], None, handle, *sliders(Smiling=2.0), 0.0, *picked, api_name="/export"
        )
        edited[name] = Image.open(exported).convert("RGB")
    assert (
        changed(edited["all"], group, hopper) > 5 and changed(edited["all"], group, astronaut) > 5
    )
    assert changed(edited["astronaut"], group, astronaut) > 5
    assert changed(edited["astronaut"], group, hopper) == 0, "the face not picked is untouched"
    previews = {  # a slider's move: the faces ticked by their labels, one the page cannot show
        name: inline_picture(
            live_move(
                url, client.session_hash, models["face"], handle, sliders(Smiling=2.0), faces
            ).json()["photo"]
        )
        for name, faces in (("all", None), ("astronaut", ["Face 2"]))
    }
    scale = previews["all"].width / group.width
    hopper, astronaut = ([v * scale for v in box] for box in (hopper, astronaut))
    assert changed(previews["astronaut"], previews["all"], hopper) > 5, "Face 1 not ticked"
    assert changed(previews["astronaut"], previews["all"], astronaut) < 1, "Face 2 edited in both"
    strip = client.predict(
        models["face"], None, handle, "Smiling", 3, *NEUTRAL, 0.0, api_name="/sweep"
    )
    assert Image.open(strip).size == (3 * 128, 2 * 128 + 24), "a row per face, 2× tiles"


def test_an_attribute_with_several_values_is_a_group_of_sliders(tmp_path, photos):
    torch.manual_seed(0)
    hair = ["Black_Hair", "Blond_Hair", "Gray_Hair"]
    config = FaderConfig(
        attributes=["Hair", "Smiling"],
        categories={"Hair": hair},
        image_size=64,
        init_fm=8,
        max_fm=64,
        n_layers=4,
        preprocessing="center",
    )
    FaderNetwork(config).save_pretrained(tmp_path / "hair")
    model = str(tmp_path / "hair")
    library = ModelLibrary([model])
    settings = slider_settings(library.editor(model))
    assert [s["label"] for s in settings[:4]] == [
        "Hair: Black hair",
        "Hair: Blond hair",
        "Hair: Gray hair",
        "Smiling",
    ]
    assert [s["visible"] for s in settings[3:5]] == [True, False]
    with serve(library) as url:
        client = Client(url, verbose=False)
        _, status, photo_id = client.predict(
            model, handle_file(photos["coffee"]), api_name="/encode"
        )
        assert photo_id, status
        crops = {}
        for blond in (0.0, 1.0):
            values = [1 - blond, blond, 0.0, 0.5] + [0.0] * (MAX_SLIDERS - 4)
            crop, _, _ = client.predict(model, None, photo_id, *values, api_name="/edit")
            crops[blond] = np.asarray(Image.open(crop))
        path = client.predict(model, None, photo_id, *values, api_name="/export")
    assert not np.array_equal(crops[0.0], crops[1.0]), "the group's values reach the decoder"
    editor = library.editor(model)
    reference = editor.load(photos["coffee"], session="reference")
    expected = editor.edit(
        reference, {"Hair": {"Blond_Hair": 1.0}, "Smiling": 0.5}, session="reference"
    ).crop
    shown = crops[1.0][:: crops[1.0].shape[0] // 64, :: crops[1.0].shape[1] // 64]
    assert np.abs(shown.astype(int) - np.asarray(expected, dtype=int)).max() <= 1
    assert "Blond_Hair=1_Smiling=0.5" in Path(path).name


def test_a_visitors_refused_input_leaves_no_traceback_in_the_servers_log(
    server, models, photos, capfd
):
    """A refusal is the visitor's message, not a fault of the server's: its log stays free of
    tracebacks (Gradio's queue printed one for every refused sweep or typo)."""
    client, _ = server
    _, _, handle = client.predict(
        models["face"], handle_file(photos["astronaut"]), api_name="/encode"
    )
    capfd.readouterr()
    with pytest.raises(AppError, match="Upload a photo first"):
        client.predict(models["face"], None, "", "Smiling", 3, *NEUTRAL, api_name="/sweep")
    with pytest.raises(AppError, match="no 'Banana'"):
        client.predict(models["face"], None, handle, "Banana", 3, *NEUTRAL, api_name="/sweep")
    assert "Traceback" not in capfd.readouterr().err
