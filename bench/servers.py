"""The app served from a code tree, for the benchmarks that drive a real server
(`bench/move_cost.py`, `bench/app_load.py`): a commit's files checked out beside this working
tree, its server started on a free port of 127.0.0.1, its CPU time and memory read from /proc,
and the request the page sends for a slider move.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LIVE_EDIT_ROUTE = "gradio_api/run/predict"  # where the page POSTs its events outside the queue
MOVE_ROUTE = "fader/move"  # the page's slider moves since they have a route of their own


def add_code_option(parser: argparse.ArgumentParser) -> None:
    """`--code NAME=REV`, repeated: the code trees a benchmark serves side by side."""
    parser.add_argument(
        "--code",
        action="append",
        default=[],
        help="NAME=REV: a commit, '.' (this working tree) or a folder; the first is the baseline",
    )


def named_codes(codes: list[str]) -> dict[str, str]:
    """`--code`'s values by name; none given: this working tree, named "now"."""
    return dict(code.split("=", 1) for code in codes or ["now=."])


def checkout(revision: str, folder: Path) -> Path:
    """`revision`'s tracked files in `folder` (no worktree, no index touched); "." is this
    working tree, a folder is used as it is."""
    if revision == ".":
        return ROOT
    if Path(revision).is_dir():
        return Path(revision).resolve()
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def revision_of(revision: str) -> str:
    """The commit a revision names ("." and its uncommitted changes: the working tree)."""
    if revision == "." or Path(revision).is_dir():
        return f"the files in {Path(revision).resolve()}"
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", revision],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def server_env() -> dict[str, str]:
    """This process's environment for a server: offline, and without the host's own Gradio
    analytics settings, so each tree's app runs with the settings it gives Gradio itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADIO_ANALYTICS")}
    return env | {"HF_HUB_OFFLINE": "1", "FADER_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A process serving the page on 127.0.0.1; its output goes to `folder/NAME.log`, and
    py-spy's samples of each route's moves to `folder/NAME-ROUTE-N.raw`."""

    def __init__(self, name: str, command: list[str], cwd: Path, env: dict, folder: Path):
        self.name, self.folder, self.profiles = name, folder, 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = folder / f"{name}.log"
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port)],
            cwd=cwd,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.wait_until_up()
        # One connection kept open, as a browser keeps it for a page's requests: a connection
        # per request added its setup to the server's CPU per move (3–4 ms).
        self.http = httpx.Client(base_url=self.url, timeout=120)
        config = self.http.get("config").json()
        self.fn = {d.get("api_name"): d["id"] for d in config["dependencies"]}

    def wait_until_up(self) -> None:
        for _ in range(480):
            try:
                urllib.request.urlopen(self.url, timeout=2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(self.log.read_text()[-3000:]) from None
                time.sleep(0.5)
        raise RuntimeError("the app did not answer within 4 minutes")

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def memory_mb(self) -> float:
        """The server's resident memory (VmRSS), MB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    @property
    def own_move_route(self) -> bool:
        """Whether the app answers a slider move on `MOVE_ROUTE` (`page/moves.py`), not as the
        Gradio event `live_edit` (the app before that route)."""
        return "live_edit" not in self.fn

    def live_move_requests(
        self, session: str, model: str, photo_id: str, values, detail, own_route: bool | None = None
    ) -> list[tuple[str, dict]]:
        """What the page sends the server for one step of a slider's drag, the photo by its id,
        no ticked faces (all of them): the path and JSON body of each POST outside the queue,
        the edit's first. On the app's own route (`own_route`, default: `own_move_route`), one
        POST whose answer also settles the sliders; as Gradio events, the edit and the sliders'
        `settle`, which the page's `change` sent beside each move until it came with the move."""
        if self.own_move_route if own_route is None else own_route:
            fields = {"model": model, "photo_id": photo_id, "values": values, "detail": detail}
            return [(MOVE_ROUTE, {"session": session, **fields, "faces": None})]
        if "live_edit" not in self.fn:
            raise RuntimeError(f"{self.name}'s app has no live_edit event")
        events = {
            "live_edit": [model, None, photo_id, *values, detail, None],
            "settle": [model, *values, detail],
        }
        return [
            (LIVE_EDIT_ROUTE, {"data": data, "fn_index": self.fn[name], "session_hash": session})
            for name, data in events.items()
            if name in self.fn
        ]

    def sample(self, route: str) -> subprocess.Popen | None:
        """py-spy sampling this server until stopped (SIGINT), when it is installed."""
        if not shutil.which("py-spy"):
            return None
        self.profiles += 1
        raw = self.folder / f"{self.name}-{route}-{self.profiles}.raw"
        command = ["py-spy", "record", "-p", str(self.process.pid), "-r", "100", "-f", "raw"]
        return subprocess.Popen(
            [*command, "-o", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(30)


@contextmanager
def serving() -> Iterator[dict[str, "Server"]]:
    """A dict for the servers a benchmark starts, each stopped when it ends; on a failure the
    end of each server's own output is printed first (it says why far better than a client)."""
    servers: dict[str, Server] = {}
    try:
        yield servers
    except Exception:
        for name, server in servers.items():
            print(f"--- {name}'s output:\n{server.log.read_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        for server in servers.values():
            server.stop()


@contextmanager
def alone(servers: Iterable[Server], running: Server | None = None) -> Iterator[None]:
    """Every one of `servers` but `running` stopped meanwhile (SIGSTOP, then SIGCONT): their
    idle loops (58–74 ms of CPU a second each at Gradio's defaults, a thousand wakeups) ran on
    the same 2 cores as the measured moves, and inflated the measured server's CPU."""
    others = [server for server in servers if server is not running]
    for server in others:
        server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        for server in others:
            server.process.send_signal(signal.SIGCONT)


def live_pictures(answer: dict) -> list[str]:
    """The crop's and the preview's <img>s in a live move's answer (either route's)."""
    return [answer["crop"], answer["photo"]] if "crop" in answer else answer["data"][:2]
