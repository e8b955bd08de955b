"""Judging Fader models: the attribute classifier, swap accuracy and the evaluation report.

The data is made by the test and its attribute is obvious (a bright or a dark picture), so a
small classifier must read it almost perfectly, an untrained decoder must score near chance,
and a briefly trained Fader Network must score clearly higher.
"""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from fader import FaderConfig, FaderNetwork
from fader.classifier import Classifier, ClassifierConfig
from tests.builders import make_class_folders
from train.__main__ import main as train_main
from train.classifier import main as classifier_main
from train.data import held_out_batches
from train.evaluate import main as evaluate_main
from train.metrics import SwapTally, evaluate, psnr, swap_targets

COMMON = ["--workers", "1"]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def day_night(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """200 bright or dark pictures, a classifier trained on them, and a short Fader run."""
    root = tmp_path_factory.mktemp("judge")
    paths = {"data": make_class_folders(root / "daynight", per_class=100), "cache": root / "c"}
    paths["classifier"], paths["run"] = root / "classifier", root / "run"
    cache = ["--cache-dir", str(paths["cache"]), *COMMON]
    args = ["--data", str(paths["data"]), "--image-size", "32", "--epochs", "3"]
    assert classifier_main([*args, "--out", str(paths["classifier"]), *cache]) == 0
    code = train_main(
        [str(a) for a in ("--data", paths["data"], "--preset", "tiny", "--steps", 200,
                          "--lr", 1e-3, "--lambda-dis", 0.01, "--lambda-schedule", 50,
                          "--eval-every", 100, "--classifier", paths["classifier"],
                          "--out", paths["run"], *cache)]
    )  # fmt: skip
    assert code == 0
    return paths


def test_psnr_matches_a_hand_computed_value():
    target = torch.full((1, 3, 4, 4), -1.0)
    reconstruction = target + 0.2  # off by 0.1 on the [0, 1] scale: MSE 0.01 → 20 dB
    assert psnr(reconstruction, target).item() == pytest.approx(20.0, abs=1e-4)


def test_swaps_set_one_attribute_and_keep_the_others():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    swaps = list(swap_targets(labels, [2, 2], exclusive=False, off=-2.0, on=3.0))
    assert [(a, t) for a, t, _ in swaps] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # decoder channels [1-α, α] per attribute: α = 3 for the first, the second kept
    assert swaps[1][2].tolist() == [[-2.0, 3.0, 1.0, 0.0], [-2.0, 3.0, 0.0, 1.0]]
    assert swaps[2][2].tolist() == [[0.0, 1.0, 3.0, -2.0], [1.0, 0.0, 3.0, -2.0]]
    classes = list(swap_targets(labels, [2, 2], exclusive=True, off=0.0, on=1.0))
    assert [(a, t) for a, t, _ in classes] == [(0, 1), (1, 1)]
    assert classes[1][2].tolist() == [[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]]


def test_an_attribute_with_several_values_is_swapped_to_each_value_in_turn():
    labels = torch.tensor([[2.0, 1.0]])  # the third of three values, then a binary attribute
    swaps = list(swap_targets(labels, [3, 2], exclusive=False, off=-2.0, on=3.0))
    assert [(a, t) for a, t, _ in swaps] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert swaps[0][2].tolist() == [[3.0, -1.0, -1.0, 0.0, 1.0]]  # the rest share 1 - 3
    assert swaps[3][2].tolist() == [[0.0, 0.0, 1.0, 3.0, -2.0]]  # one-hot value kept


def test_swap_tally_counts_only_real_swaps_where_asked():
    tally = SwapTally(FaderConfig(attributes=["Smiling"]))
    hits = torch.tensor([True, False, True, True])
    tally.count("swap_accuracy", hits, torch.tensor([True, True, False, False]))
    tally.count("swap_accuracy_all_targets", hits)
    tally.count("swap_accuracy", torch.tensor([True]))
    assert tally.metrics() == {"swap_accuracy": 2 / 3, "swap_accuracy_all_targets": 3 / 4}


def test_the_classifier_reads_the_obvious_attribute(day_night: dict[str, Path]):
    classifier = Classifier.from_folder(day_night["classifier"])
    assert classifier.config.attributes == ["day", "night"] and classifier.config.exclusive
    assert classifier.config.metrics["accuracy"] >= 0.9
    assert classifier.config.image_channels == 1, "gray pictures: a grayscale judge"
    bright, dark = torch.full((1, 1, 32, 32), 0.7), torch.full((1, 1, 32, 32), -0.7)
    assert classifier.read(torch.cat([bright, dark])).tolist() == [[1, 0], [0, 1]]
    assert classifier.probabilities(bright).sum().item() == pytest.approx(1.0)


def test_trained_decoder_swaps_clearly_better_than_an_untrained_one(day_night: dict[str, Path]):
    from train.checkpoint import open_run
    from train.sources import TEST, VALIDATION

    trained, _, data = open_run(day_night["run"], None, None, None)
    classifier = Classifier.from_folder(day_night["classifier"])
    rows = data.indices(VALIDATION, TEST)
    columns = data.attribute_columns(trained.attributes)

    def judged(model: FaderNetwork) -> dict[str, float]:
        batches = held_out_batches(data, rows, columns, 64)
        return evaluate(model, None, batches, torch.device("cpu"), classifier, (-2.0, 3.0))

    torch.manual_seed(0)
    untrained = judged(FaderNetwork(trained.config).eval())
    learned = judged(trained)
    assert abs(untrained["swap_accuracy"] - 0.5) <= 0.3, untrained
    assert learned["swap_accuracy"] >= 0.9, learned
    assert learned["swap_accuracy"] >= untrained["swap_accuracy"] + 0.3
    assert learned["classifier_accuracy"] >= 0.9
    assert set(learned) >= {"swap_accuracy/day", "swap_accuracy/night", "swap_accuracy_extended"}


def test_training_with_a_classifier_logs_swap_accuracy(day_night: dict[str, Path]):
    log = (day_night["run"] / "train.log").read_text()
    assert log.count("swap accuracy") == 2
    metrics = FaderNetwork.from_pretrained(day_night["run"]).config.metrics
    assert 0 <= metrics["swap_accuracy"] <= 1


def logged_swap_accuracy(run: Path) -> dict[int, float]:
    log = (run / "train.log").read_text()
    found = re.findall(r"step (\d+): validation .* swap accuracy ([\d.]+)", log)
    return {int(step): float(value) for step, value in found}


def test_a_run_whose_swaps_collapse_late_keeps_the_model_from_its_peak(
    day_night: dict[str, Path], tmp_path: Path
):
    """As the authors' trainer kept `best_accu`: the run goes on with its pictures' labels
    swapped (day shown as night), so its decoder unlearns the swaps late, and the run folder
    still holds the peak's model, the last one being kept beside it in last/."""
    run, swapped = tmp_path / "run", tmp_path / "swapped"
    shutil.copytree(day_night["run"], run)
    shutil.copytree(day_night["data"] / "day", swapped / "night")
    shutil.copytree(day_night["data"] / "night", swapped / "day")
    before = (run / "model.safetensors").read_bytes()
    resumed = ["--out", run, "--resume", "--steps", 300, "--data", swapped, *COMMON]
    assert train_main([str(a) for a in resumed]) == 0
    scores = logged_swap_accuracy(run)
    assert sorted(scores) == [100, 200, 300]
    peak = max(scores, key=lambda step: (scores[step], -step))
    assert peak < 300 and scores[300] < scores[peak] - 0.2, scores
    selected = FaderNetwork.from_pretrained(run).config
    last = FaderNetwork.from_pretrained(run / "last").config
    assert selected.training["selected_by"] == "swap_accuracy"
    assert selected.training["steps_done"] == peak and last.training["steps_done"] == 300
    assert selected.metrics["swap_accuracy"] == pytest.approx(scores[peak], abs=1e-3)
    assert last.metrics["swap_accuracy"] == pytest.approx(scores[300], abs=1e-3)
    assert (run / "model.safetensors").read_bytes() == before, "the peak was before the resume"
    card = (run / "README.md").read_text()
    assert f"The model of step {peak}" in card and "highest swap accuracy" in card


def test_evaluate_reports_to_terminal_json_and_model_card(day_night: dict[str, Path], capsys):
    run = day_night["run"]
    assert evaluate_main([str(run), "--classifier", str(day_night["classifier"])]) == 0
    printed = capsys.readouterr().out
    report = json.loads((run / "evaluation.json").read_text())
    for name in ("reconstruction_mse", "psnr", "latent_discriminator_accuracy", "swap_accuracy",
                 "swap_accuracy_extended", "classifier_accuracy"):  # fmt: skip
        assert name in printed and math.isfinite(report[name])
    assert FaderNetwork.from_pretrained(run).config.metrics["swap_accuracy"] == pytest.approx(
        report["swap_accuracy"]
    )
    card = ModelCard.load(run / "README.md")
    assert "Swap accuracy" in card.text and f"{report['swap_accuracy']:.4f}" in card.text
    assert "sample_grid.png" in card.text, "the grid from training is still shown"


def test_a_classifier_for_other_attributes_is_refused_before_training(
    day_night: dict[str, Path], tmp_path: Path, capsys
):
    other = Classifier(ClassifierConfig(["Smiling"], image_size=32))
    other.save(tmp_path / "smiling")
    args = ["--data", str(day_night["data"]), "--preset", "tiny", "--out", str(tmp_path / "r")]
    assert train_main([*args, "--classifier", str(tmp_path / "smiling")]) == 2
    assert "does not read ['day', 'night']" in capsys.readouterr().err
    assert not (tmp_path / "r" / "checkpoint.safetensors").exists()
    assert evaluate_main([str(day_night["run"]), "--classifier", str(tmp_path)]) == 2
    assert "holds no classifier" in capsys.readouterr().err


def test_release_digits_refuses_a_run_that_is_not_a_digits_run_with_a_message(
    day_night: dict[str, Path], tmp_path: Path
):
    """Through the real command line: exit 2 and one `error:` line, never a traceback."""
    command = [sys.executable, "-m", "train.release_digits", "--out", str(tmp_path / "m"),
               "--command", "python -m train --data mnist5k",
               "--cache-dir", str(day_night["cache"])]  # fmt: skip
    for run, message in [
        (day_night["run"], "is not a --data mnist5k run"),
        (tmp_path / "no-run", "is not a model folder"),
    ]:
        done = subprocess.run(
            [*command, "--run", str(run)], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and message in done.stderr
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "m").exists(), "nothing written for a refused run"


def test_classifier_and_evaluate_refuse_bad_input_with_exit_code_2(tmp_path: Path, capsys):
    assert classifier_main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.startswith("error: --data")
    assert evaluate_main([str(tmp_path / "no-run")]) == 2
    assert "is not a model folder" in capsys.readouterr().err
    assert evaluate_main([str(tmp_path / "no-run"), "--images", "0"]) == 2
    assert "--images must be at least 1" in capsys.readouterr().err
    data = make_class_folders(tmp_path / "daynight", per_class=3)
    for flags, message in [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
        (["--image-size", "100"], "--image-size 100 must be a power of two"),
    ]:
        args = ["--data", str(data), "--out", str(tmp_path / "c"), *flags]
        assert classifier_main([*args, "--cache-dir", str(tmp_path / "cache")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "cache").exists()
