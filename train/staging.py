"""Folders built under a temporary name and renamed into place once complete, and the ones that
runs killed mid-build (kill -9, a crash, a power cut) left behind.

A staging folder is named `.NAME.PID.XXXXXXXX.tmp`: unique, so runs (or threads) started together
never write into each other's, and carrying the building process's id, so a later run can tell
an abandoned one (its process is gone) from one still being built, and remove it.
"""

import logging
import os
import re
import secrets
import shutil
from pathlib import Path

log = logging.getLogger(__name__)
STAGING = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def staging_folder(parent: Path, name: str) -> Path:
    """A new, empty `parent/.name.PID.XXXXXXXX.tmp` to build `name` in."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = parent / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    folder.mkdir()  # exclusive, with the user's usual permissions (mkdtemp's are owner-only)
    return folder


def remove_abandoned(parent: Path) -> list[Path]:
    """Remove the staging folders in `parent` whose process no longer runs; return them."""
    removed = []
    for folder in parent.glob(".*.tmp") if parent.is_dir() else []:
        match = STAGING.match(folder.name)
        if match and folder.is_dir() and not process_runs(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    if removed:
        log.info("Removed %d folder(s) left by runs that were killed: %s", len(removed), removed)
    return removed


def process_runs(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True
