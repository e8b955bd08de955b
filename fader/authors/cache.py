"""The authors' released models on demand: downloaded once into a cache, converted once.

Nothing is downloaded in offline mode (`fader.environment.offline`), and a download that is cut
short or is not a readable checkpoint never enters the cache. The cache is
`$FADER_AUTHORS_CACHE`, else `$XDG_CACHE_HOME/fader/authors` (default `~/.cache/fader/authors`):
`<name>.pth` as downloaded, and `<name>/` as converted.
"""

import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from fader.authors.conversion import convert_checkpoint, save_converted
from fader.authors.legacy_pickle import CheckpointError, read_legacy_checkpoint
from fader.authors.releases import AUTHORS_URL, RELEASED, release_name, released_url
from fader.environment import offline, user_cache_dir
from fader.folder import is_model_folder


def default_cache_dir() -> Path:
    custom = os.environ.get("FADER_AUTHORS_CACHE")
    return Path(custom).expanduser() if custom else user_cache_dir("authors")


def _download(url: str, destination: Path) -> None:
    """Stream `url` to a temp file beside `destination`, check it, then rename it into place."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", dir=destination.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as file, urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name) as bar:
                while chunk := response.read(1 << 20):
                    file.write(chunk)
                    bar.update(len(chunk))
            received = file.tell()
        if total is not None and received != total:
            raise ValueError(
                f"The download of {url} stopped after {received} of {total} bytes; try again."
            )
        try:
            read_legacy_checkpoint(temp)  # a corrupt download never enters the cache
        except CheckpointError as error:
            raise ValueError(f"The file downloaded from {url} is unusable: {error}") from error
        temp.replace(destination)
    except (urllib.error.URLError, OSError) as error:
        raise ValueError(
            f"Could not download {url}: {error}. Check the connection, or set "
            "FADER_AUTHORS_URL to a mirror holding the authors' files."
        ) from error
    finally:
        temp.unlink(missing_ok=True)


def authors_checkpoint(name: str, cache_dir: str | Path | None = None) -> Path:
    """The released `<name>.pth` in the cache, downloaded first if it is not there yet."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    checkpoint = cache / f"{release_name(name)}.pth"
    if checkpoint.is_file():
        return checkpoint
    url = released_url(name)
    if offline():
        raise ValueError(
            f"The authors' {name} model is not cached and offline mode is on (FADER_OFFLINE or "
            f"HF_HUB_OFFLINE). Unset it to download {url}, or download that file elsewhere and "
            f"run: python -m fader.authors path/to/{name}.pth --out DIR"
        )
    _download(url, checkpoint)
    return checkpoint


def authors_model(name: str, cache_dir: str | Path | None = None) -> Path:
    """A converted model folder for the released `name`, downloading and converting once."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = cache / release_name(name)
    if is_model_folder(folder):
        return folder
    model = convert_checkpoint(
        authors_checkpoint(name, cache), RELEASED[name].alpha_range, f"{AUTHORS_URL}/{name}.pth"
    )
    return save_converted(model, folder)
