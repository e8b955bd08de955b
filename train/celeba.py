"""Where CelebA is when `python -m train` is given no --data: found where people keep it, or
fetched from the Hugging Face Hub when it is nowhere and the network may be used.

The places, in order: `$FADER_CELEBA`, `./data/celeba`, the user cache (`~/.cache/fader/celeba`
and `$XDG_CACHE_HOME/fader/celeba`), each in CelebA's own layout or torchvision's (`celeba/`
inside it); then the Hub copy (`train.hub_datasets.CELEBA_REPO`) if the Hugging Face cache holds it;
then, online, that copy downloaded into the Hugging Face cache.
"""

import os
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

from fader.environment import offline, user_cache_dir
from train.hub_datasets import CELEBA_REPO, HUB_PREFIX
from train.sources import find_celeba

ENVIRONMENT_VARIABLE = "FADER_CELEBA"
OFFICIAL_PAGE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"


def places() -> list[Path]:
    """The folders looked in, in order, without repeats."""
    found = [Path(os.environ[ENVIRONMENT_VARIABLE])] if os.environ.get(ENVIRONMENT_VARIABLE) else []
    found += [Path("data") / "celeba", Path.home() / ".cache" / "fader" / "celeba"]
    found.append(user_cache_dir("celeba"))
    unique: list[Path] = []
    for place in found:
        if place.expanduser().absolute() not in [p.expanduser().absolute() for p in unique]:
            unique.append(place)
    return unique


def in_hub_cache() -> bool:
    """Whether the Hugging Face cache already holds the Hub copy (no network asked)."""
    try:
        snapshot_download(
            CELEBA_REPO, repo_type="dataset", allow_patterns=["*.parquet"], local_files_only=True
        )
    except LocalEntryNotFoundError:
        return False
    return True


def locate_celeba() -> tuple[Path, str]:
    """`--data` for CelebA, and a line for the log saying where it came from; a ValueError
    listing the places looked in, and how to get CelebA, when it is nowhere and offline."""
    looked = places()
    for place in looked:
        root = find_celeba(place.expanduser())
        if root is not None:
            return root, f"Data: CelebA found in {root} (no --data given)."
    hub = Path(HUB_PREFIX + CELEBA_REPO)
    if in_hub_cache():
        return hub, f"Data: CelebA from the Hugging Face cache ({hub}; no --data given)."
    if not offline():
        return hub, f"Data: no CelebA found locally; fetching {hub} into the Hugging Face cache."
    raise ValueError(not_found_message(looked))


def not_found_message(looked: list[Path]) -> str:
    env = "" if os.environ.get(ENVIRONMENT_VARIABLE) else f" (${ENVIRONMENT_VARIABLE} is not set)"
    where = "\n".join(f"  {place}" for place in looked)
    return f"""no --data given, and CelebA is in none of the places looked in{env}:
{where}
  the Hugging Face cache ({HUB_PREFIX}{CELEBA_REPO})
and it cannot be fetched: FADER_OFFLINE or HF_HUB_OFFLINE is set. To get CelebA:
  - unset them and run the same command online: it downloads {HUB_PREFIX}{CELEBA_REPO} (about
    12 GB of parquet files) into the Hugging Face cache, resuming if interrupted;
  - or download the aligned images and the attribute and split files from {OFFICIAL_PAGE}
    and lay them out as DIR/img_align_celeba/*.jpg, DIR/list_attr_celeba.txt and
    DIR/list_eval_partition.txt, with DIR one of the folders above (or ${ENVIRONMENT_VARIABLE}=DIR);
  - or pass --data DIR (any layout in python -m train --help) or --data hf:OWNER/NAME."""
