"""What the user's environment says about network use and where caches live.

Every module that downloads or caches asks here, so one setting means the same everywhere:
`FADER_OFFLINE=1` (or Hugging Face's own `HF_HUB_OFFLINE=1`) forbids downloads, and caches go
under `$XDG_CACHE_HOME/fader` (default `~/.cache/fader`).
"""

import os
from pathlib import Path

TRUE_WORDS = ("1", "true", "yes", "on")


def offline() -> bool:
    """True when the user asked for no network access (our flag, or the Hugging Face one)."""
    return any(
        os.environ.get(name, "").strip().lower() in TRUE_WORDS
        for name in ("FADER_OFFLINE", "HF_HUB_OFFLINE")
    )


def user_cache_dir(*parts: str) -> Path:
    """`$XDG_CACHE_HOME/fader/<parts>`, or `~/.cache/fader/<parts>` when it is unset."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fader" / Path(*parts)
