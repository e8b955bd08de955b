"""The table of digits runs tried for the bundled model: each run's settings and evaluations.

    python bench/digits_runs.py runs/digits-a runs/digits-b … > bench/results/digits_runs_cpu.json

Reads each run folder's checkpoint (its settings, the step it reached) and train.log (every
evaluation: reconstruction, latent-discriminator and swap accuracy), and prints one JSON object:
a row per run with its best evaluation by swap accuracy and its last: the table of what was
tried that BENCHMARKS.md quotes ("Retraining it as a grayscale model").
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train.checkpoint import CHECKPOINT_NAME, read_checkpoint_info  # noqa: E402

EVALUATION = re.compile(
    r"step (\d+): validation MSE ([\d.]+), PSNR ([\d.]+) dB, "
    r"latent-discriminator accuracy ([\d.]+), swap accuracy ([\d.]+)"
)
# the settings that differ between runs, as python -m train spells them
SHOWN = (
    "n_layers",
    "init_fm",
    "max_fm",
    "lr",
    "lambda_dis",
    "lambda_schedule",
    "batch_size",
    "n_clf_dis",
    "lambda_clf_dis",
)


def evaluations(run: Path) -> list[dict[str, float]]:
    text = (run / "train.log").read_text()
    return [
        {"step": int(s), "mse": float(m), "psnr": float(p), "latent": float(a), "swap": float(w)}
        for s, m, p, a, w in EVALUATION.findall(text)
    ]


def continued_run(run: Path) -> dict | None:
    """The run this one continued from another's copied folder with new settings (its log
    starts in that folder), and the step where they took over; None for a run of its own."""
    log = (run / "train.log").read_text()
    first = re.search(r"Run folder: (\S+)", log)
    resumed = re.search(r"Resuming from step (\d+)", log)
    if not first or Path(first.group(1)).name == run.name or not resumed:
        return None
    return {"run": Path(first.group(1)).name, "until_step": int(resumed.group(1))}


def run_row(run: Path) -> dict:
    step, info = read_checkpoint_info(run / CHECKPOINT_NAME)
    model, train = info["fader_config"], info["train_config"]
    settings = {k: model[k] for k in SHOWN if k in model} | {
        k: train[k] for k in SHOWN if k in train
    }
    groups = model.get("categories", {})
    found = evaluations(run)
    best = max(found, key=lambda e: (e["swap"], -e["step"])) if found else None
    return {
        "run": run.name,
        "continues": continued_run(run),
        "attributes": "one 10-valued attribute" if groups else f"{len(model['attributes'])} binary",
        "settings": settings,
        "steps_planned": train["steps"],
        "steps_done": step,
        "best_by_swap_accuracy": best,
        "last": found[-1] if found else None,
        "evaluations": found,
    }


def main(runs: list[str]) -> None:
    print(json.dumps({"runs": [run_row(Path(run)) for run in runs]}, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
