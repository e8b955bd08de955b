"""`python -m fader.authors`: one of the authors' released models → a Fader model folder.

The authors (facebookresearch/FaderNetworks) released five 256×256 CelebA models as PyTorch-0.3
pickles of whole modules; `torch.load` on such a file runs whatever the pickle asks for. This
command reads them without running any of their code (`fader.authors.legacy_pickle`), maps
them onto our FaderNetwork exactly (`fader.authors.conversion`) and writes config.json,
model.safetensors and a model card (`fader.folder`). A released name is downloaded once into
the cache first (`fader.authors.cache`).

    python -m fader.authors eyeglasses --out models/authors-eyeglasses
    python -m fader.authors ~/Downloads/male.pth --out models/authors-male

Bad input (an unknown name, a file that is not the authors' AutoEncoder, offline with nothing
cached) is reported as `error: …` with exit code 2. The released weights are licensed
CC BY-NC 4.0 (non-commercial); the model card says so.
"""

import argparse
import sys
from pathlib import Path

from fader.authors.cache import authors_checkpoint
from fader.authors.conversion import convert_checkpoint, save_converted
from fader.authors.releases import AUTHORS_URL, RELEASED


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m fader.authors",
        description="Convert one of the authors' released CelebA Fader Networks (a PyTorch-0.3 "
        "pickle) into a Fader model folder (config.json, model.safetensors, README.md). The "
        "pickle is read without running its code. The released weights are CC BY-NC 4.0: "
        "non-commercial use only.",
    )
    parser.add_argument(
        "model",
        help=f"a released name ({', '.join(RELEASED)}), downloaded from {AUTHORS_URL} into the "
        "cache on first use, or the path of a .pth file you downloaded",
    )
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where downloads are kept (default: $FADER_AUTHORS_CACHE, else "
        "$XDG_CACHE_HOME/fader/authors, i.e. ~/.cache/fader/authors)",
    )
    parser.add_argument(
        "--alpha-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="slider range recorded in config.json (default: the authors' range for the "
        "attribute, e.g. -1 2 for Eyeglasses/Male, -9 10 for Young/Narrow_Eyes/Pointy_Nose)",
    )
    args = parser.parse_args(argv)
    try:
        if args.model in RELEASED:
            checkpoint = authors_checkpoint(args.model, args.cache_dir)
            source = f"{AUTHORS_URL}/{args.model}.pth"
        else:
            checkpoint, source = Path(args.model), None
            if not checkpoint.is_file():
                raise ValueError(
                    f"{checkpoint} is neither a file nor a released name ({', '.join(RELEASED)})."
                )
        model = convert_checkpoint(checkpoint, args.alpha_range, source)
        out = save_converted(model, args.out)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    config = model.config
    print(
        f"Wrote {out}: {', '.join(config.attributes)}, {config.image_size}px, "
        f"α in {list(config.slider_range)} (licence CC BY-NC 4.0, non-commercial)."
    )


if __name__ == "__main__":
    main(sys.argv[1:])
