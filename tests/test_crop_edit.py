"""One crop edit for every surface: the editor (the app, `python -m fader.edit` photos), the
video editor and the webcam stream edit a crop alike, for an attribute with several values and
for a grayscale model whose edits stay gray."""

from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from fader.attributes import neutral_values, with_values
from fader.edit import main as edit_main
from fader.editor import Editor
from fader.library import ModelLibrary
from fader.model import FaderConfig, FaderNetwork
from fader.pixels import to_images, to_pixels
from fader.stream import FaceStream
from fader.video import FrameEditor, edit_video

DIGIT = ["zero", "one", "two"]
EDIT = {"Digit": {"zero": 0.0, "one": 0.0, "two": 1.0}}


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random grayscale model with one three-valued attribute and a binary one."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    config = FaderConfig(
        attributes=["Digit", "Bold"],
        categories={"Digit": DIGIT},
        image_size=32,
        image_channels=1,
        init_fm=8,
        max_fm=32,
        n_layers=3,
        preprocessing="center",
    )
    FaderNetwork(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gray 48×40 picture: off-square, so the paste keeps a margin."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("photo") / "digit.png"
    Image.fromarray(rng.integers(0, 256, (40, 48), dtype=np.uint8)).convert("RGB").save(path)
    return path


def test_the_editor_the_cli_the_video_and_the_stream_edit_a_crop_alike(
    model_folder: Path, photo: Path, tmp_path: Path
):
    library = ModelLibrary([str(model_folder)])
    editor = library.editor(str(model_folder))
    photo_id = editor.load(photo)
    start = editor.photo(photo_id).slider_start
    assert start["Digit"] == {"zero": 1.0, "one": 0.0, "two": 0.0}, "a group starts on a value"
    edited = editor.edit(photo_id, start | EDIT, full_resolution=True, detail=0.5).photo
    unchanged = editor.edit(photo_id, start, full_resolution=True, detail=0.5).photo
    assert edited.mode == "L" and edited.size == (48, 40), "a grayscale model's edit is gray"
    assert not np.array_equal(np.asarray(edited), np.asarray(unchanged)), "the edit changes it"

    # python -m fader.edit on the photo: a value of the group chosen by name
    out = tmp_path / "cli"
    args = [str(photo), "--model", str(model_folder), "--set", "Digit=two", "--detail", "0.5"]
    assert edit_main([*args, "--out", str(out)]) == 0
    assert np.array_equal(np.asarray(Image.open(out / "digit.png")), np.asarray(edited))

    # the webcam stream on the same picture as a frame (its y₀: the neutral start, as here)
    frame = np.asarray(Image.open(photo).convert("RGB"))
    streamed = FaceStream(editor.model).edit(frame, start | EDIT, detail=0.5).image
    assert np.array_equal(streamed[..., 0], np.asarray(edited))

    # a video of that picture, edited frame by frame by the video editor
    clip, result = tmp_path / "clip.mp4", tmp_path / "edited.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=5, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 48, 40, "yuv444p"
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    frames = FrameEditor(editor.model, EDIT, detail=0.5)
    assert edit_video(clip, result, frames).frames == 3
    with av.open(str(result)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    # H.264 in 4:2:0 and back: within a few levels of the photo's edit
    assert np.abs(first[..., 0].astype(int) - np.asarray(edited).astype(int)).mean() < 4


def test_the_cli_names_the_values_of_a_group_when_one_is_wrong(
    model_folder: Path, photo: Path, tmp_path: Path, capsys
):
    args = [str(photo), "--model", str(model_folder), "--set", "Digit=seven"]
    assert edit_main([*args, "--out", str(tmp_path)]) == 2
    assert "Digit is one of zero, one, two" in capsys.readouterr().err


def test_a_photo_named_after_set_is_edited_not_taken_for_a_value(
    model_folder: Path, photo: Path, tmp_path: Path
):
    args = ["--model", str(model_folder), "--set", "Bold=1", str(photo)]
    assert edit_main([*args, "--out", str(tmp_path)]) == 0
    assert (tmp_path / "digit.png").is_file()


def test_a_photo_with_the_other_background_is_edited_inverted_and_shown_inverted_back(
    model_folder: Path, tmp_path: Path
):
    """A model of light digits on black given a dark digit on paper: the editor edits the
    photo inverted (as the model saw its digits) and inverts every result back."""
    paper = np.full((40, 40), 235, np.uint8)
    paper[10:30, 17:23] = 20  # a dark stroke on white
    photo = Image.fromarray(paper).convert("RGB")
    model = FaderNetwork.from_pretrained(model_folder)
    on_black = Editor(FaderNetwork(replace(model.config, background="dark")))
    on_black.model.load_state_dict(model.state_dict())
    any_ground = Editor(model)
    photo_id = on_black.load(photo)
    assert "dark background" in on_black.photo(photo_id).note
    inverted_id = any_ground.load(ImageOps.invert(photo))
    edited = on_black.edit(photo_id, EDIT, full_resolution=True).photo
    expected = any_ground.edit(inverted_id, EDIT, full_resolution=True).photo
    assert np.array_equal(np.asarray(edited), 255 - np.asarray(expected))
    night = on_black.load(ImageOps.invert(photo))  # already light on dark: left as it is
    assert not on_black.photo(night).inverted and on_black.photo(night).note == ""


def test_a_value_of_a_group_is_set_by_its_own_name_as_on_a_model_of_binary_attributes(
    model_folder: Path, photo: Path, tmp_path: Path
):
    """`--set two=1 zero=0` works for the Digit group as it did for ten binary digits, and
    edits as `--set Digit=two` does (the start is zero on, the others off)."""
    common = [str(photo), "--model", str(model_folder), "--detail", "0"]
    assert edit_main([*common, "--set", "two=1", "zero=0", "--out", str(tmp_path / "a")]) == 0
    assert edit_main([*common, "--set", "Digit=two", "--out", str(tmp_path / "b")]) == 0
    by_value, by_group = (np.asarray(Image.open(tmp_path / f / "digit.png")) for f in "ab")
    assert np.array_equal(by_value, by_group)
    config = FaderNetwork.from_pretrained(model_folder).config
    start = neutral_values(config)
    assert with_values(config, start, {"one": 0.5})["Digit"] == {"zero": 1, "one": 0.5, "two": 0}
    with pytest.raises(ValueError, match="no 'seven'; it has Digit, Bold, zero, one, two"):
        with_values(config, start, {"seven": 1})


def test_a_decoders_output_becomes_the_levels_training_reads_it_as():
    """`to_images` (every edit's crops) makes `to_pixels`'s levels in OpenCV, not torch:
    the same rounding to the nearest even level at each half, the same saturation past −1 and
    1, channels-last or not, and a gray model's crop as three equal channels."""
    halves = (torch.arange(256) + 0.5) / 127.5 - 1  # between two levels, and a float either side
    beside = [torch.nextafter(halves, torch.tensor(end)) for end in (-2.0, 2.0)]
    batch = torch.rand(2, 3, 64, 64) * 2.4 - 1.2  # past both ends too
    batch[:, :, :12, :] = torch.cat([halves, *beside]).view(12, 64)  # each channel's first rows
    for layout in (torch.contiguous_format, torch.channels_last):
        images = to_images(batch.contiguous(memory_format=layout))
        expected = to_pixels(batch).permute(0, 2, 3, 1).numpy()
        assert np.array_equal(np.stack([np.asarray(image) for image in images]), expected)
    (gray,) = to_images(batch[:1, :1])
    assert gray.mode == "RGB"
    assert np.array_equal(np.asarray(gray), to_pixels(batch[0, 0])[..., None].expand(-1, -1, 3))
