"""The authors' trainer options, each on the real digits (mnist5k): image-space critics, decoder
dropout, attributes with more than two values, and their latent-discriminator step."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from fader.classifier import Classifier
from fader.model import FaderConfig, FaderNetwork, LatentDiscriminator, attribute_channels
from fader.pixels import to_model_range
from tests.builders import make_class_folders
from tests.test_training import assert_refused_before_any_work
from train.__main__ import main, parse_args
from train.classifier import main as classifier_main
from train.config import TrainConfig
from train.critics import (
    CLASSIFIER,
    PATCH,
    ImageCritics,
    PatchDiscriminator,
    classifier_columns,
    classifier_config,
)
from train.data import BatchStream, PreparedData, prepare
from train.mnist import MNIST5K
from train.sources import TRAIN, open_source
from train.step import adam, training_layout, training_step

# The bundled digits model's settings (assets/models/digits), at a smaller width for speed.
DIGITS = {"image_size": 32, "init_fm": 16, "max_fm": 128, "n_layers": 4}
DIGIT_FLAGS = [
    "--preset", "tiny", "--init-fm", 16, "--max-fm", 128, "--batch-size", 32, "--lr", 1e-3,
    "--lambda-dis", 0.003, "--no-flip", "--workers", 1,
]  # fmt: skip


def run_cli(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def digits(cache: Path) -> PreparedData:
    """The 5,000 digits at 32×32, labelled zero … nine."""
    return prepare(open_source(Path(MNIST5K), cache_dir=cache), 32, cache, workers=1)


def digit_batches(data: PreparedData, attributes: list[str], size: int = 32) -> BatchStream:
    columns = data.attribute_columns(attributes)
    return BatchStream(data, data.indices(TRAIN), columns, size, seed=0, flip=False)


def networks(config: FaderConfig) -> tuple[FaderNetwork, LatentDiscriminator, dict]:
    torch.manual_seed(0)
    model = training_layout(FaderNetwork(config)).train()
    discriminator = training_layout(LatentDiscriminator(config))
    optimizers = {
        "autoencoder": adam(model, TrainConfig(lr=1e-3)),
        "discriminator": adam(discriminator, TrainConfig(lr=1e-3)),
    }
    return model, discriminator, optimizers


def critics_for(config: FaderConfig, optimizers: dict, patch: bool, classifier: bool):
    nets = {
        PATCH: PatchDiscriminator(config) if patch else None,
        CLASSIFIER: Classifier(classifier_config(config)) if classifier else None,
    }
    for name, net in nets.items():
        if net is not None:
            optimizers[name] = adam(net, TrainConfig(lr=1e-3))
    clf = nets[CLASSIFIER]
    return ImageCritics(
        patch=nets[PATCH],
        classifier=clf,
        columns=classifier_columns(clf.config.attributes, config) if clf else [],
        updates={PATCH: int(patch), CLASSIFIER: int(classifier)},
        weights={PATCH: 0.01, CLASSIFIER: 0.01},
        smooth_label=0.2,
    )


def test_the_patch_discriminator_learns_to_tell_digits_from_decoded_ones(digits: PreparedData):
    """It trains alone (the autoencoder untouched): its loss falls well below its start."""
    config = FaderConfig(attributes=["zero", "one"], **DIGITS)
    model, _, optimizers = networks(config)
    critics = critics_for(config, optimizers, patch=True, classifier=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stream = digit_batches(digits, config.attributes)
    losses = []
    for step in range(40):
        images, labels = stream.batch(step)
        x = to_model_range(images.contiguous(memory_format=torch.channels_last))
        lost = critics.train(model, x, labels, optimizers, 5.0, torch.enable_grad)
        losses.append(lost[PATCH].item())
    # Smoothed targets (0.8 / 0.2) keep the loss above 2·H(0.2) ≈ 1.0 even when it is perfect.
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1, losses
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_classifier_discriminator_trains_the_decoder_only(digits: PreparedData):
    config = FaderConfig(attributes=["zero", "one", "two"], **DIGITS)
    model, _, optimizers = networks(config)
    critics = critics_for(config, optimizers, patch=False, classifier=True)
    images, labels = digit_batches(digits, config.attributes).batch(0)
    z = model.encode(to_model_range(images))
    loss, terms = critics.decoder_loss(model, z, labels, ramp=1.0)
    assert terms[f"{CLASSIFIER}_decoder"].item() > 0
    loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters()), "the encoder gets none"
    assert all(p.grad is None for p in critics.classifier.parameters()), "nor the critic"
    assert all(p.grad.abs().sum() > 0 for p in model.decoder.parameters())


def test_the_classifier_discriminator_learns_the_digits_on_real_images(digits: PreparedData):
    config = FaderConfig(["Digit"], categories={"Digit": ["zero", "one", "two"]}, **DIGITS)
    model, _, optimizers = networks(config)
    critics = critics_for(config, optimizers, patch=False, classifier=True)
    data, _ = digits.for_model(config.attributes, config.categories)
    stream = digit_batches(data, config.attributes)
    losses = []
    for step in range(30):
        images, labels = stream.batch(step)
        lost = critics.train(
            model, to_model_range(images), labels, optimizers, 5.0, torch.enable_grad
        )
        losses.append(lost[CLASSIFIER].item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


def authors_lat_dis_loss(
    model: FaderNetwork, discriminator: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """src/training.py `lat_dis_step`, written out: ae.eval(), encode, lat_dis.train(), then
    `get_attr_loss(preds, y, False)`: a cross-entropy per attribute (its n_cat logits), summed."""
    model.eval()
    with torch.no_grad():
        z = model.encode(images.float() / 255 * 2 - 1)
    model.train()
    discriminator.train()
    preds = discriminator(z)
    loss, k = 0.0, 0
    for i, n_cat in enumerate(model.config.attribute_sizes):
        loss = loss + F.cross_entropy(preds[:, k : k + n_cat], labels[:, i].long())
        k += n_cat
    return loss


@pytest.mark.parametrize("categories", [{}, {"Digit": ["zero", "one", "two"]}])
def test_the_authors_discriminator_step_reproduces_their_loss(
    digits: PreparedData, categories: dict
):
    attributes = list(categories) or ["zero", "one"]
    config = FaderConfig(attributes=attributes, categories=categories, **DIGITS)
    data, _ = digits.for_model(config.attributes, config.categories)
    stream = digit_batches(data, config.attributes)
    model, discriminator, optimizers = networks(config)
    for step in range(5):  # BatchNorm's running statistics move away from their start
        training_step(model, discriminator, optimizers, *stream.batch(step), 0.01, 5.0)
    images, labels = stream.batch(10)
    other = stream.batch(11)
    torch.manual_seed(3)  # the discriminator's dropout, drawn alike in both
    expected = authors_lat_dis_loss(model, discriminator, *other).item()
    torch.manual_seed(3)
    losses = training_step(
        model, discriminator, optimizers, images, labels, 0.01, 5.0, discriminator_batch=other
    )
    assert losses["discriminator"].item() == pytest.approx(expected, rel=1e-5)
    assert model.training, "the autoencoder is back in train mode for its own update"


def test_decoder_dropout_sits_on_the_three_innermost_layers_after_batch_norm():
    config = FaderConfig(attributes=["A"], decoder_dropout=0.3, **{**DIGITS, "n_layers": 5})
    layers = FaderNetwork(config).decoder.layers
    kinds = [[type(m).__name__ for m in layer] for layer in layers]
    assert kinds[:3] == [["UpConv", "BatchNorm2d", "Dropout", "ReLU"]] * 3
    assert kinds[3:] == [["UpConv", "BatchNorm2d", "ReLU"], ["UpConv", "Tanh"]]
    plain = FaderNetwork(FaderConfig(attributes=["A"], **{**DIGITS, "n_layers": 5}))
    assert plain.state_dict().keys() == FaderNetwork(config).state_dict().keys()


def test_an_attribute_with_several_values_is_one_softmax_and_a_slider_group():
    config = FaderConfig(
        attributes=["Smiling", "Hair"],
        categories={"Hair": ["Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"]},
        **DIGITS,
    )
    assert config.attribute_sizes == [2, 4]
    assert (
        config.categories_of("Hair")[1] == "Blond_Hair" and config.categories_of("Smiling") is None
    )
    model = FaderNetwork(config)
    assert model.decoder.layers[0][0].in_channels == config.encoder_channels[-1] + 6
    assert LatentDiscriminator(config).proj[-1].out_features == 6
    channels = model.slider_channels({"Smiling": 0.25, "Hair": {"Blond_Hair": 1.0}})
    assert channels.tolist() == [[0.75, 0.25, 0.0, 1.0, 0.0, 0.0]]
    assert model.slider_channels([1.0, [0.0, 0.5, 0.5, 0.0]]).tolist() == [
        [0.0, 1.0, 0.0, 0.5, 0.5, 0.0]
    ]
    assert model.slider_channels({}).tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="Hair has no value"):
        model.slider_channels({"Hair": {"Red_Hair": 1.0}})
    with pytest.raises(ValueError, match="one value per category"):
        model.slider_channels({"Hair": 1.0})
    with pytest.raises(ValueError, match="three or more distinct values"):
        FaderConfig(attributes=["Hair"], categories={"Hair": ["Black_Hair", "Blond_Hair"]})


def test_a_config_written_before_these_options_loads_as_binary_attributes_without_dropout(
    tmp_path: Path,
):
    model = FaderNetwork(FaderConfig(attributes=["Smiling", "Male"], **DIGITS))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    for key in ("categories", "decoder_dropout"):
        saved.pop(key)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = FaderNetwork.from_pretrained(tmp_path)
    assert loaded.config.attribute_sizes == [2, 2] and loaded.config.decoder_dropout == 0
    y = model.slider_channels({"Smiling": 0.3})
    assert torch.equal(y, attribute_channels(torch.tensor([[0.3, 0.0]])))


def test_a_three_valued_digit_trains_and_its_swaps_are_measured(cache: Path, tmp_path: Path):
    """Digit = zero, one or two: one 3-way softmax, judged by a classifier of those digits."""
    clf = tmp_path / "clf"
    assert classifier_main(
        [str(a) for a in ("--data", MNIST5K, "--attrs", "zero", "one", "two", "--image-size", 32,
                          "--epochs", 2, "--no-flip", "--out", clf, "--cache-dir", cache,
                          "--workers", 1)]
    ) == 0  # fmt: skip
    out = tmp_path / "run"
    code = run_cli(
        "--data", MNIST5K, "--attrs", "Digit=zero,one,two", *DIGIT_FLAGS, "--steps", 200,
        "--lambda-schedule", 100, "--eval-every", 200, "--classifier", clf, "--out", out,
        "--cache-dir", cache,
    )  # fmt: skip
    assert code == 0
    log = (out / "train.log").read_text()
    assert "3500 of 5000 images have none or several of the values of Digit" in log
    model = FaderNetwork.from_pretrained(out)
    assert model.config.categories == {"Digit": ["zero", "one", "two"]}
    assert model.config.training["train_images"] < 1500
    metrics = model.config.metrics
    assert {f"swap_accuracy/Digit={d}" for d in ("zero", "one", "two")} <= metrics.keys()
    # A reading at random hits a real swap's target a third of the time, and a decoder that
    # ignores y (keeping the image's own digit) almost never.
    assert metrics["swap_accuracy"] > 0.45, metrics
    assert metrics["classifier_accuracy"] > 0.8
    card = (out / "README.md").read_text()
    assert "`Digit`: one of `zero`, `one`, `two` (a slider group)" in card
    assert '"Digit": {"one": 1.0}' in card


def test_the_authors_options_resume_exactly_and_stay_out_of_the_model(tmp_path: Path):
    data = make_class_folders(tmp_path / "daynight")
    options = [
        "--n-ptc-dis", 1, "--lambda-ptc-dis", 0.01, "--n-clf-dis", 1, "--lambda-clf-dis", 0.01,
        "--lat-dis-step", "authors", "--dec-dropout", 0.3, "--smooth-label", 0.1,
    ]  # fmt: skip
    common = ["--data", data, "--preset", "tiny", "--cache-dir", tmp_path / "c", "--workers", 1]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_cli(*common, *options, "--steps", 8, "--out", straight) == 0
    assert run_cli(*common, *options, "--steps", 4, "--out", split) == 0
    assert run_cli("--out", split, "--resume", "--steps", 8) == 0
    a, b = (
        load_file(str(straight / "checkpoint.safetensors")),
        load_file(str(split / "checkpoint.safetensors")),
    )
    assert a.keys() == b.keys()
    assert any(k.startswith(f"{PATCH}.") for k in a) and any(
        k.startswith(f"{CLASSIFIER}.") for k in a
    )
    assert all(torch.equal(a[k], b[k]) for k in a), "exact resume"
    weights = load_file(str(straight / "model.safetensors"))
    assert not any("discriminator" in k for k in weights)
    config = FaderNetwork.from_pretrained(straight).config
    assert config.decoder_dropout == 0.3
    assert config.training["lat_dis_step"] == "authors" and config.training["smooth_label"] == 0.1
    assert config.training["n_ptc_dis"] == 1 and config.training["lambda_clf_dis"] == 0.01


BAD_FLAGS = [
    (["--n-ptc-dis", "1"], "--n-ptc-dis and --lambda-ptc-dis go together"),
    (["--lambda-clf-dis", "0.1"], "--n-clf-dis and --lambda-clf-dis go together"),
    (["--smooth-label", "0.5"], "--smooth-label must be in [0, 0.5)"),
    (["--dec-dropout", "1"], "decoder_dropout must be in [0, 1)"),
    (["--clf-dis-reload", "x"], "--clf-dis-reload needs --n-clf-dis"),
    (["--attrs", "D=day,night"], "three or more of the dataset's attributes"),
    (["--attrs", "Sky=day,night,dusk"], "Unknown attribute(s) dusk"),
    (["--attrs", "day=day,night,dusk"], "day is already one of the dataset's attributes"),
]


def test_bad_authors_options_are_refused_before_any_work(tmp_path: Path, capsys):
    assert_refused_before_any_work(tmp_path, capsys, BAD_FLAGS)


def test_help_documents_the_authors_options(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in [
        "--n-ptc-dis",
        "--lambda-ptc-dis",
        "--smooth-label",
        "--n-clf-dis",
        "--lambda-clf-dis",
        "--clf-dis-reload",
        "--dec-dropout",
        "--lat-dis-step",
    ]:
        assert flag in text, flag
    assert "Hair=Black_Hair,Blond_Hair,Brown_Hair,Gray_Hair" in text and "no CUDA graph" in text
