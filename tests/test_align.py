"""Face alignment onto the CelebA template, paste-back, photo loading and landmark backends.

Real faces come from photos shipped inside packages (scikit-image's astronaut, matplotlib's
Grace Hopper); odd files are built with PIL in tmp_path. Nothing is downloaded.
"""

import io
import os
import struct
import zlib
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image
from skimage import data as skimage_data

from fader import landmarks
from fader.align import (
    AlignedFace,
    NoFaceFound,
    align_face,
    align_faces,
    align_for_training,
    anchor_points,
    apply_affine,
    celeba_template,
    crop_transform,
    face_mask,
    invert_affine,
    paste_back,
    rescaled,
    similarity_fit,
    warp_to_crop,
)
from fader.landmarks import BackendUnavailable, get_backend
from fader.photo import BadPhoto, load_photo


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    monkeypatch.setenv("FADER_OFFLINE", "1")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


@pytest.fixture(scope="module")
def grace_hopper() -> Image.Image:
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return Image.open(path).convert("RGB")


@pytest.fixture(scope="module", params=["astronaut", "grace_hopper"])
def face_photo(request) -> Image.Image:
    return request.getfixturevalue(request.param)


def similarity(angle_degrees: float, scale: float, tx: float, ty: float) -> np.ndarray:
    angle = np.deg2rad(angle_degrees)
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def redetected_anchors(crop: Image.Image) -> np.ndarray:
    faces = get_backend("dlib")(np.asarray(crop))
    assert faces, "the aligned crop should still show a detectable face"
    return anchor_points(faces[0].landmarks)


def masked_mean_abs(a: Image.Image | np.ndarray, b: Image.Image | np.ndarray) -> float:
    """Mean absolute difference over the face (where the paste-back mask is above one half)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    inside = face_mask(a.shape[0]) > 0.5
    return float(np.abs(a - b)[inside].mean())


# --- geometry, numpy only ---------------------------------------------------------------------


def test_similarity_fit_recovers_a_known_transform_exactly():
    truth = similarity(23.0, 1.7, -12.5, 40.25)
    points = np.array([[10.0, 20.0], [200.0, 35.0], [90.0, 180.0], [5.0, 5.0]])
    assert np.allclose(similarity_fit(points, apply_affine(truth, points)), truth, atol=1e-9)


def test_similarity_fit_has_no_shear_and_no_mirror():
    # Target points related by a shear and a mirror: the best similarity must still be one.
    points = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    fitted = similarity_fit(points, points @ np.array([[-1.0, 0.4], [0.0, 1.0]]).T)
    linear = fitted[:, :2]
    assert linear[0, 0] == pytest.approx(linear[1, 1])
    assert linear[0, 1] == pytest.approx(-linear[1, 0])
    assert np.linalg.det(linear) >= 0


@pytest.mark.parametrize("size", [256, 128, 178])
def test_template_points_sit_where_the_celeba_crop_puts_them(size):
    # 1-based (70.745, 112) in the 178×218 frame → 0-based (69.745, 111) → minus the 20 cropped
    # rows → resized by size/178 around pixel edges.
    expected_256 = np.array([[69.745, 91.0], [107.237, 91.0], [88.432, 132.514]]) + 0.5
    expected = expected_256 * size / 178 - 0.5
    assert np.allclose(celeba_template(size), expected)
    if size == 178:
        assert np.allclose(
            celeba_template(178), [[69.745, 91.0], [107.237, 91.0], [88.432, 132.514]]
        )


def test_crop_transform_maps_landmarks_of_a_template_face_onto_the_template():
    truth = similarity(-12.0, 2.5, 300.0, 80.0)  # crop → photo
    face_in_crop = np.zeros((68, 2))
    eyes_and_mouth = celeba_template(256)
    face_in_crop[36:42] = eyes_and_mouth[0]
    face_in_crop[42:48] = eyes_and_mouth[1]
    face_in_crop[[48, 54]] = eyes_and_mouth[2] + np.array([[-20.0, 0.0], [20.0, 0.0]])
    forward = crop_transform(apply_affine(truth, face_in_crop), 256)
    assert np.allclose(forward, invert_affine(truth), atol=1e-9)
    assert np.allclose(
        apply_affine(forward @ np.vstack([truth, [0, 0, 1]]), [[3.0, 4.0]]), [[3.0, 4.0]]
    )


def test_shrinking_warp_is_antialiased():
    # A one-pixel checkerboard shrunk 8×: without a low-pass it aliases into a strong pattern.
    checker = ((np.indices((2048, 2048)).sum(axis=0) % 2) * 255).astype(np.uint8)
    photo = np.repeat(checker[..., None], 3, axis=2)
    crop = warp_to_crop(photo, similarity(10.0, 1 / 8, 0.0, 0.0), 200)
    assert abs(crop.mean() - 127.5) < 3.0
    assert crop.std() < 4.0


# --- alignment on real photos -------------------------------------------------------------------


def test_aligned_crop_puts_eyes_and_mouth_on_celeba_template(face_photo):
    aligned = align_face(face_photo, size=256, backend="dlib")
    assert isinstance(aligned, AlignedFace)
    assert aligned.crop.size == (256, 256) and aligned.crop.mode == "RGB"
    assert aligned.backend == "dlib" and aligned.n_faces == 1
    assert aligned.landmarks.shape == (68, 2)
    offsets = np.linalg.norm(redetected_anchors(aligned.crop) - celeba_template(256), axis=1)
    # Three points, four degrees of freedom: a real face keeps a residual of a few pixels.
    assert offsets[:2].max() < 5.0, offsets
    assert offsets[2] < 8.0, offsets


def test_aligned_crop_at_128_is_the_256_crop_scaled(astronaut):
    big = align_face(astronaut, size=256, backend="dlib")
    small = align_face(astronaut, size=128, backend="dlib")
    assert small.crop.size == (128, 128)
    assert np.allclose(
        apply_affine(small.forward, big.landmarks[:1]),
        (apply_affine(big.forward, big.landmarks[:1]) + 0.5) / 2 - 0.5,
    )
    halved = big.crop.resize((128, 128), Image.Resampling.LANCZOS)
    assert masked_mean_abs(small.crop, halved) < 4.0


def test_forward_and_inverse_transforms_undo_each_other(astronaut):
    aligned = align_face(astronaut, backend="dlib")
    points = np.array([[0.0, 0.0], [255.0, 128.0]])
    assert np.allclose(apply_affine(aligned.forward, apply_affine(aligned.inverse, points)), points)
    x1, y1, x2, y2 = aligned.box
    eye = aligned.landmarks[36]
    assert x1 <= eye[0] <= x2 and y1 <= eye[1] <= y2


def test_alignment_undoes_a_known_similarity_warp(astronaut):
    import cv2

    crop = np.asarray(align_face(astronaut, backend="dlib").crop)
    crop_to_photo = similarity(25.0, 1.6, 260.0, 40.0)
    photo = cv2.warpAffine(
        crop, crop_to_photo, (720, 560), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    realigned = align_face(photo, backend="dlib")
    # forward ∘ crop_to_photo should be (almost) the identity on the crop.
    composed = realigned.forward @ np.vstack([crop_to_photo, [0.0, 0.0, 1.0]])
    assert np.allclose(composed[:, :2], np.eye(2), atol=0.03)
    assert np.abs(apply_affine(composed, [[128.0, 128.0]]) - 128.0).max() < 2.5
    assert masked_mean_abs(realigned.crop, crop) < 8.0


def crop_drift(photo_to_crop: np.ndarray, reference: AlignedFace) -> float:
    """Largest distance (crop pixels) between where two alignments put the crop's corners."""
    corners = np.array([[0.0, 0.0], [255.0, 0.0], [0.0, 255.0], [255.0, 255.0]])
    in_photo = apply_affine(reference.inverse, corners)
    return float(np.linalg.norm(apply_affine(photo_to_crop, in_photo) - corners, axis=1).max())


def homogeneous(affine: np.ndarray) -> np.ndarray:
    return np.vstack([affine, [0.0, 0.0, 1.0]])


# dlib's mouth corners jitter by a few pixels on a wrinkled, bespectacled face; 10 px at the
# corners of a 256 crop is about 1° or 3 % of scale, while a failed alignment drifts by 40+.
CONSISTENT_DRIFT = 10.0


@pytest.mark.parametrize("angle", [-30, 30])
def test_rotated_photo_gives_the_same_crop(face_photo, angle):
    reference = align_face(face_photo, backend="dlib")
    rotated = face_photo.rotate(angle, Image.Resampling.BICUBIC, expand=True, fillcolor="gray")
    # PIL turns counter-clockwise about the centre, then re-centres on the expanded canvas.
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    centre = (np.array(face_photo.size) - 1) / 2
    new_centre = (np.array(rotated.size) - 1) / 2
    linear = np.array([[c, s], [-s, c]])
    photo_to_rotated = np.hstack([linear, (new_centre - linear @ centre)[:, None]])
    aligned = align_face(rotated, backend="dlib")
    drift = crop_drift(
        (homogeneous(aligned.forward) @ homogeneous(photo_to_rotated))[:2], reference
    )
    assert drift < CONSISTENT_DRIFT


def test_scaled_photo_gives_the_same_crop(face_photo):
    reference = align_face(face_photo, backend="dlib")
    factor = 2.5
    larger = face_photo.resize(
        (round(face_photo.width * factor), round(face_photo.height * factor)),
        Image.Resampling.BICUBIC,
    )
    photo_to_larger = np.array([[factor, 0, (factor - 1) / 2], [0, factor, (factor - 1) / 2]])
    aligned = align_face(larger, backend="dlib")
    drift = crop_drift((homogeneous(aligned.forward) @ homogeneous(photo_to_larger))[:2], reference)
    assert drift < CONSISTENT_DRIFT


def test_mirrored_photo_gives_the_mirrored_crop(face_photo):
    reference = align_face(face_photo, backend="dlib")
    aligned = align_face(face_photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT), backend="dlib")
    mirror_photo = np.array([[-1.0, 0, face_photo.width - 1], [0, 1, 0]])
    mirror_crop = np.array([[-1.0, 0, 255], [0, 1, 0]])
    photo_to_crop = (
        homogeneous(mirror_crop) @ homogeneous(aligned.forward) @ homogeneous(mirror_photo)
    )
    assert crop_drift(photo_to_crop[:2], reference) < CONSISTENT_DRIFT
    flipped_back = aligned.crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert masked_mean_abs(flipped_back, reference.crop) < 15.0


def test_large_photo_is_detected_on_a_small_copy_but_cropped_at_full_resolution(grace_hopper):
    large = grace_hopper.resize((2560, 3000), Image.Resampling.BICUBIC)
    aligned = align_face(large, backend="dlib")
    reference = align_face(grace_hopper, backend="dlib")
    assert aligned.photo_size == (2560, 3000)
    photo_to_large = np.array([[5.0, 0, 2.0], [0, 5.0, 2.0]])
    drift = crop_drift((homogeneous(aligned.forward) @ homogeneous(photo_to_large))[:2], reference)
    assert drift < CONSISTENT_DRIFT


def test_several_faces_are_returned_largest_first(astronaut, grace_hopper):
    canvas = Image.new("RGB", (1200, 700), "white")
    canvas.paste(astronaut.resize((384, 384)), (0, 150))
    canvas.paste(grace_hopper, (600, 50))
    faces = align_faces(canvas, backend="dlib")
    assert len(faces) == 2
    assert all(face.n_faces == 2 for face in faces)
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas[0] > areas[1]
    assert faces[0].box[0] > 600  # Grace Hopper's face is the larger one
    assert align_face(canvas, backend="dlib").box == faces[0].box


@pytest.mark.parametrize("make", ["gradient", "coffee"])
def test_photo_without_a_face_raises_no_face_found_with_advice(make):
    if make == "gradient":
        photo = np.tile(np.linspace(0, 255, 400, dtype=np.uint8), (300, 1))
    else:
        photo = skimage_data.coffee()
    assert align_faces(photo, backend="dlib") == []
    with pytest.raises(NoFaceFound, match="No face found"):
        align_face(photo, backend="dlib")
    assert align_for_training(photo, 64, backend="dlib") is None


def test_align_for_training_returns_a_uint8_crop(astronaut):
    crop = align_for_training(astronaut, 64, backend="dlib")
    assert crop.dtype == np.uint8 and crop.shape == (64, 64, 3)


def test_grayscale_photo_is_aligned_into_a_gray_rgb_crop(grace_hopper):
    crop = np.asarray(align_face(grace_hopper.convert("L"), backend="dlib").crop)
    assert crop.shape == (256, 256, 3)
    assert np.array_equal(crop[..., 0], crop[..., 2])


def test_exif_rotated_photo_is_aligned_upright(grace_hopper, tmp_path):
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    grace_hopper.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    assert load_photo(path).size == grace_hopper.size
    reference = align_face(grace_hopper, backend="dlib")
    aligned = align_face(path, backend="dlib")
    assert aligned.photo_size == grace_hopper.size
    assert crop_drift(aligned.forward, reference) < CONSISTENT_DRIFT


# --- paste-back ---------------------------------------------------------------------------------


def test_pasting_back_the_unedited_crop_barely_changes_the_photo(face_photo):
    aligned = align_face(face_photo, backend="dlib")
    pasted = paste_back(face_photo, aligned.crop, aligned)
    assert pasted.size == face_photo.size
    assert np.abs(np.asarray(pasted, float) - np.asarray(face_photo, float)).mean() < 1.5


def test_pasting_back_an_edited_crop_changes_the_face_but_not_far_pixels(astronaut):
    aligned = align_face(astronaut, backend="dlib")
    edited = np.asarray(aligned.crop).copy()
    edited[80:200, 60:196] = 255 - edited[80:200, 60:196]  # a loud edit over eyes and mouth
    pasted = np.asarray(paste_back(astronaut, Image.fromarray(edited), aligned), float)
    original = np.asarray(astronaut, float)
    x, y = np.round(aligned.landmarks[30]).astype(int)  # nose tip
    assert (
        np.abs(pasted[y - 5 : y + 5, x - 5 : x + 5] - original[y - 5 : y + 5, x - 5 : x + 5]).mean()
        > 40
    )
    assert np.array_equal(pasted[400:, :], original[400:, :])
    assert np.array_equal(pasted[:, 400:], original[:, 400:])


def test_paste_back_matches_colours_at_the_seam(astronaut):
    aligned = align_face(astronaut, backend="dlib")
    cast = np.clip(np.asarray(aligned.crop, float) + np.array([30, -20, 10]), 0, 255).astype(
        np.uint8
    )
    pasted = paste_back(astronaut, cast, aligned)
    # The global cast an autoencoder might add is removed, so the result stays close to the photo.
    assert np.abs(np.asarray(pasted, float) - np.asarray(astronaut, float)).mean() < 2.0


def test_paste_back_accepts_an_edited_crop_of_another_size(astronaut):
    aligned = align_face(astronaut, backend="dlib")
    pasted = paste_back(astronaut, aligned.crop.resize((128, 128)), aligned)
    assert np.abs(np.asarray(pasted, float) - np.asarray(astronaut, float)).mean() < 2.0


def test_paste_back_refuses_a_photo_of_another_size(astronaut):
    aligned = align_face(astronaut, backend="dlib")
    with pytest.raises(ValueError, match="aligned on"):
        paste_back(astronaut.resize((300, 300)), aligned.crop, aligned)


# --- photo loading ------------------------------------------------------------------------------


def test_photo_loads_from_path_bytes_file_object_pil_and_array(astronaut, tmp_path):
    path = tmp_path / "a.png"
    astronaut.save(path)
    data = path.read_bytes()
    expected = np.asarray(astronaut)
    for source in (path, str(path), data, io.BytesIO(data), astronaut, expected):
        photo = load_photo(source)
        assert photo.mode == "RGB" and np.array_equal(np.asarray(photo), expected)


def test_transparent_pixels_are_composited_on_white():
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 32, 64))
    photo = np.asarray(load_photo(rgba))
    assert tuple(photo[10, 10]) == (0, 0, 255)
    assert tuple(photo[10, 50]) == (255, 255, 255)
    la = Image.new("LA", (64, 64), (0, 0))
    assert tuple(np.asarray(load_photo(la))[0, 0]) == (255, 255, 255)


def test_palette_and_cmyk_photos_become_rgb(astronaut, tmp_path):
    path = tmp_path / "cmyk.jpg"
    astronaut.convert("CMYK").save(path, quality=95)
    cmyk = load_photo(path)
    assert cmyk.mode == "RGB"
    assert np.abs(np.asarray(cmyk, float) - np.asarray(astronaut, float)).mean() < 6.0
    palette = load_photo(astronaut.convert("P"))
    assert palette.mode == "RGB" and palette.size == astronaut.size


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (64, 1))
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    photo = np.asarray(load_photo(path))
    assert photo[0, 0, 0] == 0 and photo[0, -1, 0] == 255
    assert abs(int(photo[0, 32, 0]) - round(ramp[0, 32] / 257)) <= 1


def test_animated_gif_uses_its_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (48, 48), colour) for colour in ("red", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert tuple(np.asarray(load_photo(path))[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not an image", "truncated"],
    ids=["zero-bytes", "text", "truncated-jpeg"],
)
def test_unreadable_files_raise_bad_photo(astronaut, tmp_path, content):
    if content == "truncated":
        buffer = io.BytesIO()
        astronaut.save(buffer, format="JPEG")
        content = buffer.getvalue()[: len(buffer.getvalue()) // 3]
    path = tmp_path / "upload.jpg"
    path.write_bytes(content)
    with pytest.raises(BadPhoto):
        load_photo(path)
    assert issubclass(BadPhoto, ValueError)


def test_tiny_photo_is_refused_with_a_clear_message():
    with pytest.raises(BadPhoto, match="too small"):
        align_face(Image.new("RGB", (16, 16)), backend="dlib")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_huge_png_is_refused_before_decoding(tmp_path):
    # A 12000×12000 header with almost no pixel data: decoding would fail differently (and,
    # for a real file, allocate 432 MB), so a "too large" message proves the check came first.
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
    path = tmp_path / "huge.png"
    path.write_bytes(png + chunk(b"IEND", b""))
    with pytest.raises(BadPhoto, match="too large"):
        load_photo(path)


def test_oversized_jpeg_is_decoded_at_reduced_scale(astronaut, tmp_path):
    path = tmp_path / "big.jpg"
    astronaut.save(path, quality=90)
    assert load_photo(path, max_pixels=512 * 512 // 4).size == (256, 256)
    assert load_photo(path, max_pixels=512 * 512 // 10).size == (128, 128)
    png = tmp_path / "big.png"
    astronaut.save(png)
    with pytest.raises(BadPhoto, match="too large"):
        load_photo(png, max_pixels=512 * 512 // 4)


# --- landmark backends --------------------------------------------------------------------------


def test_unknown_backend_name_is_refused():
    with pytest.raises(ValueError, match="dlib"):
        get_backend("mtcnn")


def test_offline_auto_backend_without_fan_weights_is_dlib(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(landmarks, "_cache", {})
    assert get_backend("auto").name == "dlib"
    with pytest.raises(BackendUnavailable, match="offline"):
        get_backend("face_alignment")


def test_face_alignment_backend_with_its_real_weights(astronaut):
    pytest.importorskip("face_alignment")
    if not landmarks.fan_weights_present():
        pytest.skip(
            f"FAN weights not pre-placed at {landmarks.fan_weights_path()} (no download in tests)"
        )
    aligned = align_face(astronaut, backend="face_alignment")
    assert aligned.backend == "face_alignment"
    offsets = np.linalg.norm(redetected_anchors(aligned.crop) - celeba_template(256), axis=1)
    assert offsets.max() < 8.0, offsets


def test_backends_are_built_once_and_shared_safely_between_threads(astronaut):
    from concurrent.futures import ThreadPoolExecutor

    expected = align_face(astronaut, backend="dlib").forward
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: align_face(astronaut, backend="dlib").forward, range(8)))
    assert all(np.array_equal(forward, expected) for forward in results)
    assert get_backend("dlib") is get_backend("dlib")


@pytest.mark.slow
def test_face_alignment_backend_runs_offline_from_pre_placed_weights(
    astronaut, monkeypatch, tmp_path
):
    """Plumbing only: a randomly initialised FAN placed where face-alignment looks for it."""
    pytest.importorskip("face_alignment")
    import torch
    from face_alignment.models import FAN

    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(FAN(4).state_dict(), checkpoints / landmarks.FAN_WEIGHTS)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(landmarks, "_cache", {})
    backend = get_backend("auto")
    assert backend.name == "face_alignment"
    faces = backend(np.asarray(astronaut))
    assert len(faces) == 1 and faces[0].landmarks.shape == (68, 2)
    assert os.listdir(checkpoints) == [landmarks.FAN_WEIGHTS]


def test_a_rescaled_alignment_pastes_onto_a_resized_photo_like_the_full_one(astronaut):
    aligned = align_face(astronaut, backend="dlib")
    edited = np.asarray(aligned.crop).copy()
    edited[80:200, 60:196] = 255 - edited[80:200, 60:196]
    small_size = (300, 300)
    small = rescaled(aligned, small_size)
    assert small.photo_size == small_size
    assert np.allclose(
        apply_affine(small.inverse, apply_affine(small.forward, [[10, 20]])), [[10, 20]]
    )
    preview = np.asarray(
        paste_back(
            astronaut.resize(small_size, Image.Resampling.BILINEAR), Image.fromarray(edited), small
        ),
        float,
    )
    full = np.asarray(
        paste_back(astronaut, Image.fromarray(edited), aligned).resize(
            small_size, Image.Resampling.BILINEAR
        ),
        float,
    )
    assert np.abs(preview - full).mean() < 3.0
    x, y = np.round(small.landmarks[30]).astype(int)
    assert (
        np.abs(preview[y - 3 : y + 3, x - 3 : x + 3] - full[y - 3 : y + 3, x - 3 : x + 3]).mean()
        < 12
    )
