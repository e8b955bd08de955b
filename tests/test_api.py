"""The API as a script or an assistant meets it: named parameters, a typed endpoint taking the
attribute values by name, plain messages for bad calls, examples that work offline, and an MCP
server whose tools edit a photo (a real MCP client session against the running app)."""

import ast
import asyncio
import base64
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from fader.attributes import positions_by_name
from page.photos import EXAMPLES
from tests.test_app import free_port

ROOT = Path(__file__).resolve().parents[1]
THREE = EXAMPLES / "digits" / "three.png"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Client, str]]:
    """`python app.py --mcp` in a process of its own (offline: the bundled digits model), as a
    user starts it; Gradio's MCP server is set up once per process, so not inside the tests'."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "app.py", "--mcp", "--host", "127.0.0.1", "--port", str(port)]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "FADER_OFFLINE": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    try:
        for _ in range(240):  # Gradio's import and the model's load: ~15 s here
            try:
                httpx.get(url, timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert process.poll() is None, "the app exited"
                time.sleep(0.5)
        yield Client(url, verbose=False), url
    finally:
        process.terminate()
        process.wait(30)


def endpoints(client: Client) -> dict:
    return client.view_api(return_format="dict", print_info=False)["named_endpoints"]


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_parameters_and_outputs_are_named_for_the_models_attributes(server):
    client, _ = server
    info = endpoints(client)
    assert list(info)[:4] == ["/encode", "/edit", "/edit_by_name", "/export"], "in use order"
    assert "/live_frame" not in info, "the page's camera stream is not a client's endpoint"
    edit = [p["parameter_name"] for p in info["/edit"]["parameters"]]
    assert edit[:3] == ["model_name", "photo", "photo_id"]
    assert edit[3:13] == [f"digit_{name}" for name in DIGITS] and edit[-2:] == ["detail", "faces"]
    assert [r["label"] for r in info["/edit"]["returns"]] == [
        "edited_crop",
        "edited_photo",
        "photo_id",
    ]
    by_name = [p["parameter_name"] for p in info["/edit_by_name"]["parameters"]]
    assert by_name == ["model_name", "photo", "photo_id", "values", "detail", "faces"]
    assert "attribute values by name" in info["/edit_by_name"]["description"]
    photo = next(p for p in info["/encode"]["parameters"] if p["parameter_name"] == "photo")
    example = photo["example_input"]["path"]
    assert Path(example).is_file(), "the API page's example is a file here, not a URL"
    assert all(p["parameter_name"] != "param_3" for p in info["/sweep"]["parameters"])


def test_edit_by_name_is_the_positional_edit_with_unnamed_attributes_at_the_start(server):
    client, _ = server
    _, note, photo_id = client.predict("digits", handle_file(str(THREE)), api_name="/encode")
    assert "The classifier reads: Three" in note
    crop, _, same_id = client.predict(
        "digits", None, photo_id, {"Eight": 1, "three": 0}, api_name="/edit_by_name"
    )
    assert same_id == photo_id
    positional = [0.0] * 16
    positional[DIGITS.index("eight")] = 1.0
    expected, _, _ = client.predict("digits", None, photo_id, *positional, api_name="/edit")
    assert np.array_equal(pixels(crop), pixels(expected))
    kept, _, _ = client.predict("digits", None, photo_id, {"eight": 1}, api_name="/edit_by_name")
    positional[DIGITS.index("three")] = 1.0  # the classifier's reading, kept
    expected, _, _ = client.predict("digits", None, photo_id, *positional, api_name="/edit")
    assert np.array_equal(pixels(kept), pixels(expected))
    assert not np.array_equal(pixels(kept), pixels(crop)), "three=0 and three=1 differ"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (("made-up", {"eight": 1}, "/edit_by_name"), "Photo 'made-up' is not loaded here"),
        ((None, "eight=1", "/edit_by_name"), "Give the attribute values as an object by name"),
        (
            (None, {"eleven": 1}, "/edit_by_name"),
            r"its attributes are zero, one, .*, eight, nine\.",
        ),
        ((None, {"eight": "x"}, "/edit_by_name"), "Attribute values must be finite numbers"),
        ((None, {"eight": 10**400}, "/edit_by_name"), "Attribute values must be finite numbers"),
        ((None, [0.0] * 12 + [1.0], "/edit"), "digits takes 10 slider values"),
    ],
    ids=[
        "unknown id",
        "not an object",
        "unknown attribute",
        "not a number",
        "past a float",
        "too many values",
    ],
)
def test_a_bad_call_is_answered_in_plain_words(server, call, message):
    client, _ = server
    _, _, photo_id = client.predict("digits", handle_file(str(THREE)), api_name="/encode")
    given_id, values, endpoint = call
    arguments = [*values] if isinstance(values, list) else [values]
    with pytest.raises(Exception, match=message):
        client.predict("digits", None, given_id or photo_id, *arguments, api_name=endpoint)


def test_faces_left_as_none_means_every_face(server):
    client, _ = server
    _, _, photo_id = client.predict("digits", handle_file(str(THREE)), api_name="/encode")
    crop, _, _ = client.predict(
        "digits", None, photo_id, {"eight": 1}, 0.0, None, api_name="/edit_by_name"
    )
    assert Path(crop).is_file()


def answer(result) -> list:
    """An MCP tool's answer to a several-output endpoint: Gradio 6.31 sends the outputs as one
    text, the list as Python writes it (file outputs as dicts with their path and URL)."""
    (text,) = [c.text for c in result.content if c.type == "text"]
    return ast.literal_eval(text)


def test_an_mcp_client_encodes_a_photo_and_edits_it_by_attribute_values(server):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    client, url = server
    photo = "data:image/png;base64," + base64.b64encode(THREE.read_bytes()).decode()
    values = {"eight": 1, "three": 0}

    async def session() -> tuple[dict, list, list]:
        async with (
            streamablehttp_client(url + "gradio_api/mcp/") as (read, write, _),
            ClientSession(read, write) as mcp,
        ):
            await mcp.initialize()
            tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
            encoded = answer(
                await mcp.call_tool("encode", {"model_name": "digits", "photo": photo})
            )
            arguments = {"model_name": "digits", "photo_id": encoded[2], "values": values}
            edited = answer(await mcp.call_tool("edit_by_name", arguments))
            return tools, encoded, edited

    tools, encoded, edited = asyncio.run(session())
    assert {"encode", "edit", "edit_by_name", "sweep"} <= set(tools)
    assert tools["edit_by_name"].inputSchema["properties"]["values"]["type"] == "object"
    assert "attribute values by name" in tools["edit_by_name"].description
    assert "The classifier reads: Three" in encoded[1]
    _, _, photo_id = client.predict("digits", handle_file(str(THREE)), api_name="/encode")
    expected, _, _ = client.predict("digits", None, photo_id, values, api_name="/edit_by_name")
    assert np.array_equal(pixels(edited[0]["path"]), pixels(expected)), "the edit asked for"


def test_a_groups_value_is_named_by_the_group_and_value_or_by_the_value_alone(tmp_path: Path):
    """`{"blond_hair": 1}` sets the Hair group's slider as `{"hair_blond_hair": 1}` does."""
    from fader.editor import Editor
    from fader.model import FaderConfig, FaderNetwork

    hair = ["Black_Hair", "Blond_Hair", "Gray_Hair"]
    config = FaderConfig(
        ["Hair", "Smiling"], image_size=32, init_fm=8, max_fm=32, n_layers=3,
        categories={"Hair": hair}, preprocessing="center",
    )  # fmt: skip
    editor = Editor(FaderNetwork(config))
    start = {"Hair": {"Black_Hair": 1.0, "Blond_Hair": 0.0, "Gray_Hair": 0.0}, "Smiling": 0.0}
    by_value = positions_by_name(editor.model.config, {"Blond_Hair": 1, "smiling": 0.5}, start)
    by_group = positions_by_name(editor.model.config, {"hair_blond_hair": 1, "Smiling": 0.5}, start)
    assert by_value == by_group == [1.0, 1.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="no attribute 'red_hair'"):
        positions_by_name(editor.model.config, {"red_hair": 1}, start)
