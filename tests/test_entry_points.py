"""`python app.py` itself, started as a user and as a Hugging Face Space start it.

The other app tests build the page through their own launch helper; these run the real entry
point (`main()`, `parse_args()`, the arguments it hands `launch()`) in a subprocess. All traffic
goes to 127.0.0.1; which address the server listens on is read from /proc/net/tcp.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from PIL import Image
from skimage import data as skimage_data

from fader.photo import MAX_BYTES
from tests.test_reliability import upload

ROOT = Path(__file__).resolve().parents[1]
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp
EVERY_INTERFACE, LOOPBACK = "00000000", "0100007F"  # 0.0.0.0 and 127.0.0.1, as the kernel writes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a socket listens on at `port`, in /proc/net/tcp's hex."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, port_hex = fields[1].split(":")
        if int(port_hex, 16) == port and fields[3] == LISTEN:
            addresses.add(address)
    return addresses


def app_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Offline, no converted authors' models, no FAN weights, no Gradio address unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADIO_SERVER_")}
    env.update(
        HF_HUB_OFFLINE="1",
        FADER_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        FADER_AUTHORS_CACHE=str(tmp_path / "authors"),
        TORCH_HOME=str(tmp_path / "torch"),
        **extra,
    )
    return env


@contextmanager
def running_app(args: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """`python app.py ARGS` until the caller is done; yields its URL once it answers."""
    log = Path(env["TORCH_HOME"]).parent / f"app-{port}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "app.py", *args], cwd=ROOT, env=env, stdout=output, stderr=output
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def page_config(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/config", timeout=30) as response:
        return json.loads(response.read())


def component(config: dict, kind: str, label: str) -> dict:
    (found,) = [
        c["props"]
        for c in config["components"]
        if c.get("type") == kind and c["props"].get("label") == label
    ]
    return found


def assert_upload_cap_holds(url: str) -> None:
    # The page refuses a larger file before sending it: Gradio's front end reads the cap here.
    assert page_config(url)["max_file_size"] == MAX_BYTES
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(upload(url, "big.png", os.urandom(26 * 2**20)), timeout=60)
    assert refused.value.code == 413
    small = urllib.request.urlopen(upload(url, "small.png", os.urandom(1000)), timeout=60)
    assert small.status == 200, "under the cap an upload is taken"


def test_python_app_as_a_user_starts_it_serves_the_models_asked_for_with_its_settings(
    models, tmp_path
):
    port = free_port()
    args = ["--host", "127.0.0.1", "--port", str(port), "--threads", "1"]
    args += [
        "--model",
        models["scene"],
        "--model",
        models["face"],
        "--aligner",
        "face_alignment",
    ]
    with running_app(args, app_environment(tmp_path), port) as url:
        assert listening_addresses(port) == {LOOPBACK}, "--host 127.0.0.1: loopback only"
        config = page_config(url)
        dropdown = component(config, "dropdown", "Model")
        assert [value for _, value in dropdown["choices"]] == [
            models["scene"],
            models["face"],
            "digits",
        ], "the --model folders in the order given, then the bundled model"
        assert dropdown["value"] == models["scene"]
        assert_upload_cap_holds(url)

        # --aligner face_alignment reached the editor: offline without FAN's weights it says so
        # (the default, auto, would have aligned with dlib).
        photo = tmp_path / "astronaut.jpg"
        Image.fromarray(skimage_data.astronaut()).save(photo)
        client = Client(url, verbose=False)
        _, status, photo_id = client.predict(models["face"], handle_file(photo), api_name="/encode")
        assert "face_alignment needs its weights" in status and photo_id == ""
        scene = tmp_path / "coffee.jpg"
        Image.fromarray(skimage_data.coffee()).save(scene)
        _, status, photo_id = client.predict(
            models["scene"], handle_file(scene), api_name="/encode"
        )
        assert "Centre square" in status and photo_id


def test_python_app_as_a_space_starts_it_listens_on_every_interface(tmp_path):
    port = free_port()
    env = app_environment(tmp_path, GRADIO_SERVER_NAME="0.0.0.0", GRADIO_SERVER_PORT=str(port))
    with running_app([], env, port) as url:
        assert listening_addresses(port) == {EVERY_INTERFACE}
        dropdown = component(page_config(url), "dropdown", "Model")
        assert [value for _, value in dropdown["choices"]] == ["digits"]
        assert_upload_cap_holds(url)


def test_a_model_that_cannot_load_exits_2_with_an_error_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "app.py", "--model", str(tmp_path / "no-such-model")],
        cwd=ROOT,
        env=app_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") or "\nerror: " in result.stderr
    assert "no-such-model" in result.stderr
    assert "Traceback" not in result.stderr
