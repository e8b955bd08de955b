"""A model's name → the model: bundled, a local folder, a Hub repo, or the authors' (on demand).

The app and scripts name models in one way (`digits`, `runs/smile_male`, `alice/fader-smile`,
`authors: eyeglasses`); this module turns such a name into a network and, when the model ships
one, its classifier. It is the only inference module that reaches the converter, and only to
fetch the authors' models when one is asked for.
"""

import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from huggingface_hub import hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

from fader.authors.cache import authors_model, default_cache_dir
from fader.authors.releases import RELEASED, released_url
from fader.classifier import Classifier
from fader.editor import Editor
from fader.environment import offline
from fader.folder import CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS
from fader.model import FaderNetwork

BUNDLED_MODELS = Path(__file__).resolve().parent.parent / "assets" / "models"


def bundled_models() -> dict[str, Path]:
    """Models shipped in `assets/models/`, by folder name."""
    if not BUNDLED_MODELS.is_dir():
        return {}
    return {
        folder.name: folder
        for folder in sorted(BUNDLED_MODELS.iterdir())
        if (folder / "config.json").is_file()
    }


AUTHORS_PREFIX = "authors: "
PROBE_TIMEOUT = 3.0  # seconds the download server gets to answer whether a file is there
PROBE_MEMORY = 600.0  # seconds an answer is trusted before the server is asked again
_probes: dict[str, tuple[float, int | None]] = {}  # url → (when asked, size or None)
_probes_lock = threading.Lock()


def download_size(url: str) -> int | None:
    """The size in bytes of `url` if it can be downloaded now, else None: found by asking (a
    HEAD request), not guessed from settings, and remembered for PROBE_MEMORY seconds."""
    if offline():
        return None
    with _probes_lock:
        asked = _probes.get(url)
    if asked is not None and time.monotonic() - asked[0] < PROBE_MEMORY:
        return asked[1]
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as reply:
            size: int | None = int(reply.headers.get("Content-Length") or 0)
    except (OSError, ValueError):
        size = None
    with _probes_lock:
        _probes[url] = (time.monotonic(), size)
    return size


def authors_converted(name: str) -> bool:
    return (default_cache_dir() / name / "config.json").is_file()


def authors_choices() -> list[str]:
    """The authors' released CelebA models that can really be loaded now: already converted,
    or downloadable (the server answered). Each downloads and converts on first use."""
    names = list(RELEASED)
    with ThreadPoolExecutor(len(names)) as pool:  # one short wait, not five
        sizes = dict(
            zip(names, pool.map(lambda n: download_size(released_url(n)), names), strict=True)
        )
    return [
        AUTHORS_PREFIX + name
        for name in names
        if authors_converted(name) or sizes[name] is not None
    ]


def choice_label(name: str) -> str:
    """How the model list shows `name`: a model still to be downloaded says so, with its size."""
    if not name.startswith(AUTHORS_PREFIX):
        return name
    release = name.removeprefix(AUTHORS_PREFIX)
    if authors_converted(release):
        return name
    size = download_size(released_url(release))
    mb = f"{size / 2**20:.0f} MB" if size else "size unknown"
    return f"{name} (downloads {mb} once; CC BY-NC, non-commercial)"


def load_classifier(name: str) -> Classifier | None:
    """The classifier shipped beside a model (bundled, local folder or Hub repo), if any: it
    tells where the sliders should start for a photo. A model without one still works."""
    folder = bundled_models().get(name) or Path(name)
    if folder.is_dir():
        has_one = (folder / CLASSIFIER_CONFIG).is_file()
        return Classifier.from_folder(folder) if has_one else None
    if name.startswith(AUTHORS_PREFIX):
        return None
    try:
        files = [hf_hub_download(name, f) for f in (CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS)]
    except (HfHubHTTPError, LocalEntryNotFoundError, HFValidationError, OSError):
        return None  # no classifier in that repo (or offline): sliders start at 0
    return Classifier.from_folder(Path(files[0]).parent)


def load_model(name: str) -> FaderNetwork:
    """A bundled model name, `authors: <name>`, a local model folder, or a Hub repo id."""
    bundled = bundled_models()
    if name in bundled:
        return FaderNetwork.from_pretrained(bundled[name])
    if name.startswith(AUTHORS_PREFIX):
        return FaderNetwork.from_pretrained(authors_model(name.removeprefix(AUTHORS_PREFIX)))
    return FaderNetwork.from_pretrained(name)


class ModelLibrary:
    """The models an app offers, each loaded on first use and then kept (one Editor each)."""

    def __init__(self, names: list[str], aligner: str = "auto"):
        if not names:
            raise ValueError("No model to offer: pass --model, or add one under assets/models/.")
        self.names = list(dict.fromkeys(names))
        self.aligner = aligner
        self._editors: dict[str, Editor] = {}
        self._lock = threading.Lock()

    def loaded(self, name: str) -> bool:
        """Whether `name`'s model is loaded already (`editor` would not load, nor download)."""
        return name in self._editors

    def editor(self, name: str) -> Editor:
        if name not in self.names:
            raise ValueError(f"Unknown model {name!r}; choose one of {self.names}.")
        with self._lock:  # loading twice at once would only waste memory
            if name not in self._editors:
                self._editors[name] = Editor(
                    load_model(name), self.aligner, classifier=load_classifier(name)
                )
            return self._editors[name]
