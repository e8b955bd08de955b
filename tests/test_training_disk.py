"""The trainer's writes on real file systems that fail: a read-only folder, a full disk (real
tmpfs mounts of a few kilobytes, where this process may mount one), and a run killed with -9
while it built its cache. Each is a message, a line in train.log and exit code 2, never a
traceback or a half-written file."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fader.model import FaderNetwork
from tests.builders import make_class_folders
from train.__main__ import main as train_main
from train.checkpoint import read_checkpoint_info

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A real file system of `size` bytes at `path` (a full disk, for real), or a skip where
    this process may not mount one (mounting needs root)."""
    path.mkdir(parents=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """A folder nobody may write into: a read-only mount as root (root ignores permission
    bits), the permission bits otherwise."""
    if os.geteuid() == 0:
        with tmpfs(path, "1m", read_only=True):
            yield path
        return
    path.mkdir(parents=True)
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)


def train_cli(*args: object) -> subprocess.CompletedProcess:
    """`python -m train …` as a user runs it."""
    command = [sys.executable, "-m", "train", "--preset", "tiny", "--workers", "1", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def assert_refused(done: subprocess.CompletedProcess, message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, done.stderr


def test_a_read_only_run_folder_or_cache_is_a_message_and_a_line_in_the_log(tmp_path: Path):
    data = make_class_folders(tmp_path / "daynight", per_class=6)
    with read_only_folder(tmp_path / "locked") as locked:
        assert_refused(
            train_cli("--data", data, "--out", locked / "run", "--cache-dir", tmp_path / "c"),
            f"could not write {locked / 'run'}",
        )
        out = tmp_path / "run"
        done = train_cli("--data", data, "--out", out, "--cache-dir", locked / "cache")
        assert_refused(done, f"could not write {locked / 'cache'}")
        assert "choose a folder you can write to" in done.stderr
        assert f"ERROR could not write {locked / 'cache'}" in (out / "train.log").read_text()


def test_a_run_without_out_where_runs_cannot_be_made_is_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    data = make_class_folders(tmp_path / "daynight", per_class=6)
    flags = ["--data", data, "--preset", "tiny", "--workers", 1, "--cache-dir", tmp_path / "c"]
    with read_only_folder(tmp_path / "locked") as locked, monkeypatch.context() as inside:
        inside.chdir(locked)
        assert train_main([str(flag) for flag in flags]) == 2
    printed = capsys.readouterr().err
    assert "Traceback" not in printed
    assert printed.strip().splitlines()[-1].startswith("error: could not write runs: ")


def test_a_full_disk_while_preprocessing_is_a_message_and_leaves_no_half_built_cache(
    tmp_path: Path,
):
    data = make_class_folders(tmp_path / "daynight", per_class=20)  # 40 × 3 KB at 32²
    with tmpfs(tmp_path / "small", "64k") as small:
        out = tmp_path / "run"
        done = train_cli("--data", data, "--out", out, "--cache-dir", small)
        assert_refused(done, "the disk is full: free some space or choose a disk with room")
        assert "ERROR could not write" in (out / "train.log").read_text()
        assert list(small.iterdir()) == [], "the staging folder was removed"


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def test_a_full_disk_at_a_checkpoint_keeps_the_last_good_one_and_says_so(tmp_path: Path):
    data = make_class_folders(tmp_path / "daynight")
    cache = ["--cache-dir", tmp_path / "cache", "--eval-every", 1000]
    measured = tmp_path / "measured"
    assert train_cli("--data", data, "--steps", 1, "--out", measured, *cache).returncode == 0
    checkpoint_size = (measured / "checkpoint.safetensors").stat().st_size
    # Room for one run folder and half a checkpoint more: the first save fits, the second one's
    # temporary file (written beside the last good checkpoint) does not.
    room = folder_bytes(measured) + checkpoint_size // 2
    with tmpfs(tmp_path / "disk", str(room)) as disk:
        out = disk / "run"
        done = train_cli("--data", data, "--steps", 4, "--save-every", 2, "--out", out, *cache)
        assert_refused(done, "the disk is full")
        assert f"The last good checkpoint ({out / 'checkpoint.safetensors'}) is kept" in done.stderr
        assert read_checkpoint_info(out / "checkpoint.safetensors")[0] == 2
        assert not list(out.glob("*.tmp")), "the partial checkpoint was removed"
        assert "ERROR could not write" in (out / "train.log").read_text()
        FaderNetwork.from_pretrained(out)


def test_a_staging_folder_left_by_kill_9_during_preprocessing_is_removed_by_the_next_run(
    tmp_path: Path,
):
    data = make_class_folders(tmp_path / "daynight", per_class=150)
    cache = tmp_path / "cache"
    args = ["--data", data, "--image-size", 256, "--cache-dir", cache, "--steps", 1]
    command = [sys.executable, "-m", "train", "--preset", "tiny", "--workers", "1"]
    process = subprocess.Popen(
        [*command, *map(str, args), "--out", str(tmp_path / "killed")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(cache.glob(".*.tmp/staging.npy")):
        assert process.poll() is None and time.monotonic() < deadline, "preprocessing not seen"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(30)
    (left,) = cache.glob(".*.tmp")
    assert (left / "staging.npy").is_file(), "killed mid-way: the half-built cache is there"
    assert train_main([*map(str, args), "--preset", "tiny", "--out", str(tmp_path / "next")]) == 0
    assert not list(cache.glob(".*.tmp")), "the next run removed what the killed one left"
