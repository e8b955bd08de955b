"""How the trainer's command lines report a file that could not be written: a full disk, a
read-only or unwritable folder. Each says `error: …` on stderr and exits with code 2, as for any
bad input, never with a traceback."""

import errno

from safetensors import SafetensorError

# safetensors reports its own I/O errors (a full disk while saving weights) as SafetensorError.
WRITE_ERRORS = (OSError, SafetensorError)
HINTS = {
    errno.ENOSPC: "the disk is full: free some space or choose a disk with room",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another disk",
    errno.EROFS: "that file system is read-only: choose a folder you can write to",
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "not permitted: choose a folder you can write to",
}


def write_failure(error: OSError | SafetensorError, folders: str = "--out, --cache-dir") -> str:
    """What a failed write means for the user, and what to do about it (`folders`: the flags
    that choose where this command writes)."""
    code = getattr(error, "errno", None)
    where = f" {error.filename}" if getattr(error, "filename", None) else ""
    reason = HINTS.get(code) or getattr(error, "strerror", None) or str(error)
    return f"could not write{where}: {reason} ({folders})."
