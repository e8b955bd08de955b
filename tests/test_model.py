"""The networks as the paper describes them, and the files a model is saved as."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from fader.model import (
    FaderConfig,
    FaderNetwork,
    LatentDiscriminator,
    attribute_channels,
    attribute_loss,
    attribute_predictions,
    with_attribute_channels,
)
from train.config import PRESETS

TINY = PRESETS["tiny"]["model"]


def tiny_model(attributes: list[str] | None = None) -> FaderNetwork:
    torch.manual_seed(0)
    return FaderNetwork(FaderConfig(attributes=attributes or ["Smiling", "Male"], **TINY)).eval()


def test_paper_preset_is_c16_to_c512_with_a_512x2x2_latent():
    config = FaderConfig(attributes=["Smiling"], **PRESETS["paper"]["model"])
    assert config.encoder_channels == [16, 32, 64, 128, 256, 512, 512]
    z = FaderNetwork(config).encode(torch.zeros(2, 3, 256, 256))
    assert z.shape == (2, 512, 2, 2)


def test_authors_preset_has_six_layers_and_a_512x4x4_latent():
    config = FaderConfig(attributes=["Smiling"], **PRESETS["authors"]["model"])
    assert config.encoder_channels == [32, 64, 128, 256, 512, 512]
    assert config.latent_shape == (512, 4, 4)


def test_encoder_blocks_follow_the_paper():
    encoder = FaderNetwork(FaderConfig(attributes=["A"], **PRESETS["paper"]["model"])).encoder
    for i, block in enumerate(encoder.layers):
        conv = block[0]
        assert (conv.kernel_size, conv.stride, conv.padding) == ((4, 4), (2, 2), (1, 1))
        assert isinstance(block[1], nn.BatchNorm2d) == (i > 0), "BatchNorm on all but the first"
        assert isinstance(block[-1], nn.LeakyReLU) and block[-1].negative_slope == 0.2


def test_decoder_receives_attributes_at_every_layer():
    model = tiny_model(["Smiling", "Male", "Young"])
    channels = model.config.encoder_channels[::-1]
    deconvs = [block[0] for block in model.decoder.layers]
    assert len(deconvs) == model.config.n_layers
    for deconv, c in zip(deconvs, channels, strict=True):
        assert isinstance(deconv, nn.ConvTranspose2d)
        assert deconv.in_channels == c + 2 * 3
    assert isinstance(model.decoder.layers[-1][-1], nn.Tanh)


def test_every_decoder_layer_reacts_to_the_attributes():
    """Changing only y changes each layer's output, not just the first layer's input."""
    model = tiny_model()
    z = model.encode(torch.randn(1, 3, 32, 32))
    outputs: dict[float, list[torch.Tensor]] = {}
    for alpha in (0.0, 1.0):
        seen: list[torch.Tensor] = []
        hooks = [
            layer[0].register_forward_hook(lambda m, i, o, seen=seen: seen.append(i[0].clone()))
            for layer in model.decoder.layers
        ]
        model.decode(z, model.slider_channels({"Smiling": alpha}))
        for hook in hooks:
            hook.remove()
        outputs[alpha] = seen
    for before, after in zip(outputs[0.0], outputs[1.0], strict=True):
        y_slice = slice(before.shape[1] - 4, None)
        assert not torch.equal(before[:, y_slice], after[:, y_slice])


def test_changing_only_the_attributes_changes_the_image():
    model = tiny_model()
    with torch.no_grad():
        z = model.encode(torch.randn(1, 3, 32, 32))
        neutral = model.decode(z, model.slider_channels([0.0, 0.0]))
        smiling = model.decode(z, model.slider_channels([1.0, 0.0]))
        again = model.decode(z, model.slider_channels([0.0, 0.0]))
    assert torch.equal(neutral, again)
    assert (smiling - neutral).abs().mean() > 1e-4
    assert neutral.min() >= -1 and neutral.max() <= 1


def test_attribute_channels_are_one_minus_alpha_and_alpha_even_past_one():
    y = attribute_channels(torch.tensor([[0.25, 2.0]]))
    assert y.tolist() == [[0.75, 0.25, -1.0, 2.0]]


def test_slider_values_by_name_default_missing_ones_to_zero():
    model = tiny_model()
    assert model.slider_channels({"Male": 1.5}).tolist() == [[1.0, 0.0, -0.5, 1.5]]
    with pytest.raises(ValueError, match=r"Unknown attribute.*Beard"):
        model.slider_channels({"Beard": 1.0})
    with pytest.raises(ValueError, match="Expected 2 slider values"):
        model.slider_channels([1.0])


def test_latent_discriminator_reduces_z_to_one_softmax_pair_per_attribute():
    config = FaderConfig(attributes=["A", "B", "C"], **PRESETS["authors"]["model"])
    discriminator = LatentDiscriminator(config)
    assert len(discriminator.conv) == 2, "4×4 → 2×2 → 1×1"
    assert discriminator.conv[0][-1].p == 0.3
    logits = discriminator(torch.randn(4, *config.latent_shape))
    assert logits.shape == (4, 6)


def test_attribute_loss_sums_one_cross_entropy_per_attribute():
    logits = torch.tensor([[2.0, 0.0, 0.0, 1.0]])  # attribute 1 says 0, attribute 2 says 1
    targets = torch.tensor([[0.0, 0.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 1)) - math.log(1 / (1 + math.e))
    assert attribute_loss(logits, targets).item() == pytest.approx(expected, rel=1e-5)
    assert attribute_predictions(logits).tolist() == [[0, 1]]


def test_config_refuses_sizes_the_network_cannot_halve_down():
    with pytest.raises(ValueError, match=r"divisible by 2\*\*n_layers"):
        FaderConfig(attributes=["A"], image_size=100, n_layers=7)
    with pytest.raises(ValueError, match="at least one attribute"):
        FaderConfig(attributes=[])


def test_saved_model_loads_back_with_identical_outputs(tmp_path: Path):
    model = tiny_model()
    model.config.metrics["psnr"] = 21.5
    model.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    loaded = FaderNetwork.from_pretrained(tmp_path)
    assert not loaded.training
    assert loaded.config == model.config
    x = torch.randn(2, 3, 32, 32)
    y = model.slider_channels([1.0, 0.0], batch_size=2)
    with torch.no_grad():
        assert torch.equal(loaded(x, y), model(x, y))


def test_a_pickle_is_never_loaded_as_weights(tmp_path: Path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"no model\.safetensors"):
        FaderNetwork.from_pretrained(tmp_path)


def test_unknown_repo_offline_gives_a_clear_message():
    with pytest.raises(ValueError, match="neither a local folder nor in the Hugging Face cache"):
        FaderNetwork.from_pretrained("nobody/not-a-cached-fader-model")


def test_a_missing_folder_is_not_mistaken_for_a_repo_id(tmp_path: Path):
    with pytest.raises(ValueError, match="not a model folder here, nor a Hub repo id"):
        FaderNetwork.from_pretrained(tmp_path / "no" / "such" / "model")


def test_a_folder_that_is_not_a_fader_model_is_named_as_such(tmp_path: Path):
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    with pytest.raises(ValueError, match="not a Fader model"):
        FaderNetwork.from_pretrained(tmp_path)


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_attribute_channels_keep_the_feature_maps_memory_layout(layout: torch.memory_format):
    """A channels-last decoder must stay channels-last, or each layer pays two layout copies."""
    h = torch.randn(2, 5, 4, 4).contiguous(memory_format=layout)
    y = attribute_channels(torch.tensor([[0.2, 1.5], [0.0, -1.0]]))
    joined = with_attribute_channels(h, y)
    assert joined.is_contiguous(memory_format=layout)
    assert torch.equal(joined[:, :5], h)
    assert torch.equal(joined[:, 5:], y[:, :, None, None].expand(-1, -1, 4, 4))
