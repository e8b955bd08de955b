"""`python -m fader.edit` on real photos, folders and a clip made here, with the digits model and a
small face model; the video's landmarks smoothed over time."""

import itertools
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data

from fader.attributes import with_values
from fader.classifier import Classifier
from fader.edit import main
from fader.library import BUNDLED_MODELS, ModelLibrary
from fader.photo import centre_square
from fader.pixels import to_tensor
from fader.video import smooth_landmarks
from tests.builders import save_model

DIGITS = Path(__file__).resolve().parents[1] / "assets" / "examples" / "digits"
FPS, SIZE, FACE_FRAMES, BLANK_FRAMES = 12, (320, 240), 20, 4
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ONLY_THREE = [f"{name}={int(name == 'three')}" for name in DIGIT_NAMES]  # the others start read


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def digits_read(path: Path) -> str:
    """What the digits model's own classifier reads in the centre square of an image."""
    classifier = Classifier.from_folder(BUNDLED_MODELS / "digits")
    crop = centre_square(Image.open(path).convert("RGB"), 32)
    crop = crop.convert("L") if classifier.config.image_channels == 1 else crop
    with torch.inference_mode():
        scores = classifier.read(to_tensor(crop))[0]
    return classifier.config.attributes[int(scores.argmax())]


def test_photos_and_folders_are_edited_and_unreadable_files_named(tmp_path, capsys):
    photos = tmp_path / "photos"
    shutil.copytree(DIGITS, photos)
    (photos / "notes.png").write_text("not an image")
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    out = tmp_path / "out"
    code = main([str(photos), "--model", "digits", "--set", *ONLY_THREE, "--out", str(out)])
    assert code == 0
    originals = sorted(p.name for p in DIGITS.glob("*.png"))
    assert sorted(p.name for p in out.iterdir()) == originals, "one PNG per photo, nothing else"
    assert all(digits_read(out / name) == "three" for name in originals), "every digit became 3"
    assert digits_read(photos / "seven.png") == "seven", "the inputs are untouched"
    err = capsys.readouterr().err
    assert f"Edited 5 of 8 files into {out}." in err
    assert "Skipped 3:" in err and "notes.png" in err and "empty.jpg" in err
    assert "broken.mp4: broken.mp4 is not a video we can read" in err
    assert "Traceback" not in err


def test_the_photo_written_is_the_apps_full_resolution_edit(tmp_path):
    photo = tmp_path / "wide.png"
    Image.open(DIGITS / "two.png").convert("RGB").resize((90, 60)).save(photo)
    assert main([str(photo), "--model", "digits", "--set", "Five=1.5", "--out", str(tmp_path)]) == 0
    editor = ModelLibrary(["digits"]).editor("digits")  # with its classifier, as the CLI
    photo_id = editor.load(photo)
    start = editor.photo(photo_id).slider_start
    values = with_values(editor.model.config, start, {"five": 1.5})
    expected = editor.edit(photo_id, values, full_resolution=True).photo
    written = Image.open(tmp_path / "wide-2.png")
    assert (tmp_path / "wide.png").read_bytes() == photo.read_bytes(), "never over an input"
    assert written.size == (90, 60)
    assert np.array_equal(np.asarray(written), np.asarray(expected))


def test_a_sweep_writes_the_strip_from_the_models_range(tmp_path):
    out = tmp_path / "out"
    args = [str(DIGITS / "eight.png"), "--model", "digits", "--sweep", "one", "--steps", "4"]
    assert main([*args, "--out", str(out)]) == 0
    strip = Image.open(out / "eight-sweep-one.png")
    assert strip.size == (4 * 32, 32)
    editor = ModelLibrary(["digits"]).editor("digits")
    photo_id = editor.load(DIGITS / "eight.png")
    low, high = editor.model.config.slider_range
    start = editor.photo(photo_id).slider_start
    first = editor.edit(photo_id, with_values(editor.model.config, start, {"one": low})).crop
    last = editor.edit(photo_id, with_values(editor.model.config, start, {"one": high})).crop
    for tile, expected in (
        (strip.crop((0, 0, 32, 32)), first),
        (strip.crop((96, 0, 128, 32)), last),
    ):
        assert np.abs(np.asarray(tile, int) - np.asarray(expected, int)).max() <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "Smiling=1"], "has no 'Smiling'"),
        (["--set", "three"], "write ATTRIBUTE=VALUE"),
        (["--set", "three=nan"], "finite number"),
        (["--sweep", "eleven"], "--sweep eleven: the model has no 'eleven'"),
        (["--sweep", "digit"], "--sweep digit: sweep one value of Digit (zero, one,"),
        (["--model", "no/such-model-here"], "no/such-model-here"),
    ],
)
def test_bad_input_is_an_error_line_with_exit_code_2_and_writes_nothing(
    tmp_path, capsys, args, message
):
    out = tmp_path / "out"
    model = [] if "--model" in args else ["--model", "digits"]
    code = main([str(DIGITS / "two.png"), *model, *args, "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not out.exists()


def test_a_missing_path_and_all_files_skipped_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "missing.jpg"), "--model", "digits", "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.png").write_text("no")
    assert main([str(tmp_path / "bad.png"), "--model", "digits", "--out", str(tmp_path / "o")]) == 2
    assert "Edited 0 of 1 files" in capsys.readouterr().err


# ---- Faces and videos ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_model(tmp_path_factory.mktemp("model") / "face", "celeba", ["Smiling", "Male"])


def astronaut_frame(i: int) -> Image.Image:
    """The astronaut's face moving and turning a little, as a hand-held camera sees it."""
    photo = Image.fromarray(skimage_data.astronaut())
    angle, dx, dy = 8 * np.sin(i / 4), 3 * i - 30, round(10 * np.sin(i / 5))
    turned = photo.rotate(angle, resample=Image.Resampling.BICUBIC, center=(240, 130))
    return turned.crop((80 + dx, 10 + dy, 80 + dx + SIZE[0], 10 + dy + SIZE[1]))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 frames of the astronaut, then 4 of a blank wall, at 12 frames/s, with 2 s of a tone."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    with av.open(str(path), "w") as output:
        video = output.add_stream("libx264", rate=FPS, options={"crf": "10"})
        video.width, video.height, video.pix_fmt = *SIZE, "yuv420p"
        audio = output.add_stream("aac", rate=16000, layout="mono")
        frames = [astronaut_frame(i) for i in range(FACE_FRAMES)]
        frames += [Image.new("RGB", SIZE, (120, 110, 100))] * BLANK_FRAMES
        for frame in frames:
            output.mux(video.encode(av.VideoFrame.from_image(frame)))
        output.mux(video.encode(None))
        tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)
        sound = av.AudioFrame.from_ndarray(
            tone.astype(np.float32)[None], format="fltp", layout="mono"
        )
        sound.sample_rate = 16000
        output.mux(audio.encode(sound))
        output.mux(audio.encode(None))
    return path


def read_video(path: Path) -> tuple[dict, list[np.ndarray]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        audio = container.streams.audio
        info = {
            "fps": stream.average_rate,
            "size": (stream.codec_context.width, stream.codec_context.height),
            "audio_s": float(audio[0].duration * audio[0].time_base) if audio else 0.0,
        }
        frames = [f.to_ndarray(format="rgb24").astype(np.float32) for f in container.decode(stream)]
    return info, frames


def test_every_frame_of_a_video_is_edited_keeping_rate_size_and_sound(
    clip, face_model, tmp_path, capsys
):
    out = tmp_path / "out"
    args = [str(clip), "--model", face_model, "--set", "Smiling=2", "--aligner", "dlib"]
    assert main([*args, "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]
    source_info, source = read_video(clip)
    edited_info, edited = read_video(out / "clip.mp4")
    assert edited_info["fps"] == FPS and edited_info["size"] == SIZE
    assert len(edited) == len(source) == FACE_FRAMES + BLANK_FRAMES
    assert source_info["audio_s"] > 1.9
    assert edited_info["audio_s"] == pytest.approx(source_info["audio_s"], abs=0.05)
    centre = (slice(60, 180), slice(100, 220))  # where the face is in every frame
    changes = [np.abs(a - b)[centre].mean() for a, b in zip(source, edited, strict=True)]
    assert min(changes[:FACE_FRAMES]) > 10, "a random face model repaints every face"
    assert max(changes[FACE_FRAMES:]) < 2, "frames without a face pass through"
    assert "Edited 1 of 1 files" in capsys.readouterr().err


def test_digits_videos_edit_the_centre_square_of_every_frame(tmp_path):
    clip = tmp_path / "digits.mp4"
    with av.open(str(clip), "w") as output:
        video = output.add_stream("libx264", rate=8, options={"crf": "10"})
        video.width, video.height, video.pix_fmt = 96, 64, "yuv420p"
        seven = Image.open(DIGITS / "seven.png").convert("RGB").resize((64, 64))
        for _ in range(6):
            frame = Image.new("RGB", (96, 64))
            frame.paste(seven, (16, 0))
            output.mux(video.encode(av.VideoFrame.from_image(frame)))
        output.mux(video.encode(None))
    out = tmp_path / "out"
    args = [str(clip), "--model", "digits", "--set", *ONLY_THREE, "--out", str(out)]
    assert main(args) == 0
    info, frames = read_video(out / "digits.mp4")
    assert info["size"] == (96, 64) and len(frames) == 6 and info["audio_s"] == 0
    for i, frame in enumerate(frames):
        Image.fromarray(frame.astype(np.uint8)).save(tmp_path / f"frame{i}.png")
        assert digits_read(tmp_path / f"frame{i}.png") == "three"


def test_landmarks_are_smoothed_within_each_run_of_frames_with_a_face():
    rng = np.random.default_rng(0)
    steady = rng.uniform(50, 150, (68, 2))
    noisy = [steady + rng.normal(0, 2, (68, 2)) for _ in range(30)]
    track = [*noisy[:15], None, None, *noisy[15:]]
    smoothed = smooth_landmarks(track)
    assert smoothed[15] is None and smoothed[16] is None
    faces = [s for s in smoothed if s is not None]

    def jitter(seq: list[np.ndarray]) -> float:
        return float(np.mean([np.abs(b - a).mean() for a, b in itertools.pairwise(seq)]))

    assert jitter(faces[:15]) < jitter(noisy[:15]) / 3
    assert np.abs(np.mean(faces, axis=0) - steady).mean() < 0.5, "no drift, only less noise"
    moving = [steady + np.array([t, 0]) for t in range(20)]  # a face moving at constant speed
    inner = smooth_landmarks(moving)[6:14]  # frames with the whole window inside the run
    assert all(np.allclose(a, b) for a, b in zip(inner, moving[6:14], strict=True)), "followed"


def test_detail_one_at_the_start_gives_the_photo_back_and_zero_the_models_output(tmp_path):
    photo = tmp_path / "two.png"
    Image.open(DIGITS / "two.png").convert("RGB").save(photo)
    for detail in ("1", "0"):
        out = tmp_path / f"detail-{detail}"
        assert main([str(photo), "--model", "digits", "--detail", detail, "--out", str(out)]) == 0
    kept = np.asarray(Image.open(tmp_path / "detail-1" / "two.png"), dtype=float)
    rebuilt = np.asarray(Image.open(tmp_path / "detail-0" / "two.png"), dtype=float)
    original = np.asarray(Image.open(photo).convert("L"), dtype=float)  # a gray model's edit
    assert np.abs(kept - original).mean() < 1, "no slider moved and all detail kept: the photo"
    assert np.abs(rebuilt - original).mean() > 5, "the model's own reconstruction is blurrier"


def test_faces_largest_edits_one_face_of_a_group_photo_and_all_edits_both(tmp_path):
    from tests.group_photo import group_photo

    photo = tmp_path / "group.png"
    group_photo().save(photo)
    model = save_model(tmp_path / "face", "celeba", ["Smiling", "Male"])
    base = [
        str(photo),
        "--model",
        model,
        "--aligner",
        "dlib",
        "--set",
        "Smiling=2",
        "--detail",
        "0",
    ]
    assert main([*base, "--faces", "all", "--out", str(tmp_path / "all")]) == 0
    assert main([*base, "--faces", "largest", "--out", str(tmp_path / "largest")]) == 0
    original = np.asarray(Image.open(photo), dtype=float)
    changed = [
        np.abs(np.asarray(Image.open(tmp_path / kind / "group.png"), dtype=float) - original)
        .mean(2)
        .astype(bool)
        for kind in ("all", "largest")
    ]
    halves = [lambda m: m[:, : m.shape[1] // 2].sum(), lambda m: m[:, m.shape[1] // 2 :].sum()]
    everywhere, one = ([half(mask) for half in halves] for mask in changed)
    assert all(everywhere), "both faces edited"
    assert sorted(bool(n) for n in one) == [False, True], "only the largest face edited"
