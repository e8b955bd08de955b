"""Reading the dataset layouts users have, and the uint8 cache training reads rows from."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fader.photo import centre_square
from tests.builders import CELEBA_ATTRIBUTES, make_celeba, make_class_folders, make_labelled_folder
from train.__main__ import main as train_main
from train.data import BatchStream, prepare
from train.sources import TEST, TRAIN, VALIDATION, open_source, select_attributes


def test_celeba_layout_reads_attributes_and_official_split(celeba_dir: Path):
    source = open_source(celeba_dir)
    assert source.layout == "celeba"
    assert source.attributes == CELEBA_ATTRIBUTES
    assert len(source.files) == 40 and source.files[0].name == "000001.jpg"
    assert set(np.unique(source.labels)) == {0.0, 1.0}
    assert [(source.split == s).sum() for s in (TRAIN, VALIDATION, TEST)] == [32, 4, 4]
    first_row = (celeba_dir / "list_attr_celeba.txt").read_text().splitlines()[2].split()[1:]
    assert source.labels[0].tolist() == [float(v == "1") for v in first_row]


def test_torchvision_celeba_layout_is_found_too(tmp_path: Path):
    make_celeba(tmp_path, n=6, torchvision_layout=True)
    source = open_source(tmp_path)
    assert source.layout == "celeba" and source.root == tmp_path / "celeba"


def test_attribute_names_are_matched_case_insensitively_and_unknown_ones_listed(celeba_dir: Path):
    source = open_source(celeba_dir)
    assert select_attributes(source, ["smiling", "MALE"]) == ["Smiling", "Male"]
    with pytest.raises(
        ValueError, match="Unknown attribute.*Beard.*Valid.*Eyeglasses, Male, Smiling"
    ):
        select_attributes(source, ["Beard"])
    with pytest.raises(ValueError, match="--attrs"):
        select_attributes(source, None)


def test_labels_csv_gives_one_attribute_per_column(tmp_path: Path):
    folder, labels = make_labelled_folder(tmp_path / "photos")
    source = open_source(folder, labels)
    assert source.attributes == ["Smiling", "Male"]
    assert source.labels[:3].tolist() == [[1, 1], [0, 0], [1, 0]]
    assert (source.split == VALIDATION).sum() >= 1 and (source.split == TEST).sum() >= 1


def test_labels_csv_naming_a_missing_file_is_refused(tmp_path: Path):
    folder, labels = make_labelled_folder(tmp_path / "photos", n=4)
    labels.write_text(labels.read_text() + "not_there.png,1,0\n")
    with pytest.raises(ValueError, match="1 file.*not found.*not_there.png"):
        open_source(folder, labels)


def test_labels_csv_with_a_value_that_is_not_a_flag_names_the_line(tmp_path: Path):
    folder, labels = make_labelled_folder(tmp_path / "photos", n=4)
    labels.write_text(labels.read_text().replace("photo_2.png,1,0", "photo_2.png,maybe,0"))
    with pytest.raises(ValueError, match="line 4.*'maybe'"):
        open_source(folder, labels)


def test_class_folders_become_one_hot_attributes(tmp_path: Path):
    source = open_source(make_class_folders(tmp_path))
    assert source.layout == "folders" and source.attributes == ["day", "night"]
    assert source.labels.sum(1).tolist() == [1.0] * 24
    assert source.labels[:12, 0].all() and source.labels[12:, 1].all()


def test_empty_folder_says_which_layouts_are_expected(tmp_path: Path):
    with pytest.raises(ValueError, match="No images found.*img_align_celeba.*--labels.*sub-folder"):
        open_source(tmp_path)


def test_celeba_frame_is_cropped_to_its_centre_square_like_the_authors():
    frame = np.zeros((218, 178, 3), np.uint8)
    frame[:20] = 255  # rows the authors drop above …
    frame[198:] = 255  # … and below
    frame[20:198, :, 1] = 100
    crop = np.asarray(centre_square(Image.fromarray(frame), 178))
    assert crop.shape == (178, 178, 3)
    assert (crop[..., 0] == 0).all() and (crop[..., 1] == 100).all()


def test_cache_is_uint8_memory_mapped_and_reused(celeba_dir: Path, tmp_path: Path):
    source = open_source(celeba_dir)
    data = prepare(source, 32, tmp_path, workers=1)
    assert isinstance(data.images, np.memmap)
    assert data.images.dtype == np.uint8 and data.images.shape == (40, 3, 32, 32)
    assert data.images.std() > 10, "real pixels, not zeros"
    stamp = (data.path / "images.npy").stat().st_mtime_ns
    again = prepare(source, 32, tmp_path, workers=1)
    assert again.path == data.path and (again.path / "images.npy").stat().st_mtime_ns == stamp
    assert prepare(source, 64, tmp_path, workers=1).path != data.path


def test_unreadable_images_are_skipped_and_counted(tmp_path: Path):
    root = make_celeba(tmp_path / "data", n=8)
    images = root / "img_align_celeba"
    (images / "000002.jpg").write_bytes(b"this is not a jpeg")
    truncated = (images / "000005.jpg").read_bytes()
    (images / "000005.jpg").write_bytes(truncated[:200])
    data = prepare(open_source(root), 32, tmp_path / "cache", workers=2)
    assert data.skipped == 2
    assert data.images.shape[0] == 6 and len(data.labels) == 6 and len(data.split) == 6
    expected = np.delete(open_source(root).labels, [1, 4], axis=0)
    assert np.array_equal(data.labels, expected)


def test_parallel_preprocessing_matches_serial(tmp_path: Path):
    root = make_celeba(tmp_path / "data", n=70)
    source = open_source(root)
    serial = prepare(source, 32, tmp_path / "serial", workers=1)
    parallel = prepare(source, 32, tmp_path / "parallel", workers=2)
    assert np.array_equal(np.asarray(serial.images), np.asarray(parallel.images))


def test_batches_depend_only_on_seed_and_step(celeba_dir: Path, tmp_path: Path):
    data = prepare(open_source(celeba_dir), 32, tmp_path, workers=1)
    columns = data.attribute_columns(["Smiling"])
    stream = BatchStream(data, data.indices(TRAIN), columns, batch_size=8, seed=3)
    images, labels = stream.batch(5)
    assert images.dtype.is_floating_point is False and images.shape == (8, 3, 32, 32)
    assert labels.shape == (8, 1)
    again = BatchStream(data, data.indices(TRAIN), columns, batch_size=8, seed=3).batch(5)
    assert all(np.array_equal(a, b) for a, b in zip((images, labels), again, strict=True))
    prefetched = list(stream.prefetch(4, 7))
    assert len(prefetched) == 3 and np.array_equal(prefetched[1][0], images)
    epoch = np.concatenate([stream.batch(s)[0].numpy() for s in range(4)])
    assert len({row.tobytes() for row in epoch}) == 32, "one epoch visits every image once"


def resident_kb_of(path: Path) -> int:
    """How much of `path` this process holds in memory through its mappings, from smaps."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def test_training_batches_leave_the_cache_out_of_the_process_memory(tmp_path: Path):
    """Rows are read with pread: nothing of images.npy becomes resident in the process, so
    memory does not grow with the dataset (through the memory map it grew by ~1 MB a row)."""
    data = prepare(open_source(make_celeba(tmp_path / "data", n=300)), 64, tmp_path, workers=1)
    stream = BatchStream(data, data.indices(TRAIN), data.attribute_columns(["Male"]), 16, seed=0)
    batches = [stream.batch(step)[0].numpy() for step in range(10)]
    assert resident_kb_of(data.path / "images.npy") == 0
    rows = np.array([0, 7, 299, 150])
    assert np.array_equal(data.read_images(rows), np.asarray(data.images)[rows])
    assert len({image.tobytes() for batch in batches for image in batch}) == 160


def test_a_truncated_cache_is_reported_not_read_as_zeros(celeba_dir: Path, tmp_path: Path):
    data = prepare(open_source(celeba_dir), 32, tmp_path, workers=1)
    with open(data.path / "images.npy", "r+b") as file:
        file.truncate(data.images.offset + 10 * data.images[0].nbytes)
    with pytest.raises(ValueError, match="truncated: rebuild the cache"):
        data.read_images(np.array([3, 20]))


def test_align_option_crops_real_faces_and_skips_photos_without_one(tmp_path: Path):
    from skimage import data as skimage_data

    from fader.align import align_face

    for name, pixels in (("face", skimage_data.astronaut()), ("scene", skimage_data.coffee())):
        (tmp_path / "photos" / name).mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / "photos" / name / "0.jpg", quality=95)
    source = open_source(tmp_path / "photos")
    data = prepare(source, 64, tmp_path / "cache", workers=1, align=True)
    assert data.skipped == 1 and data.images.shape == (1, 3, 64, 64)
    expected = np.asarray(align_face(Image.open(source.files[0]), size=64).crop)
    assert np.array_equal(data.images[0].transpose(1, 2, 0), expected)


def test_a_class_folder_linked_from_outside_the_data_folder_is_refused(tmp_path: Path):
    data = make_class_folders(tmp_path / "daynight", per_class=3)
    elsewhere = make_class_folders(tmp_path / "private", per_class=2) / "day"
    (data / "dusk").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match=r"dusk/0\.jpg leads outside --data .*private/day/0\.jpg"):
        open_source(data)


def test_an_image_linked_from_outside_the_data_folder_is_refused(tmp_path: Path):
    data = make_class_folders(tmp_path / "daynight", per_class=3)
    secret = tmp_path / "secret.jpg"
    secret.write_bytes((data / "day" / "0.jpg").read_bytes())
    (data / "night" / "zz.jpg").symlink_to(secret)
    with pytest.raises(ValueError, match=r"night/zz\.jpg leads outside --data .*secret\.jpg"):
        open_source(data)


def test_links_that_stay_inside_the_data_folder_are_read(tmp_path: Path):
    data = make_class_folders(tmp_path / "daynight", per_class=3)
    (data / "day" / "kept").mkdir()
    (data / "day" / "kept" / "5.jpg").write_bytes((data / "day" / "0.jpg").read_bytes())
    (data / "day" / "5.jpg").symlink_to(Path("kept") / "5.jpg")
    source = open_source(data)
    assert len(source.files) == 7 and data / "day" / "5.jpg" in source.files


def test_one_image_in_two_class_folders_by_a_link_is_refused(tmp_path: Path):
    data = make_class_folders(tmp_path / "daynight", per_class=3)
    (data / "night" / "from_day.jpg").symlink_to(data / "day" / "0.jpg")
    with pytest.raises(
        ValueError, match=r"day/0\.jpg and .*night/from_day\.jpg are one image.*class folders"
    ):
        open_source(data)


def test_a_labels_csv_naming_a_link_that_leads_outside_is_refused(tmp_path: Path):
    folder, labels = make_labelled_folder(tmp_path / "photos", n=4)
    (tmp_path / "secret.png").write_bytes((folder / "photo_0.png").read_bytes())
    (folder / "innocent.png").symlink_to(tmp_path / "secret.png")
    labels.write_text(labels.read_text() + "innocent.png,1,0\n")
    with pytest.raises(ValueError, match=r"innocent\.png leads outside --data"):
        open_source(folder, labels)


def test_a_labels_csv_listing_one_image_twice_is_refused(tmp_path: Path):
    folder, labels = make_labelled_folder(tmp_path / "photos", n=4)
    (folder / "alias.png").symlink_to("photo_1.png")
    for again in ["photo_1.png", "./photo_1.png", "alias.png"]:
        labels.write_text(labels.read_text().splitlines()[0] + f"\nphoto_1.png,1,0\n{again},0,1\n")
        with pytest.raises(ValueError, match=r"photo_1\.png and .* are one image.*Give each"):
            open_source(folder, labels)


def test_python_m_train_refuses_a_csv_listing_one_image_100k_times_before_any_work(
    tmp_path: Path, capsys
):
    folder, labels = make_labelled_folder(tmp_path / "photos", n=4)
    labels.write_text("file,Smiling\n" + "photo_0.png,1\n" * 100_000)
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["--data", folder, "--labels", labels, "--preset", "tiny", "--steps", "2"]
    assert train_main([str(a) for a in [*args, "--out", out, "--cache-dir", cache]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "are one image" in err and "Traceback" not in err
    assert not out.exists() and not cache.exists(), "nothing decoded, cached or written"


def test_python_m_train_refuses_a_class_folder_linked_from_outside(tmp_path: Path, capsys):
    data = make_class_folders(tmp_path / "daynight", per_class=3)
    (data / "dusk").symlink_to(make_class_folders(tmp_path / "private", per_class=2) / "day")
    out = tmp_path / "run"
    assert train_main(["--data", str(data), "--preset", "tiny", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "dusk/0.jpg leads outside --data" in err
    assert not out.exists()


def test_a_csv_with_more_attributes_than_a_model_takes_asks_for_attrs(tmp_path: Path):
    folder, labels = make_labelled_folder(tmp_path / "photos", n=4)
    columns = [f"column_{i}" for i in range(70)]
    rows = [f"photo_{i}.png," + ",".join("1" * 70) for i in range(4)]
    labels.write_text("\n".join(["file," + ",".join(columns), *rows]) + "\n")
    source = open_source(folder, labels)
    with pytest.raises(ValueError, match="70 attributes; a model takes at most 64.*--attrs"):
        select_attributes(source, None)
    assert select_attributes(source, ["column_3"]) == ["column_3"]
