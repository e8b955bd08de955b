"""Do the tests notice when the product breaks? Deliberate bugs, one at a time, in a scratch copy.

    python bench/mutations.py              # every mutant (about 5 minutes on 2 cores)
    python bench/mutations.py --only clip  # mutants whose name contains "clip"

Each mutant is a small edit of one or more source lines (issue 22's list and a few more). For
each, the tree is copied to a temporary folder (the working tree is never touched), the edit is
applied there, and only the test files or tests that guard that behaviour run, with this
interpreter. First the same tests run on an unmutated copy: a mutant counts as killed only if
tests that pass without it fail with it. Prints one JSON object. Run by hand, not in CI.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".gradio", "runs", "*.egg-info"
)


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    edits: tuple[tuple[str, str], ...]  # (exact text, replacement); each text occurs once
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions


ENTRY_USER = ("tests/test_entry_points.py", "-k", "as_a_user")
ENTRY_SPACE = ("tests/test_entry_points.py", "-k", "as_a_space")
BEHAVIOUR = "tests/test_training_behaviour.py"

MUTANTS = [
    Mutant(
        "app_main_without_upload_cap",
        "app.py",
        (('    "max_file_size": MAX_UPLOAD,\n', ""),),
        ENTRY_SPACE,
    ),
    Mutant(
        "app_main_always_loopback",
        "app.py",
        (("server_name=args.host,", 'server_name=args.host or "127.0.0.1",'),),
        ENTRY_SPACE,
    ),
    Mutant(
        "app_main_models_after_bundled",
        "app.py",
        (
            (
                "names = args.model + authors_choices() + list(bundled_models())",
                "names = authors_choices() + list(bundled_models()) + args.model",
            ),
        ),
        ENTRY_USER,
    ),
    Mutant(
        "app_main_ignores_aligner",
        "app.py",
        (("ModelLibrary(names, args.aligner)", "ModelLibrary(names)"),),
        ENTRY_USER,
    ),
    Mutant(
        "app_main_bad_model_traceback",
        "app.py",
        (
            (
                '    except ValueError as error:\n        print(f"error: {error}"',
                '    except KeyError as error:\n        print(f"error: {error}"',
            ),
        ),
        ("tests/test_entry_points.py", "-k", "cannot_load"),
    ),
    Mutant(
        "whole_image_paste_removed",
        "fader/photo.py",
        (
            (
                "    result.paste(pasted_square(site, np.asarray(edited), detail, photo), "
                "site.box[:2])\n",
                "",
            ),
        ),
        ("tests/test_paste_back.py",),
    ),
    Mutant(
        "adversarial_target_always_0",
        "train/step.py",
        (
            (
                "attribute_loss(discriminator(z), flipped_labels(labels, sizes), sizes)",
                "attribute_loss(discriminator(z), torch.zeros_like(labels), sizes)",
            ),
        ),
        (BEHAVIOUR, "-k", "flipped"),
    ),
    Mutant(
        "gradient_clipping_removed",
        "train/step.py",
        (
            ("    nn.utils.clip_grad_norm_(discriminator.parameters(), clip)\n", ""),
            ("    nn.utils.clip_grad_norm_(model.parameters(), clip)\n", ""),
        ),
        (BEHAVIOUR, "-k", "clip"),
    ),
    Mutant(
        "random_flips_disabled",
        "train/data.py",
        (("        if self.flip:\n", "        if False:\n"),),
        (BEHAVIOUR, "-k", "flip"),
    ),
    Mutant(
        "no_flip_ignored_by_the_run",
        "train/loop.py",
        (
            (
                "config.batch_size,\n            config.seed,\n            config.flip,",
                "config.batch_size,\n            config.seed,\n            False,",
            ),
        ),
        (BEHAVIOUR, "-k", "flip"),
    ),
    Mutant(
        "sliders_ignore_the_models_range",
        "page/sliders.py",
        (
            (
                "    low, high = editor.model.config.slider_range\n    keys = slider_keys(editor)",
                "    low, high = 0.0, 1.0\n    keys = slider_keys(editor)",
            ),
        ),
        ("tests/test_slider_range.py",),
    ),
    Mutant(
        "sweep_runs_0_to_0",
        "page/edits.py",
        (
            (
                "    low, high = editor.model.config.slider_range\n    faces = faces_present",
                "    low, high = 0.0, 0.0\n    faces = faces_present",
            ),
        ),
        ("tests/test_slider_range.py",),
    ),
    Mutant(
        "photo_store_no_refresh_on_use",
        "fader/photo_store.py",
        (
            (
                "            self._entries.move_to_end(photo_id)\n            entry.touched, entry",
                "            entry.touched, entry",
            ),
        ),
        ("tests/test_editor.py", "-k", "eviction"),
    ),
    Mutant(
        "editor_photo_is_the_newest",
        "fader/photo_store.py",
        (
            (
                "            entry = self._entries.get(photo_id)\n",
                "            entry = next(reversed(self._entries.values()), None)\n",
            ),
        ),
        ("tests/test_editor.py", "-k", "load_a_then_b"),
    ),
    Mutant(
        "push_uploads_checkpoint_and_log",
        "fader/folder.py",
        (
            (
                "PUBLISHED_FILES = MODEL_FILES + CLASSIFIER_FILES",
                'PUBLISHED_FILES = MODEL_FILES + CLASSIFIER_FILES + ("checkpoint.safetensors", '
                '"train.log")',
            ),
        ),
        ("tests/test_push.py", "-k", "exactly_the_model_files"),
    ),
    Mutant(
        "cuda_runs_without_the_graph",
        "train/loop.py",
        (
            (
                '    if device.type == "cuda" and not options and not authors_discriminator_step:',
                "    if False:",
            ),
        ),
        (BEHAVIOUR, "-k", "graphed_step_and_fast_math"),
    ),
    Mutant(
        "graph_replays_a_batch_of_another_shape",
        "train/cuda_graph.py",
        (
            (
                "if images.shape != static_images.shape or labels.shape != static_labels.shape:",
                "if False:",
            ),
        ),
        (BEHAVIOUR, "-k", "another_shape"),
    ),
    Mutant(
        "resume_keeps_the_saved_capturable_flag",
        "train/loop.py",
        (
            (
                '                    group["capturable"] = self.device.type == "cuda"',
                "                    pass",
            ),
        ),
        (BEHAVIOUR, "-k", "capturable"),
    ),
    Mutant(
        "sigterm_not_caught",
        "train/loop.py",
        (("for sig in (signal.SIGINT, signal.SIGTERM):", "for sig in (signal.SIGINT,):"),),
        (BEHAVIOUR, "-k", "sigterm"),
    ),
    Mutant(
        "legacy_tensor_layouts_unchecked",
        "fader/authors/legacy_pickle.py",
        (("        for tensor in unpickler.tensors:\n            tensor.check_layout()\n", ""),),
        ("tests/test_legacy_tensor_layouts.py",),
    ),
    Mutant(
        "move_body_read_whole",
        "page/moves.py",
        (("        if len(body) > MAX_MOVE_BYTES:\n", "        if False:\n"),),
        ("tests/test_app.py", "-k", "move_is_checked"),
    ),
    Mutant(
        "move_for_any_session",
        "page/moves.py",
        (("            session=move.session,\n", '            session="",\n'),),
        ("tests/test_app.py", "-k", "live_edit_answers_inline"),
    ),
    Mutant(
        "model_switch_on_input",
        "app.py",
        (("    page.model_name.change(\n", "    page.model_name.input(\n"),),
        ("tests/test_sliders_browser.py", "-k", "model_list_and_out"),
    ),
    Mutant(
        "photo_encoded_again_after_a_refused_model",
        "app.py",
        (
            ("    page.model_name.change(\n", "    switched = page.model_name.change(\n"),
            ("    encoded = page.current_model.change(\n", "    encoded = switched.then(\n"),
        ),
        ("tests/test_sliders_browser.py", "-k", "refused_name"),
    ),
    Mutant(
        "moves_not_in_turn",
        "page/moves.py",
        (("  await moves.busy;\n", ""),),
        ("tests/test_sliders_browser.py", "-k", "answered_after_reset_all"),
    ),
]


def apply(mutant: Mutant, tree: Path) -> None:
    path = tree / mutant.file
    text = path.read_text()
    for old, new in mutant.edits:
        if text.count(old) != 1:
            raise SystemExit(f"{mutant.name}: {old!r} occurs {text.count(old)}× in {mutant.file}")
        text = text.replace(old, new)
    path.write_text(text)


def run_tests(tree: Path, tests: tuple[str, ...], timeout: int) -> tuple[int, float]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "FADER_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    try:
        result = subprocess.run(command, cwd=tree, env=env, capture_output=True, timeout=timeout)
        code = result.returncode
    except subprocess.TimeoutExpired:
        code = -1
    return code, round(time.monotonic() - start, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the mutants whose name contains this")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per test run")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if args.only in m.name]
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="fader-mutants-") as scratch:
        clean = Path(scratch) / "clean"
        shutil.copytree(ROOT, clean, ignore=NOT_COPIED)
        baselines: dict[tuple[str, ...], int] = {}  # each selection of tests runs clean once
        for mutant in mutants:
            if mutant.tests not in baselines:
                baselines[mutant.tests], _ = run_tests(clean, mutant.tests, args.timeout)
            baseline = baselines[mutant.tests]
            tree = Path(scratch) / mutant.name
            shutil.copytree(clean, tree)
            apply(mutant, tree)
            code, seconds = run_tests(tree, mutant.tests, args.timeout)
            if baseline != 0:
                verdict = "tests fail without the mutant"
            elif code == 1:
                verdict = "killed"
            elif code == 0:
                verdict = "survived"
            else:
                verdict = f"error (pytest exit {code})"
            report[mutant.name] = {"result": verdict, "tests": " ".join(mutant.tests), "s": seconds}
            shutil.rmtree(tree)
    killed = sum(r["result"] == "killed" for r in report.values())
    print(json.dumps({"killed": killed, "of": len(report), "mutants": report}, indent=1))


if __name__ == "__main__":
    main()
