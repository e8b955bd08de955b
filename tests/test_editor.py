"""The editor the app runs on: encode once, decode per slider move, safe across threads."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skimage_data

from fader.editor import Editor
from fader.library import ModelLibrary, load_model
from fader.model import FaderConfig, FaderNetwork
from fader.photo_store import StoreLimits
from fader.pixels import to_tensor
from tests.group_photo import changed, group_photo


def random_model(preprocessing: str, size: int = 64) -> FaderNetwork:
    torch.manual_seed(0)
    config = FaderConfig(
        attributes=["Smiling", "Male"],
        image_size=size,
        init_fm=8,
        max_fm=64,
        n_layers=4,
        preprocessing=preprocessing,
    )
    return FaderNetwork(config).eval()


def photo(seed: int, size: tuple[int, int] = (96, 80)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


class CountingEncoder:
    def __init__(self, model: FaderNetwork):
        self.calls = 0
        model.encoder.register_forward_hook(self.count)

    def count(self, *_: object) -> None:
        self.calls += 1


def test_slider_moves_run_only_the_decoder():
    model = random_model("center")
    encoder = CountingEncoder(model)
    editor = Editor(model)
    photo_id = editor.load(photo(0))
    assert encoder.calls == 1
    first = editor.edit(photo_id, {"Smiling": 0.0})
    second = editor.edit(photo_id, {"Smiling": 2.0})
    editor.sweep(photo_id, "Male", -1, 2, steps=5)
    assert encoder.calls == 1, "edits must reuse the cached latent"
    assert not np.array_equal(np.asarray(first.crop), np.asarray(second.crop))
    assert editor.load(photo(0)) == photo_id and encoder.calls == 1, "same content, same id"


def test_edit_equals_a_direct_decode_of_the_crop():
    model = random_model("center")
    editor = Editor(model)
    image = photo(1)
    result = editor.edit(editor.load(image), {"Male": 1.5})
    crop = editor.photo(editor.load(image)).crop
    with torch.no_grad():
        expected = model.decode(model.encode(to_tensor(crop)), model.slider_channels({"Male": 1.5}))
    expected_pixels = expected[0].add(1).mul(127.5).round().clamp(0, 255).byte().permute(1, 2, 0)
    assert np.array_equal(np.asarray(result.crop), expected_pixels.numpy())
    assert result.photo.size == image.size


def test_latent_cache_is_bounded_and_evicts_the_oldest():
    editor = Editor(random_model("center"), limits=StoreLimits(photos_per_session=3))
    photo_ids = [editor.load(photo(i)) for i in range(5)]
    assert len(editor.photos) == 3
    with pytest.raises(ValueError, match="upload it again"):
        editor.edit(photo_ids[0], {})
    editor.edit(photo_ids[-1], {"Smiling": 1.0})


def test_latent_cache_also_keeps_to_a_byte_budget_but_always_the_newest_photo():
    big = (800, 600)  # 1.9 MB of pixels (4 bytes each in PIL), a 768×576 preview: ~3.7 MB a photo
    editor = Editor(random_model("center"), limits=StoreLimits(bytes_per_session=8 * 2**20))
    photo_ids = [editor.load(photo(i, big)) for i in range(5)]
    assert len(editor.photos) == 2
    with pytest.raises(ValueError, match="upload it again"):
        editor.edit(photo_ids[2], {})
    assert editor.photo(photo_ids[-1]).photo.size == big
    editor.edit(photo_ids[-1], {"Smiling": 1.0})
    tight = Editor(random_model("center"), limits=StoreLimits(bytes=2**20, bytes_per_session=2**20))
    photo_id = tight.load(photo(9, big))
    assert len(tight.photos) == 1 and tight.photo(photo_id).photo.size == big, (
        "larger than the budget"
    )


def test_concurrent_edits_each_get_their_own_image():
    editor = Editor(random_model("center"))
    images = [photo(i) for i in range(6)]
    jobs = [(image, alpha) for image in images for alpha in (0.0, 1.0, 2.5)]
    expected = [np.asarray(editor.edit(editor.load(i), {"Smiling": a}).crop) for i, a in jobs]
    fresh = Editor(random_model("center"))

    def run(job: tuple[Image.Image, float]) -> np.ndarray:
        image, alpha = job
        return np.asarray(fresh.edit(fresh.load(image), {"Smiling": alpha}).crop)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, jobs * 3))
    for i, result in enumerate(results):
        assert np.array_equal(result, expected[i % len(jobs)])


def test_sweep_is_a_strip_of_crops_from_low_to_high():
    editor = Editor(random_model("center"))
    photo_id = editor.load(photo(2))
    strip = editor.sweep(photo_id, "Smiling", -1.0, 2.0, steps=4)
    assert strip.size == (4 * 64, 64)
    ends = [editor.edit(photo_id, {"Smiling": a}).crop for a in (-1.0, 2.0)]
    assert np.array_equal(np.asarray(strip)[:, :64], np.asarray(ends[0]))
    assert np.array_equal(np.asarray(strip)[:, -64:], np.asarray(ends[1]))
    with pytest.raises(ValueError, match="has no 'Beard'"):
        editor.sweep(photo_id, "Beard", 0, 1)


def test_face_models_align_the_photo_and_paste_the_edit_back():
    editor = Editor(random_model("celeba"), aligner="dlib")
    astronaut = Image.fromarray(skimage_data.astronaut())
    photo_id = editor.load(astronaut)
    prepared = editor.photo(photo_id)
    assert prepared.face is not None and prepared.face.backend == "dlib"
    assert prepared.crop.size == (64, 64)
    result = editor.edit(photo_id, {"Smiling": 1.0})
    assert result.photo.size == astronaut.size
    difference = np.abs(np.asarray(result.photo, float) - np.asarray(astronaut, float)).sum(-1)
    x1, y1, x2, y2 = (int(v) for v in prepared.face.box)
    assert difference[y1:y2, x1:x2].mean() > 5, "the face region was edited"
    assert difference[-60:, -60:].max() == 0, "far from the face, the photo is untouched"


def test_a_photo_without_a_face_is_a_clear_error_for_face_models():
    editor = Editor(random_model("celeba"), aligner="dlib")
    with pytest.raises(ValueError, match="No face found"):
        editor.load(Image.fromarray(skimage_data.coffee()))
    assert len(editor.photos) == 0


def test_library_loads_each_model_once_and_refuses_unknown_names(tmp_path: Path):
    random_model("center").save_pretrained(tmp_path / "m")
    library = ModelLibrary([str(tmp_path / "m")])
    assert library.editor(str(tmp_path / "m")) is library.editor(str(tmp_path / "m"))
    with pytest.raises(ValueError, match="Unknown model"):
        library.editor("other")
    with pytest.raises(ValueError, match="No model to offer"):
        ModelLibrary([])


def test_authors_models_are_offered_offline_only_once_converted(tmp_path: Path, monkeypatch):
    from fader.library import authors_choices

    monkeypatch.setenv("FADER_AUTHORS_CACHE", str(tmp_path))
    monkeypatch.setenv("FADER_OFFLINE", "1")
    assert authors_choices() == []
    random_model("celeba").save_pretrained(tmp_path / "male")
    assert authors_choices() == ["authors: male"]
    assert load_model("authors: male").config == random_model("celeba").config


def test_live_edits_use_a_preview_and_exports_the_full_photo():
    editor = Editor(random_model("celeba"), aligner="dlib")
    big = Image.fromarray(skimage_data.astronaut()).resize((1600, 1600), Image.Resampling.BICUBIC)
    photo_id = editor.load(big)
    live = editor.edit(photo_id, {"Smiling": 2.0})
    export = editor.edit(photo_id, {"Smiling": 2.0}, full_resolution=True)
    assert max(live.photo.size) == 768 and export.photo.size == big.size
    assert np.array_equal(np.asarray(live.crop), np.asarray(export.crop))
    downscaled = np.asarray(export.photo.resize(live.photo.size, Image.Resampling.BILINEAR), float)
    assert np.abs(downscaled - np.asarray(live.photo, float)).mean() < 3


@pytest.mark.parametrize("exclusive", [True, False])
def test_sliders_start_at_what_the_models_classifier_reads(tmp_path: Path, exclusive: bool):
    from fader.classifier import Classifier, ClassifierConfig

    folder = tmp_path / "with-classifier"
    random_model("center").save_pretrained(folder)
    torch.manual_seed(1)
    classifier = Classifier(ClassifierConfig(["Male", "Smiling"], exclusive, image_size=64))
    classifier.save(folder)
    editor = ModelLibrary([str(folder)]).editor(str(folder))
    assert editor.classifier is not None
    starts = []
    for seed in range(6):
        prepared = editor.photo(editor.load(photo(seed)))
        male, smiling = classifier.read(to_tensor(prepared.crop))[0].tolist()
        assert prepared.slider_start == {"Smiling": smiling, "Male": male}
        starts.append(prepared.slider_start)
    if exclusive:
        assert all(sum(start.values()) == 1 for start in starts), "one class is on"
    random_model("center").save_pretrained(tmp_path / "without")
    plain = ModelLibrary([str(tmp_path / "without")]).editor(str(tmp_path / "without"))
    assert plain.classifier is None
    assert plain.photo(plain.load(photo(0))).slider_start == {"Smiling": 0.0, "Male": 0.0}


def test_a_photo_belongs_to_the_session_that_loaded_it():
    model = random_model("center")
    encoder = CountingEncoder(model)
    editor = Editor(model)
    alice = editor.load(photo(0), session="alice")
    bob = editor.load(photo(0), session="bob")
    assert alice != bob, "the same photo gets a different id in another session"
    assert encoder.calls == 1, "but its encoding is shared"
    for thief, stolen in (("bob", alice), ("alice", bob), ("", alice)):
        with pytest.raises(ValueError, match="upload it again"):
            editor.edit(stolen, {}, session=thief)
    assert editor.photo(alice, "alice").encoded.latents is editor.photo(bob, "bob").encoded.latents


def test_load_a_then_b_then_edit_a_edits_a():
    editor = Editor(random_model("center"))
    first, second = photo(0), photo(1)
    first_id = editor.load(first)
    editor.load(second)
    assert editor.photo(first_id).photo.tobytes() == first.tobytes()
    alone = Editor(random_model("center"))
    expected = alone.edit(alone.load(first), {"Male": 1.0}).crop
    assert editor.edit(first_id, {"Male": 1.0}).crop.tobytes() == expected.tobytes()


def test_the_latest_photo_is_the_one_each_session_loaded_last_not_edited_last():
    editor = Editor(random_model("center"))
    first = editor.load(photo(0), session="alice")
    second = editor.load(photo(1), session="alice")
    bobs = editor.load(photo(0), session="bob")
    editor.edit(first, {}, session="alice")  # used, but not what alice's page shows
    assert editor.photos.latest("alice") == second and editor.photos.latest("bob") == bobs
    assert editor.load(photo(0), session="alice") == first, "the same photo, loaded again"
    assert editor.photos.latest("alice") == first
    assert editor.photos.latest("carol") is None


def test_the_store_says_what_a_session_was_shown_since_a_mark_and_lets_a_photo_go():
    """What the page's preparation of a photo let go checks when it ends (`page.edits`): the
    photos a session loaded (added, or found again) meanwhile, no other session's, and None
    once its page was emptied (a refused upload); the one it prepared for nothing goes, so the
    session's latest is the one loaded before it."""
    editor = Editor(random_model("center"))
    first = editor.load(photo(0), session="alice")
    mark = editor.photos.load_mark()
    assert editor.photos.shown_since("alice", mark) == set()
    second = editor.load(photo(1), session="alice")
    editor.load(photo(2), session="bob")
    assert editor.load(photo(0), session="alice") == first  # found again: loaded again
    assert editor.photos.shown_since("alice", mark) == {first, second}
    editor.photos.discard("bob", first)  # another session's photo: not bob's to let go
    assert editor.photos.holds("alice", first)
    editor.photos.discard("alice", first)
    assert not editor.photos.holds("alice", first)
    third = editor.load(photo(3), session="alice")
    editor.photos.discard("alice", third)
    assert editor.photos.latest("alice") == second
    editor.photos.discard("alice", first)  # already gone: nothing to do
    editor.photos.show_none("alice")
    assert editor.photos.shown_since("alice", mark) == {second, None}
    assert None not in editor.photos.shown_since("bob", mark)


def test_using_a_photo_keeps_it_from_eviction():
    editor = Editor(random_model("center"), limits=StoreLimits(photos_per_session=2))
    oldest, newer = editor.load(photo(0)), editor.load(photo(1))
    editor.edit(oldest, {})  # used: now the most recent
    editor.load(photo(2))
    editor.edit(oldest, {})
    with pytest.raises(ValueError, match="upload it again"):
        editor.edit(newer, {})


def test_one_heavy_session_cannot_evict_another_sessions_photo():
    big = (800, 600)  # ~3.7 MB with its preview
    limits = StoreLimits(bytes=16 * 2**20, bytes_per_session=8 * 2**20)
    editor = Editor(random_model("center"), limits=limits)
    small = editor.load(photo(0), session="visitor")
    for attacker in range(4):
        for i in range(4):
            editor.load(photo(10 * attacker + i + 1, big), session=f"attacker{attacker}")
    assert editor.photos.held_bytes() <= limits.bytes
    assert all(
        editor.photos.held_bytes(f"attacker{a}") <= limits.bytes_per_session for a in range(4)
    )
    editor.edit(small, {"Smiling": 1.0}, session="visitor")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())


@pytest.mark.parametrize("preprocessing", ["celeba", "center"])
def test_full_detail_at_the_starting_values_gives_back_the_photo(tmp_path: Path, preprocessing):
    from fader.classifier import Classifier, ClassifierConfig

    folder = tmp_path / "model"
    random_model(preprocessing).save_pretrained(folder)
    torch.manual_seed(2)  # y₀ is what a classifier reads, not only zeros
    Classifier(ClassifierConfig(["Smiling", "Male"], False, image_size=64)).save(folder)
    editor = ModelLibrary([str(folder)], aligner="dlib").editor(str(folder))
    astronaut = Image.fromarray(skimage_data.astronaut())
    photo_id = editor.load(astronaut)
    prepared = editor.photo(photo_id)
    start = prepared.slider_start
    for full_resolution in (False, True):
        kept = editor.edit(photo_id, start, full_resolution=full_resolution, detail=1.0)
        assert mean_difference(kept.crop, prepared.crop) < 1 / 255
        assert mean_difference(kept.photo, astronaut) < 1 / 255
    plain = editor.edit(photo_id, start, full_resolution=True, detail=0.0)
    assert mean_difference(plain.crop, prepared.crop) > 5, "a random decoder rebuilds nothing"
    assert mean_difference(plain.photo, astronaut) > 0.5


def test_detail_adds_the_photos_residual_to_the_decoder_output():
    model = random_model("center")
    editor = Editor(model)
    photo_id = editor.load(photo(3))
    crop = editor.photo(photo_id).crop
    x = to_tensor(crop)
    with torch.no_grad():
        z = model.encode(x)
        at_start = model.decode(z, model.slider_channels({}))
        smiling = model.decode(z, model.slider_channels({"Smiling": 2.0}))
    expected = smiling + 0.5 * (x - at_start)
    pixels = expected[0].add(1).mul(127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    edited = np.asarray(editor.edit(photo_id, {"Smiling": 2.0}, detail=0.5).crop, int)
    assert np.abs(edited - pixels).max() <= 1
    strip = editor.sweep(photo_id, "Smiling", 2.0, 3.0, steps=2, detail=0.5)
    assert np.abs(np.asarray(strip, int)[:, :64] - pixels).max() <= 1


def test_the_default_detail_comes_with_the_model(tmp_path: Path):
    assert random_model("celeba").config.default_detail == 1.0, "on for faces"
    assert random_model("center").config.default_detail == 0.0, "off for whole images"
    model = random_model("center")
    model.config.detail = 0.25
    model.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"))
    assert loaded.config.default_detail == 0.25
    editor = Editor(loaded)
    photo_id = editor.load(photo(4))
    assert np.array_equal(
        np.asarray(editor.edit(photo_id, {"Male": 1.0}).crop),
        np.asarray(editor.edit(photo_id, {"Male": 1.0}, detail=0.25).crop),
    )
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match="Keep photo detail must be between 0"):
            editor.edit(photo_id, {}, detail=bad)
    with pytest.raises(ValueError, match="detail must be between 0 and 1"):
        FaderConfig(attributes=["Smiling"], detail=2.0)


def test_every_face_of_a_group_photo_is_encoded_once_in_one_batch(tmp_path: Path):
    from fader.classifier import Classifier, ClassifierConfig

    folder = tmp_path / "model"
    random_model("celeba").save_pretrained(folder)
    torch.manual_seed(3)
    classifier = Classifier(ClassifierConfig(["Smiling", "Male"], False, image_size=64))
    classifier.save(folder)
    editor = ModelLibrary([str(folder)], aligner="dlib").editor(str(folder))
    batches = []
    editor.model.encoder.register_forward_hook(lambda _, inputs, __: batches.append(len(inputs[0])))
    prepared = editor.photo(editor.load(group_photo()))
    assert batches == [2], "both faces, one encoder batch"
    assert len(prepared.crops) == len(prepared.faces) == 2 and len(prepared.encoded.latents) == 2
    assert prepared.faces[0].box[0] > 600, "face 0 is the largest: Grace Hopper's"
    assert prepared.face is prepared.faces[0] and prepared.crop is prepared.crops[0]
    assert "2 faces found" in prepared.note
    largest = classifier.read(to_tensor(prepared.crop))[0].tolist()
    assert prepared.slider_start == {"Smiling": largest[0], "Male": largest[1]}, "the largest face"


def test_editing_a_group_photo_changes_the_faces_picked_and_nothing_else():
    editor = Editor(random_model("celeba"), aligner="dlib")
    group = group_photo()
    photo_id = editor.load(group)
    hopper, astronaut = (face.box for face in editor.photo(photo_id).faces)
    both = editor.edit(photo_id, {"Smiling": 2.0}, full_resolution=True, detail=0.0)
    assert len(both.crops) == 2 and both.photo.size == group.size
    assert changed(both.photo, group, hopper) > 5 and changed(both.photo, group, astronaut) > 5
    for corner in ((0, 0, 60, 60), (1140, 640, 1200, 700), (540, 0, 600, 60)):
        assert changed(both.photo, group, corner) == 0, "the background is untouched"
    for faces, edited, kept in (([1], astronaut, hopper), ("largest", hopper, astronaut)):
        one = editor.edit(photo_id, {"Smiling": 2.0}, full_resolution=True, detail=0.0, faces=faces)
        assert len(one.crops) == 1
        assert changed(one.photo, group, edited) > 5 and changed(one.photo, group, kept) == 0
    assert editor.edit(photo_id, {}, detail=1.0).photo.size == editor.photo(photo_id).preview.size
    strip = editor.sweep(photo_id, "Smiling", 0.0, 1.0, steps=3, faces=[0, 1])
    assert strip.size == (3 * 64, 2 * 64), "one row per face"
    for bad, message in (([2], "no face 2"), ([], "at least one face"), ("some", "faces must")):
        with pytest.raises(ValueError, match=message):
            editor.edit(photo_id, {}, faces=bad)


def test_a_burst_of_new_sessions_evicts_among_themselves_not_a_visitor_who_edits():
    editor = Editor(random_model("center"), limits=StoreLimits(photos=4))
    visitor = editor.load(photo(0, (800, 600)), session="visitor")  # the heaviest, and oldest
    editor.edit(visitor, {}, session="visitor")
    for newcomer in range(10):  # each uploads once and never edits
        editor.load(photo(newcomer + 1), session=f"newcomer{newcomer}")
    assert len(editor.photos) == 4
    editor.edit(visitor, {"Smiling": 1.0}, session="visitor")


def test_photos_untouched_for_the_idle_time_are_freed():
    editor = Editor(random_model("center"), limits=StoreLimits(idle_seconds=0.0))
    gone = editor.load(photo(0), session="left")
    kept = editor.load(photo(1), session="here")
    with pytest.raises(ValueError, match="upload it again"):
        editor.edit(gone, {}, session="left")
    editor.edit(kept, {}, session="here")
