"""`python -m fader.edit`: edit photos, folders of photos and videos from the command line.

The same model names, alignment and paste-back as the app (`fader.library`, `fader.editor`);
videos go through `fader.video`. Every output is a new file in --out; a file that cannot be
read, a photo without a face and a video that fails are skipped, counted and named at the end.
"""

import argparse
import math
import os
import secrets
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:  # torch loads with it: --help answers without it
    from fader.model import FaderConfig

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm"})  # to fader.video

EXAMPLES = """\
examples:
  python -m fader.edit photo.jpg --model alice/fader-smiling-male --set Smiling=1.5 --out edited
  python -m fader.edit holiday/ more.png --model runs/smile_male --set Smiling=1 Male=0 --out out
  python -m fader.edit photo.jpg --model runs/smile_male --sweep Smiling --steps 7 --out strips
  python -m fader.edit clip.mp4 --model runs/smile_male --set Smiling=1.5 --out out
  python -m fader.edit seven.png --model digits --set seven=0 three=1 --out out

Attributes not given keep what the model's classifier reads from the photo (0 without one).
Faces: every face of each photo or frame is edited (--faces largest: the largest only).
Videos: every frame, at the source's frame rate and size, audio copied; frames without a face
pass through unedited.

exit codes: 0 at least one file edited (skipped files are listed); 2 bad input (unknown model
or attribute, bad --set, nothing to edit, or every file skipped).
"""


@dataclass
class Outcome:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (input, reason)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fader.edit",
        description="Edit photos, folders and videos with a Fader model (Lample et al., 2017).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", type=Path, metavar="PHOTO_OR_FOLDER_OR_VIDEO")
    parser.add_argument(
        "--model",
        required=True,
        help="a bundled model name (digits), 'authors: eyeglasses', a model folder or a Hugging "
        "Face repo id, as the app takes them",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="ATTRIBUTE=VALUE",
        help="slider values, e.g. Smiling=1.5 Male=0 (past 0..1 exaggerates); an attribute with "
        "several values takes one by name, e.g. Hair=Blond_Hair",
    )
    parser.add_argument(
        "--sweep",
        metavar="ATTRIBUTE",
        help="write a strip of crops of this attribute (or one value of a group, e.g. eight) "
        "from the model's slider minimum to its maximum instead of the edited photo (photos "
        "only)",
    )
    parser.add_argument("--steps", type=int, default=7, help="crops in a --sweep strip (7)")
    parser.add_argument(
        "--detail",
        type=float,
        help="keep photo detail, 0 (the model's output alone) to 1 (all the photo's detail the "
        "model does not rebuild; strong edits then show the old shape through). Default: the "
        "model's (1 for face models, 0 for whole-image models such as digits)",
    )
    parser.add_argument(
        "--faces",
        choices=["all", "largest"],
        default="all",
        help="in a photo with several faces, edit every face (default) or the largest only",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the edited files")
    parser.add_argument(
        "--aligner", default="auto", choices=["auto", "dlib", "face_alignment"], help="landmarks"
    )
    args = parser.parse_args(argv)
    # `--set A=1 photo.png` would take photo.png as a setting: a file named there is an input.
    named = [word for word in args.set if "=" not in word and Path(word).exists()]
    args.inputs = [Path(word) for word in named] + args.inputs
    args.set = [word for word in args.set if word not in named]
    if not args.inputs:
        parser.error("name at least one PHOTO_OR_FOLDER_OR_VIDEO to edit")
    return args


def swept_slider(name: str, config: "FaderConfig") -> str:
    """`--sweep NAME` as the model spells it, matched without case: a binary attribute, or one
    value of a group (a group as a whole has no single α to sweep)."""
    from fader.attributes import slider_names  # the model's schema imports torch: not for --help

    sliders = slider_names(config)
    by_lower = {slider.lower(): slider for slider in sliders}
    group = next((g for g in config.categories if g.lower() == name.lower()), None)
    if group is not None:
        values = ", ".join(config.categories[group])
        raise ValueError(f"--sweep {name}: sweep one value of {group} ({values}).")
    if name.lower() not in by_lower:
        raise ValueError(f"--sweep {name}: the model has no {name!r}; it has {', '.join(sliders)}.")
    return by_lower[name.lower()]


def slider_settings(pairs: list[str], config: "FaderConfig") -> dict[str, float | str]:
    """`["Smiling=1.5", "male=0", "Hair=Blond_Hair", "three=1"]` → {"Smiling": 1.5, "Male": 0.0,
    "Hair": "Blond_Hair", "three": 1.0}: names matched without case and spelled as the model
    does: an attribute, or one value of an attribute with several values (a group), which
    `fader.attributes.with_values` then applies to a photo's starting values."""
    names = [*config.attributes, *(v for values in config.categories.values() for v in values)]
    by_lower = {name.lower(): name for name in names}
    settings: dict[str, float | str] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"--set {pair!r}: write ATTRIBUTE=VALUE, e.g. Smiling=1.5.")
        if name.lower() not in by_lower:
            raise ValueError(f"--set {pair!r}: the model has no {name!r}; it has {names}.")
        name = by_lower[name.lower()]
        if categories := config.categories.get(name):
            chosen = [c for c in categories if c.lower() == text.lower()]
            if not chosen:
                raise ValueError(f"--set {pair!r}: {name} is one of {', '.join(categories)}.")
            settings[name] = chosen[0]
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"--set {pair!r}: the value must be a finite number.")
        settings[name] = value
    return settings


def input_files(inputs: list[Path]) -> list[Path]:
    """The files named, and every file inside the folders named (recursively, hidden ones
    left out), in a stable order; a path that does not exist is an error."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path} does not exist.")
    if not files:
        raise ValueError("Nothing to edit: the folders given hold no files.")
    return list(dict.fromkeys(files))


class OutputNames:
    """A new name in the output folder per input; never an input's own path, never a name
    already written in this run (photo.jpg and photo.png both exist: photo.png, photo-2.png)."""

    def __init__(self, folder: Path, inputs: Iterable[Path]):
        self.folder = folder
        self.taken = {p.resolve() for p in inputs}

    def __call__(self, source: Path, suffix: str, tag: str = "") -> Path:
        stem = source.stem + tag
        for n in range(1, 10_000):
            candidate = self.folder / f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
            if candidate.resolve() not in self.taken:
                self.taken.add(candidate.resolve())
                return candidate
        raise ValueError(f"Too many outputs named {stem} in {self.folder}.")


def write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary)` then a rename onto `target`: an interrupted run leaves no half file."""
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> Outcome:
    # Deferred so that --help answers without loading torch and the model.
    from fader.attributes import with_values  # the model's schema: torch, likewise
    from fader.library import ModelLibrary
    from fader.video import FrameEditor, edit_video  # PyAV, FFmpeg: likewise

    files = input_files(args.inputs)
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; name a folder.")
    library = ModelLibrary([args.model], args.aligner)
    editor = library.editor(args.model)
    settings = slider_settings(args.set, editor.model.config)
    if args.sweep is not None:
        sweep = swept_slider(args.sweep, editor.model.config)
        if not 2 <= args.steps <= 32:
            raise ValueError("--steps must be between 2 and 32.")
    args.out.mkdir(parents=True, exist_ok=True)
    names = OutputNames(args.out, files)
    outcome = Outcome()
    bar = tqdm(files, desc="Editing", unit="file")
    for path in bar:
        bar.set_postfix_str(path.name, refresh=False)
        try:
            if path.suffix.lower() in VIDEO_SUFFIXES:
                if args.sweep is not None:
                    raise ValueError("--sweep writes strips for photos, not videos")
                target = names(path, ".mp4")
                frames = FrameEditor(
                    editor.model, settings, args.aligner, editor.classifier, args.detail
                )
                frame_bar = tqdm(desc=path.name, unit="frame", leave=False)

                def progress(done: int, total: int, frame_bar: tqdm = frame_bar) -> None:
                    frame_bar.total = total or None
                    frame_bar.update(done - frame_bar.n)

                with frame_bar:
                    write_atomically(
                        target, lambda t, p=path, f=frames: edit_video(p, t, f, progress)
                    )
            else:
                photo_id = editor.load(path)
                values = with_values(
                    editor.model.config, editor.photo(photo_id).slider_start, settings
                )
                if args.sweep is not None:
                    low, high = editor.model.config.slider_range
                    image = editor.sweep(
                        photo_id,
                        sweep,
                        low,
                        high,
                        args.steps,
                        values,
                        detail=args.detail,
                        faces=args.faces,
                    )
                    target = names(path, ".png", f"-sweep-{sweep}")
                else:
                    edited = editor.edit(
                        photo_id,
                        values,
                        full_resolution=True,
                        detail=args.detail,
                        faces=args.faces,
                    )
                    image = edited.photo
                    target = names(path, ".png")
                write_atomically(target, lambda t, image=image: image.save(t, format="PNG"))
            outcome.written.append(target)
        except ValueError as error:
            outcome.skipped.append((path, str(error)))
    return outcome


def report(outcome: Outcome, out: Path) -> str:
    total = len(outcome.written) + len(outcome.skipped)
    lines = [f"Edited {len(outcome.written)} of {total} files into {out}."]
    if outcome.skipped:
        lines.append(f"Skipped {len(outcome.skipped)}:")
        lines += [f"  {path}: {reason}" for path, reason in outcome.skipped]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        outcome = run(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report(outcome, args.out), file=sys.stderr)
    return 0 if outcome.written else 2


if __name__ == "__main__":
    sys.exit(main())
