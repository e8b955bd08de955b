"""Where a slider move's own work goes, in-process: the page's live edit timed part by part.

`bench/move_cost.py` measures a move through the real server, where the host's noise moves a
figure by ±5 ms; cuts of a fraction of a millisecond show here instead. For each case (the
photos and models of `move_cost`) and each code tree asked for, a process of that tree's own
loads the photo and makes MOVES moves through `page.edits.edit` (inline, as the page's route
calls it), one thread, with a thread-CPU timer (`time.thread_time`) around each part of the
move that the tree has (`PARTS`): the handler's median per move and each part's mean per move,
in ms. The trees take turns, ROUNDS times, so a round's figures were measured side by side.

    python bench/move_parts.py --code before=REV --code after=REV [--cases face_1024 …]
        [--moves 200] [--rounds 2] [--out bench/results/move_parts_cpu.json]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from move_cost import make_photos, paper_model
from servers import ROOT, add_code_option, checkout, named_codes, revision_of

from fader.model import FaderNetwork

CASES = ("digit_28", "digit_900", "face_1024", "face_4000x3000", "group_of_4_1024")

# module, attribute: where a tree's live edit calls each part (a name a module imported is
# timed where it is called); a part a tree does not have is left out of its figures
PARTS = (
    ("fader.model", "FaderNetwork.decode"),
    ("fader.editor", "decode_crops"),
    ("fader.crop_edit", "to_images"),
    ("fader.editor", "paste_at"),
    ("fader.crop_edit", "pasted_face"),
    ("fader.crop_edit", "pasted_square"),
    ("page.edits", "inline_photo"),
    ("page.edits", "inline_crop"),
)

TIMED = """
import functools, importlib, json, statistics, sys, time
import cv2, torch
from PIL import Image
torch.set_num_threads(1)
cv2.setNumThreads(1)  # as the app runs a move on 2 cores (`app.main`'s --threads)
from fader.library import ModelLibrary
from page.edits import edit

model, photo, moves, detail = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
spent = {}

def timed(owner, name, label):
    original = getattr(owner, name)
    @functools.wraps(original)
    def call(*args, **kwargs):
        start = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.thread_time() - start
    setattr(owner, name, call)

for module, attribute in json.loads(sys.argv[5]):
    owner, *path = [importlib.import_module(module), *attribute.split(".")]
    for step in path[:-1]:
        owner = getattr(owner, step, None)
    if owner is not None and hasattr(owner, path[-1]):
        timed(owner, path[-1], attribute)

library = ModelLibrary([model])
photo_id = library.editor(model).load(Image.open(photo))
handler = []
for i in range(-10, moves):  # ten to warm up, then the kept pastes' bases are made
    values = [round(((i * 7) % 21) / 10 - 1, 2)] + [0.0] * 15
    if i == 0:
        spent.clear()
    start = time.thread_time()
    edit(library, model, None, photo_id, *values, inline=True, detail=detail)
    if i >= 0:
        handler.append(time.thread_time() - start)
parts = {label: round(1000 * seconds / moves, 3) for label, seconds in spent.items()}
print(json.dumps({"handler_ms": round(1000 * statistics.median(handler), 3), "parts_ms": parts}))
"""


def measured(tree: Path, model: str, photo: Path, moves: int, detail: float) -> dict:
    """One tree's figures for one photo, from a process of its own."""
    command = [sys.executable, "-c", TIMED, model, str(photo), str(moves), str(detail)]
    command.append(json.dumps(PARTS))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FADER_OFFLINE": "1"}
    done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{tree}: the timed moves failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_code_option(parser)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--moves", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "move_parts_cpu.json"
    )
    args = parser.parse_args()
    codes = named_codes(args.code)
    work = Path(tempfile.mkdtemp(prefix="fader-move-parts-"))
    try:
        photos = make_photos(work)
        paper = str(paper_model(work / "paper"))
        digits = str(ROOT / "assets" / "models" / "digits")
        trees = {code: checkout(rev, work / "code" / code) for code, rev in codes.items()}
        report = {
            "moves": args.moves,
            "code": {name: revision_of(rev) for name, rev in codes.items()},
            "cases": {},
        }
        for case in args.cases:
            model = digits if case.startswith("digit") else paper
            detail = FaderNetwork.from_pretrained(model).config.default_detail
            rounds = []
            for _ in range(args.rounds):
                rounds.append(
                    {
                        code: measured(tree, model, photos[case], args.moves, detail)
                        for code, tree in trees.items()
                    }
                )
                print(json.dumps({case: rounds[-1]}), file=sys.stderr, flush=True)
            report["cases"][case] = {"detail": detail, "rounds": rounds}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=1)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
