"""A model's name → the model: bundled, a local folder, a Hub repo, or the authors' (on demand).

The app and scripts name models in one way (`digits`, `runs/smile_male`, `alice/fader-smile`,
`authors: eyeglasses`); this module turns such a name into a network and, when the model ships
one, its classifier. It is the only inference module that reaches the converter, and only to
fetch the authors' models when one is asked for.
"""

import threading
from pathlib import Path

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


def authors_choices() -> list[str]:
    """The authors' released CelebA models the app can offer: already converted, or
    downloadable (not when offline). Each downloads and converts on first use."""
    from fader.authors_cache import default_cache_dir
    from fader.authors_release import RELEASED

    cache = default_cache_dir()
    return [
        AUTHORS_PREFIX + name
        for name in RELEASED
        if not offline() or (cache / name / "config.json").is_file()
    ]


def load_classifier(name: str) -> Classifier | None:
    """The classifier shipped beside a model (bundled, local folder or Hub repo), if any: it
    tells where the sliders should start for a photo. A model without one still works."""
    folder = bundled_models().get(name) or Path(name)
    if folder.is_dir():
        has_one = (folder / CLASSIFIER_CONFIG).is_file()
        return Classifier.from_folder(folder) if has_one else None
    if name.startswith(AUTHORS_PREFIX):
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

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
        from fader.authors_cache import authors_model

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

    def editor(self, name: str) -> Editor:
        if name not in self.names:
            raise ValueError(f"Unknown model {name!r}; choose one of {self.names}.")
        with self._lock:  # loading twice at once would only waste memory
            if name not in self._editors:
                self._editors[name] = Editor(
                    load_model(name), self.aligner, classifier=load_classifier(name)
                )
            return self._editors[name]
