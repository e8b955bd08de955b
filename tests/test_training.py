"""The training algorithm and `python -m train`, run for real on small datasets made on disk."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from fader.model import FaderConfig, FaderNetwork, LatentDiscriminator
from tests.builders import make_celeba, make_class_folders, make_labelled_folder
from train.__main__ import main, parse_args
from train.checkpoint import read_checkpoint_info
from train.classifier import main as classifier_main
from train.config import PRESETS, TrainConfig, lambda_schedule
from train.plan import configs_from_args
from train.step import adam, training_step

ROOT = Path(__file__).resolve().parents[1]


def tiny_networks(attributes: list[str]) -> tuple[FaderNetwork, LatentDiscriminator, dict]:
    torch.manual_seed(0)
    config = FaderConfig(attributes=attributes, **PRESETS["tiny"]["model"])
    model, discriminator = FaderNetwork(config), LatentDiscriminator(config)
    optimizers = {
        "autoencoder": adam(model, TrainConfig()),
        "discriminator": adam(discriminator, TrainConfig()),
    }
    return model.train(), discriminator, optimizers


def test_lambda_ramps_linearly_from_zero_then_stays():
    assert lambda_schedule(0, 1e-4, 500_000) == 0
    assert lambda_schedule(250_000, 1e-4, 500_000) == pytest.approx(5e-5)
    assert lambda_schedule(500_000, 1e-4, 500_000) == pytest.approx(1e-4)
    assert lambda_schedule(2_000_000, 1e-4, 500_000) == pytest.approx(1e-4)
    assert lambda_schedule(0, 1e-4, 0) == 1e-4


def test_encoder_is_trained_against_the_flipped_attributes():
    """A discriminator that reads y perfectly is cheap for itself and costly for the encoder."""
    model, discriminator, optimizers = tiny_networks(["Smiling"])
    with torch.no_grad():
        discriminator.proj[-1].weight.zero_()
        discriminator.proj[-1].bias.copy_(torch.tensor([-10.0, 10.0]))  # always says "1"
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    labels = torch.ones(8, 1)
    losses = training_step(model, discriminator, optimizers, images, labels, 1e-4, 5.0)
    assert losses["discriminator"].item() < 1e-3, "true labels: the discriminator is right"
    assert losses["adversarial"].item() > 10, "flipped labels: the encoder is penalised"


def test_adversarial_loss_trains_the_encoder_and_leaves_the_discriminator_alone():
    """Same start, λ = 0 vs λ = 100: the encoder moves differently, the discriminator's
    gradients (from its own step only) are identical."""
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 2, (8, 2)).float()
    results = []
    for lam in (0.0, 100.0):
        model, discriminator, optimizers = tiny_networks(["Smiling", "Male"])
        torch.manual_seed(1)
        training_step(model, discriminator, optimizers, images, labels, lam, 5.0)
        results.append(
            (model.encoder.state_dict(), [p.grad.clone() for p in discriminator.parameters()])
        )
    (encoder_a, grads_a), (encoder_b, grads_b) = results
    assert any(not torch.equal(encoder_a[k], encoder_b[k]) for k in encoder_a)
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b, strict=True))


def two_steps(lambdas: list, precision: torch.dtype | None = None) -> list[dict]:
    """Losses of two steps from the same start on the same batches, and the final weights."""
    model, discriminator, optimizers = tiny_networks(["Smiling", "Male"])
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (2, 8, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 2, (2, 8, 2), generator=generator).float()
    torch.manual_seed(1)  # the discriminator's dropout
    losses = [
        {k: v.item() for k, v in training_step(model, discriminator, optimizers, *batch).items()}
        for batch in zip(images, labels, lambdas, [5.0] * 2, [precision] * 2, strict=True)
    ]
    return [*losses, model.state_dict()]


def test_lambda_given_as_a_tensor_trains_exactly_as_a_number():
    """A CUDA graph of the step (train.cuda_graph) reads λ_dis from a tensor it owns."""
    *by_number, weights_a = two_steps([0.5, 2.0])
    *by_tensor, weights_b = two_steps([torch.tensor(0.5), torch.tensor(2.0)])
    assert by_number == by_tensor
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


def test_bf16_autocast_step_keeps_float32_weights_and_close_losses():
    """The CUDA path's precision, run here on the CPU: same algorithm, bf16 rounding only."""
    *float32, _ = two_steps([1.0, 1.0])
    *bf16, weights = two_steps([1.0, 1.0], precision=torch.bfloat16)
    assert all(w.dtype in (torch.float32, torch.int64) for w in weights.values())
    for exact, rounded in zip(float32, bf16, strict=True):
        assert rounded == pytest.approx(exact, rel=0.05)
        assert rounded["reconstruction"] != exact["reconstruction"], "bf16 really ran"


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def logged_mse(out: Path) -> list[float]:
    return [
        float(m) for m in re.findall(r"validation MSE ([\d.]+)", (out / "train.log").read_text())
    ]


def test_training_on_celeba_layout_reduces_reconstruction_error(celeba_dir: Path, tmp_path: Path):
    out = tmp_path / "run"
    code = run_cli(
        "--data", celeba_dir, "--attrs", "Smiling", "Male", "--preset", "tiny", "--steps", 150,
        "--eval-every", 25, "--out", out, "--cache-dir", tmp_path / "cache", "--workers", 1,
    )  # fmt: skip
    assert code == 0
    mse = logged_mse(out)
    assert len(mse) == 6 and mse[-1] < 0.6 * mse[0], mse
    assert len(list((out / "samples").glob("step_*.png"))) == 6
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    model = FaderNetwork.from_pretrained(out)
    assert model.config.attributes == ["Smiling", "Male"] and model.config.preprocessing == "celeba"
    assert model.config.metrics["reconstruction_mse"] == pytest.approx(mse[-1], abs=1e-4)
    assert model.config.training["steps_done"] == 150
    assert "data" not in model.config.training, "no local paths in a model that may be published"
    checkpoint = load_file(str(out / "checkpoint.safetensors"))
    weights = load_file(str(out / "model.safetensors"))
    assert any(k.startswith("discriminator.") for k in checkpoint)
    assert not any("discriminator" in k for k in weights), "the discriminator is training-only"
    assert all(torch.equal(checkpoint[f"model.{k}"], v) for k, v in weights.items())
    card = (out / "README.md").read_text()
    assert "Smiling" in card and "sample_grid.png" in card and (out / "sample_grid.png").is_file()


def test_interrupted_and_resumed_run_ends_with_the_same_weights(celeba_dir: Path, tmp_path: Path):
    common = [
        "--preset",
        "tiny",
        "--eval-every",
        1000,
        "--cache-dir",
        tmp_path / "cache",
        "--workers",
        1,
    ]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert (
        run_cli(
            "--data", celeba_dir, "--attrs", "Smiling", "--steps", 30, "--out", straight, *common
        )
        == 0
    )
    assert (
        run_cli("--data", celeba_dir, "--attrs", "Smiling", "--steps", 12, "--out", split, *common)
        == 0
    )
    assert read_checkpoint_info(split / "checkpoint.safetensors")[0] == 12
    assert run_cli("--out", split, "--resume", "--steps", 30) == 0
    assert "Resuming from step 12 of 30" in (split / "train.log").read_text()
    assert read_checkpoint_info(split / "checkpoint.safetensors")[0] == 30
    a, b = (
        load_file(str(straight / "model.safetensors")),
        load_file(str(split / "model.safetensors")),
    )
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume_in_the_folder_the_run_chose(
    celeba_dir: Path, tmp_path: Path
):
    """Without --out the run chose runs/smiling itself: the resume command names it."""
    out = tmp_path / "runs" / "smiling"
    log = tmp_path / "stderr.txt"
    command = [
        sys.executable, "-m", "train", "--data", str(celeba_dir), "--attrs", "Smiling",
        "--preset", "tiny", "--steps", "100000", "--save-every", "100000", "--eval-every", "100000",
        "--cache-dir", str(tmp_path / "cache"), "--workers", "1",
    ]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}  # run from tmp_path, as a user might
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=environment, stderr=stderr, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while not re.search(r"Training: .* (\d{2,})/100000", log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 130
    resume = f"Resume with: python -m train --out {Path('runs') / 'smiling'} --resume"
    assert resume in log.read_text()
    step, _ = read_checkpoint_info(out / "checkpoint.safetensors")
    assert step >= 10
    FaderNetwork.from_pretrained(out)
    assert not list(out.glob("*.tmp")), "no half-written files left behind"
    assert run_cli("--out", out, "--resume", "--steps", step + 5) == 0
    assert read_checkpoint_info(out / "checkpoint.safetensors")[0] == step + 5


def test_losses_are_read_every_log_every_steps_and_the_run_says_its_throughput(tmp_path: Path):
    """Reading a loss waits for the GPU: it happens every --log-every steps (and once where the
    throughput count starts, after the warm-up steps), each reading the mean since the last."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = make_class_folders(tmp_path / "daynight")
    out = tmp_path / "run"
    common = ["--cache-dir", tmp_path / "cache", "--workers", 1, "--preset", "tiny"]
    assert run_cli("--data", data, "--steps", 20, "--log-every", 4, "--out", out, *common) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    read_at = [event.step for event in events.Scalars("train/reconstruction_loss")]
    assert read_at == [4, 5, 8, 12, 16, 20]
    assert re.search(
        r"Trained steps 6–20 at [\d.]+ images/s \(1 process,", (out / "train.log").read_text()
    )


def test_a_diverging_resume_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, capsys
):
    data = make_class_folders(tmp_path / "daynight")
    out = tmp_path / "run"
    common = ["--cache-dir", tmp_path / "cache", "--workers", 1]
    assert run_cli("--data", data, "--preset", "tiny", "--steps", 5, "--out", out, *common) == 0
    good = (out / "checkpoint.safetensors").read_bytes()
    # An absurd learning rate given on resume must take effect (the saved optimizer state
    # holds the old one) and blow the losses up at once.
    assert run_cli("--out", out, "--resume", "--steps", 30, "--lr", 1e38) == 2
    assert re.search(
        r"Loss became .*nan.* between steps 5 and 10; stopped without saving",
        capsys.readouterr().err,
    )
    assert (out / "checkpoint.safetensors").read_bytes() == good
    FaderNetwork.from_pretrained(out)


def test_labels_csv_and_class_folders_train_through_the_same_command(tmp_path: Path):
    folder, labels = make_labelled_folder(tmp_path / "photos")
    common = ["--preset", "tiny", "--steps", 4, "--cache-dir", tmp_path / "cache", "--workers", 1]
    assert run_cli("--data", folder, "--labels", labels, "--out", tmp_path / "csv", *common) == 0
    assert FaderNetwork.from_pretrained(tmp_path / "csv").config.attributes == ["Smiling", "Male"]
    classes = make_class_folders(tmp_path / "daynight")
    assert run_cli("--data", classes, "--out", tmp_path / "folders", *common) == 0
    model = FaderNetwork.from_pretrained(tmp_path / "folders")
    assert model.config.attributes == ["day", "night"] and model.config.preprocessing == "center"


def test_bad_input_fails_at_once_with_a_message(celeba_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "run"
    assert run_cli("--data", celeba_dir, "--attrs", "Beard", "--out", out) == 2
    assert "Unknown attribute(s) Beard. Valid attributes" in capsys.readouterr().err
    assert run_cli("--data", tmp_path / "missing", "--out", out) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run_cli("--data", tmp_path / "empty", "--out", out) == 2
    assert "No images found" in capsys.readouterr().err
    assert run_cli("--out", tmp_path / "never-trained", "--resume") == 2
    assert "does not exist; start without --resume" in capsys.readouterr().err
    assert not (out / "checkpoint.safetensors").exists()


def test_an_existing_run_is_never_overwritten_without_resume(
    celeba_dir: Path, tmp_path: Path, capsys
):
    out = tmp_path / "run"
    common = [
        "--data",
        celeba_dir,
        "--attrs",
        "Male",
        "--preset",
        "tiny",
        "--cache-dir",
        tmp_path / "c",
    ]
    assert run_cli(*common, "--steps", 3, "--out", out) == 0
    before = (out / "checkpoint.safetensors").read_bytes()
    assert run_cli(*common, "--steps", 3, "--out", out) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "checkpoint.safetensors").read_bytes() == before


def test_training_skips_unreadable_images_and_says_how_many(tmp_path: Path):
    root = make_celeba(tmp_path / "data", n=12)
    (root / "img_align_celeba" / "000003.jpg").write_bytes(b"\xff\xd8 broken")
    out = tmp_path / "run"
    args = ["--data", root, "--attrs", "Smiling", "--preset", "tiny", "--steps", 3, "--out", out]
    assert run_cli(*args, "--cache-dir", tmp_path / "cache") == 0
    assert "1 of 12 images could not be read and were skipped" in (out / "train.log").read_text()
    assert FaderNetwork.from_pretrained(out).config.training["skipped_images"] == 1


def test_grayscale_data_trains_a_one_channel_model_unless_a_flag_says_otherwise(
    tmp_path: Path,
):
    """Digits and other gray pictures train a model that reads and writes one channel (so its
    edits cannot drift into colour); colour photos keep three."""
    gray = make_class_folders(tmp_path / "daynight")
    colour, labels = make_labelled_folder(tmp_path / "photos")
    common = ["--preset", "tiny", "--steps", 2, "--cache-dir", tmp_path / "cache", "--workers", 1]
    assert run_cli("--data", gray, "--out", tmp_path / "gray", *common) == 0
    assert run_cli("--data", gray, "--image-channels", 3, "--out", tmp_path / "rgb", *common) == 0
    assert run_cli("--data", colour, "--labels", labels, "--out", tmp_path / "c", *common) == 0
    channels = {
        name: FaderNetwork.from_pretrained(tmp_path / name).config.image_channels
        for name in ("gray", "rgb", "c")
    }
    assert channels == {"gray": 1, "rgb": 3, "c": 3}
    assert "Images have 1 channel(s)" in (tmp_path / "gray" / "train.log").read_text()


def test_a_gray_classifier_judges_and_starts_the_classifier_discriminator_of_a_gray_run(
    tmp_path: Path,
):
    """The channels a classifier reads are checked against the model's once the data has said
    them: a gray classifier fits a gray run as its judge and as --clf-dis-reload."""
    gray = make_class_folders(tmp_path / "daynight")
    cache, judge = tmp_path / "cache", tmp_path / "judge"
    judge_flags = ["--data", gray, "--image-size", 32, "--epochs", 1, "--no-flip", "--out", judge]
    judge_flags += ["--cache-dir", cache, "--workers", 1]
    assert classifier_main([str(flag) for flag in judge_flags]) == 0
    flags = ["--preset", "tiny", "--steps", 2, "--cache-dir", cache, "--workers", 1, "--no-flip"]
    flags += ["--classifier", judge, "--n-clf-dis", 1, "--lambda-clf-dis", 0.01]
    assert (
        run_cli("--data", gray, "--out", tmp_path / "run", *flags, "--clf-dis-reload", judge) == 0
    )
    assert FaderNetwork.from_pretrained(tmp_path / "run").config.image_channels == 1


def test_a_run_records_the_background_its_pictures_share(tmp_path: Path):
    """Light strokes on black (as MNIST's) make a "dark" model, which the app then knows to
    feed inverted photos of dark ink on paper; pictures of both kinds record none."""
    strokes = tmp_path / "strokes"
    for name, column in (("left", 4), ("right", 20)):
        (strokes / name).mkdir(parents=True)
        for i in range(12):
            pixels = np.zeros((32, 32), np.uint8)
            pixels[6 + i : 22 + i // 2, column : column + 6] = 250
            Image.fromarray(pixels).save(strokes / name / f"{i}.png")
    mixed = make_class_folders(tmp_path / "daynight")  # bright days and dark nights
    common = ["--preset", "tiny", "--steps", 2, "--cache-dir", tmp_path / "cache", "--workers", 1]
    assert run_cli("--data", strokes, "--out", tmp_path / "dark", *common) == 0
    assert run_cli("--data", mixed, "--out", tmp_path / "mixed", *common) == 0
    assert FaderNetwork.from_pretrained(tmp_path / "dark").config.background == "dark"
    assert FaderNetwork.from_pretrained(tmp_path / "mixed").config.background is None


def test_help_documents_every_setting(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    flags = (
        "--data --labels --attrs --out --preset --image-size --init-fm --n-layers --batch-size --lr"
    )
    flags += (
        " --lambda-dis --lambda-schedule --steps --eval-every --save-every --seed --device --resume"
    )
    flags += " --image-channels --select"
    for flag in flags.split():
        assert flag in text
    assert "paper" in text and "authors" in text and "tiny" in text


def test_presets_and_flags_combine(tmp_path: Path):
    args = parse_args(
        ["--out", str(tmp_path), "--preset", "authors", "--lr", "1e-3", "--n-layers", "5"]
    )
    model_settings, train_config = configs_from_args(args)
    assert model_settings == {"image_size": 256, "init_fm": 32, "max_fm": 512, "n_layers": 5}
    assert train_config.lr == 1e-3 and train_config.batch_size == 32 and train_config.beta1 == 0.5
    assert train_config.lambda_dis == 1e-4 and train_config.lambda_schedule == 500_000


def test_device_that_is_not_there_is_refused_clearly(celeba_dir: Path, tmp_path: Path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = ["--data", celeba_dir, "--attrs", "Male", "--preset", "tiny", "--device", "cuda"]
    assert run_cli(*args, "--out", tmp_path / "run", "--cache-dir", tmp_path / "c") == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.fixture(autouse=True)
def _restore_cwd():
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


def test_a_resumed_run_keeps_its_whole_model_config_and_refuses_a_new_architecture(
    tmp_path: Path, capsys
):
    data = make_class_folders(tmp_path / "daynight")
    out = tmp_path / "run"
    common = ["--cache-dir", tmp_path / "cache", "--workers", 1]
    assert run_cli("--data", data, "--preset", "tiny", "--steps", 3, "--out", out, *common) == 0
    before = FaderConfig(**json.loads((out / "config.json").read_text()))
    assert run_cli("--out", out, "--resume", "--image-size", 64, "--steps", 6) == 2
    assert "--image-size 64: a resumed run keeps its architecture" in capsys.readouterr().err
    assert run_cli("--out", out, "--resume", "--steps", 6, "--lr", 1e-3) == 0
    after = FaderConfig(**json.loads((out / "config.json").read_text()))
    unchanged = [f.name for f in fields(FaderConfig) if f.name not in {"training", "metrics"}]
    assert all(getattr(after, name) == getattr(before, name) for name in unchanged)
    recorded = set(TrainConfig().recorded())
    # the authors' options are recorded only when a run sets them (their own test below)
    authors_options = {"n_ptc_dis", "lambda_ptc_dis", "smooth_label", "n_clf_dis"}
    authors_options |= {"lambda_clf_dis", "lat_dis_step"}
    # how the run was watched; `select` is recorded as the kept model's `selected_by`
    not_recorded = {"log_every", "eval_every", "save_every", "eval_images", "device", "select"}
    assert recorded == set(asdict(TrainConfig())) - not_recorded - authors_options
    assert after.training.keys() == recorded | {
        "preset", "layout", "skipped_images", "train_images", "processes", "steps_done",
        "selected_by",
    }  # fmt: skip
    assert after.training["processes"] == 1
    assert after.training["lr"] == 1e-3 and after.training["steps_done"] == 6
    assert after.training["preset"] == "tiny" and after.training["layout"] == "folders"


BAD_FLAGS = [
    (["--batch-size", "0"], "--batch-size must be at least 1; got 0"),
    (["--save-every", "0"], "--save-every must be at least 1"),
    (["--eval-every", "0"], "--eval-every must be at least 1"),
    (["--eval-images", "0"], "--eval-images must be at least 1"),
    (["--init-fm", "0"], "--init-fm must be at least 1"),
    (["--max-fm", "-1"], "--max-fm must be at least 1"),
    (["--n-layers", "0"], "--n-layers must be at least 1"),
    (["--steps", "-5"], "--steps must be at least 1; got -5"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--image-size", "100"], "--image-size 100 must be a power of two of at least 2**n_layers"),
    (["--image-size", "0"], "--image-size 0 must be a power of two"),
    (["--image-size", "8"], "at least 2**n_layers = 16 (n_layers 4)"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--lr", "0"], "--lr must be a positive number"),
    (["--lr", "nan"], "--lr must be a positive number"),
    (["--lambda-dis", "-1"], "--lambda-dis must be at least 0"),
    (["--lambda-schedule", "-1"], "--lambda-schedule must be at least 0"),
    (["--device", "tpu"], "--device 'tpu' is not a device"),
    (["--push-every", "0"], "--push-every must be at least 1"),
    (["--select", "swap_accuracy"], "--select swap_accuracy needs --classifier"),
]


def assert_refused_before_any_work(tmp_path: Path, capsys, bad_flags: list) -> None:
    """Each (flags, message): exit 2 with that message, and nothing read, preprocessed or
    written: the run folder and the cache never appear."""
    data = make_class_folders(tmp_path / "daynight", per_class=3)
    out, cache = tmp_path / "run", tmp_path / "cache"
    common = ["--data", data, "--preset", "tiny", "--out", out, "--cache-dir", cache]
    for flags, message in bad_flags:
        assert run_cli(*common, *flags) == 2, flags
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (flags, err)
        assert not out.exists() and not cache.exists(), flags


def test_every_bad_flag_is_refused_with_a_message_before_any_work(tmp_path: Path, capsys):
    assert_refused_before_any_work(tmp_path, capsys, BAD_FLAGS)


def test_a_labels_csv_cannot_name_files_outside_the_data_folder(tmp_path: Path, capsys):
    folder, labels = make_labelled_folder(tmp_path / "photos", n=4)
    (tmp_path / "secret.png").write_bytes((folder / "photo_0.png").read_bytes())
    for outside in ["/etc/passwd", "../secret.png", "sub/../../secret.png"]:
        labels.write_text(f"file,Smiling\nphoto_0.png,1\n{outside},0\n")
        code = run_cli("--data", folder, "--labels", labels, "--out", tmp_path / "run")
        assert code == 2
        err = capsys.readouterr().err
        assert f"line 3: {outside!r} is not a path inside the data folder" in err
    assert not (tmp_path / "run").exists()
