"""Pasting an edit back: whole-image models (digits, scenes) into the photo's centre square, and
a slider move's paste, which reuses what it can from the photo's earlier moves, against the
slow path that recomputes everything.

Face models paste through the alignment (tests/test_align.py); here the edited photo of a model
without alignment must show the edited crop, resized, at the centre, and the rest untouched.
"""

import base64
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from fader.align import face_mask, paste_back, pasted_face
from fader.attributes import flat_values, neutral_values, with_values
from fader.crop_edit import overlap, paste_at, paste_sites
from fader.editor import Editor
from fader.library import ModelLibrary, load_model
from fader.model import ALIGN, FaderConfig, FaderNetwork
from fader.photo import centre_square_box, paste_centre_square
from fader.row_jpeg import encoded
from fader.web_pictures import PREVIEW_QUALITY, UneditedPreviews, inline_photo
from page.edits import edit

DIGITS_SEVEN = "assets/examples/digits/seven.png"


def wide_photo_around(digit: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The digit at the centre of a wider photo whose margins are a pattern of their own."""
    width, height = size
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    side = min(width, height)
    photo.paste(digit.convert("RGB").resize((side, side)), ((width - side) // 2, 0))
    return photo


def difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def test_pasting_a_centre_square_puts_the_crop_there_and_keeps_the_margins():
    photo = Image.new("RGB", (300, 200), (10, 20, 30))
    edited = Image.new("RGB", (32, 32), (200, 100, 50))
    pasted = paste_centre_square(photo, edited)
    assert pasted.size == (300, 200)
    pixels = np.asarray(pasted)
    assert (pixels[:, 50:250] == (200, 100, 50)).all(), "the centre 200×200 square is the crop"
    assert (pixels[:, :50] == (10, 20, 30)).all() and (pixels[:, 250:] == (10, 20, 30)).all()
    assert np.asarray(photo)[0, 100].tolist() == [10, 20, 30], "the input photo is not changed"


@pytest.mark.parametrize("detail", [0.0, 0.6])
@pytest.mark.parametrize("side", [900, 20], ids=["enlarged", "shrunk"])
def test_a_gray_edit_of_the_centre_square_is_resized_as_its_three_channels_are(detail, side):
    """A gray model's edit of a gray square (its change gray too) is resized as one channel, a
    third of the work, in a colour photo: the picture resizing all three channels gives, but
    for the resample's sums run in another order (a level, in a few pixels per million)."""
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (side, side + 40, 3), np.uint8))
    photo.paste(Image.fromarray(rng.integers(0, 256, (side, side), np.uint8)), (20, 0))  # gray
    gray = Image.fromarray(rng.integers(0, 256, (32, 32), np.uint8)).convert("RGB")
    crop = photo.crop((20, 0, 20 + side, side)).resize((32, 32))
    pasted = np.asarray(paste_centre_square(photo, gray, crop, detail), np.int16)
    change = np.asarray(gray, np.float32) - detail * np.asarray(crop, np.float32)
    kernel = cv2.INTER_AREA if side < 32 else cv2.INTER_CUBIC  # shrunk: area-averaged
    square = cv2.resize(change, (side, side), interpolation=kernel)
    square += detail * np.asarray(photo, np.float32)[:, 20 : 20 + side]
    expected = np.clip(np.rint(square), 0, 255)
    moved = np.abs(pasted[:, 20 : 20 + side] - expected)
    assert moved.max() <= 1 and (moved > 0).mean() < 1e-4
    assert np.array_equal(pasted[:, :20], np.asarray(photo)[:, :20]), "the margins stay"


def digit(editor: Editor, name: str) -> dict:
    """The digits model's sliders with only `name` on, whatever form its classes take."""
    config = editor.model.config
    off = dict.fromkeys(flat_values(neutral_values(config)), 0.0)
    return with_values(config, neutral_values(config), off | {name: 1.0})


@pytest.mark.parametrize("full_resolution", [False, True], ids=["preview", "export"])
def test_a_digit_edit_is_in_the_edited_photo(full_resolution):
    editor = Editor(load_model("digits"))
    photo = wide_photo_around(Image.open(DIGITS_SEVEN), (1200, 800))
    photo_id = editor.load(photo)
    seven = editor.edit(photo_id, digit(editor, "seven"), full_resolution=full_resolution)
    three = editor.edit(photo_id, digit(editor, "three"), full_resolution=full_resolution)
    assert difference(seven.crop, three.crop) > 10, "the two edits differ visibly"

    expected_size = (1200, 800) if full_resolution else (768, 512)
    for result in (seven, three):
        assert result.photo.size == expected_size
        width, height = result.photo.size
        left = (width - height) // 2
        centre = result.photo.crop((left, 0, left + height, height))
        resized = result.crop.convert(centre.mode).resize(centre.size, Image.Resampling.LANCZOS)
        assert difference(centre, resized) < 1, "the centre square holds the edited crop"
        source = photo if full_resolution else editor.photo(photo_id).preview
        margins = (0, 0, left, height)
        assert np.array_equal(
            np.asarray(result.photo.crop(margins)), np.asarray(source.crop(margins))
        ), "outside the square the photo is as it was"


# ---- A slider move's paste against the slow path ----------------------------------------------


def face_model() -> FaderNetwork:
    """A small random face model: pasting does not depend on training."""
    config = FaderConfig(
        attributes=["Smiling"], image_size=64, init_fm=8, max_fm=64, n_layers=4, preprocessing=ALIGN
    )
    return FaderNetwork(config).eval()


def four_faces_close_together() -> Image.Image:
    """Grace Hopper four times side by side, close enough that each face's paste region
    overlaps its neighbours'."""
    hopper = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    face = hopper.convert("RGB").crop((100, 0, 420, 600))
    group = Image.new("RGB", (1280, 600), "white")
    for i in range(4):
        group.paste(face, (320 * i, 0))
    return group


def pasted_one_by_one(photo, crops, faces, detail: float) -> Image.Image:
    """The slow path: each face pasted with everything recomputed (`paste_back`), in turn."""
    for crop, face in zip(crops, faces, strict=True):
        photo = paste_back(photo, crop, face, detail)
    return photo


@pytest.mark.parametrize("detail", [1.0, 0.4])
def test_a_moves_export_and_preview_are_the_slow_paths_pictures(detail):
    """The export is the slow path's picture pixel for pixel. The preview reuses each face's
    region, warped mask and seam ring from the photo's upload: with the slow path's bicubic it
    is the same picture, overlapping faces included, move after move."""
    editor = Editor(face_model(), aligner="dlib")
    photo_id = editor.load(four_faces_close_together())
    prepared = editor.photo(photo_id)
    boxes = [site.box for site in prepared.preview_sites]
    assert len(boxes) == 4 and overlap(boxes[2], boxes[3]), "neighbours' regions overlap"
    for values in ({"Smiling": 2.0}, {"Smiling": -1.0}):  # a second move reuses the same sites
        export = editor.edit(photo_id, values, full_resolution=True, detail=detail)
        slow = pasted_one_by_one(prepared.photo, export.crops, prepared.faces, detail)
        assert np.array_equal(np.asarray(export.photo), np.asarray(slow))

        preview = editor.edit(photo_id, values, detail=detail)
        slow = pasted_one_by_one(prepared.preview, preview.crops, prepared.preview_faces, detail)
        bicubic = paste_sites(prepared.preview.size, prepared.preview_faces, prepared.crop)
        assert np.array_equal(
            np.asarray(paste_at(prepared.preview, preview.crops, bicubic, detail)),
            np.asarray(slow),
        )
        fresh = paste_sites(prepared.preview.size, prepared.preview_faces, prepared.crop, True)
        for _ in range(2):  # one-off, then over the base the second paste makes
            fresh_paste = np.asarray(paste_at(prepared.preview, preview.crops, fresh, detail))
            apart = np.abs(fresh_paste.astype(int) - np.asarray(preview.photo, int))
            # nothing of a move stays in the kept sites: the preview is a fresh one's, the
            # base's order and the one-off's a float32 rounding apart at most
            assert apart.max() <= 1 and (apart > 0).mean() < 0.001


@pytest.mark.parametrize("detail", [0.0, 1.0])
def test_a_colour_cast_over_a_whole_crop_is_taken_out_before_its_paste(detail):
    """An autoencoder's rebuild tends to shift the whole crop's colour: each channel is moved
    so the seam ring's mean is the photo's again (`pasted_face`), so the crop itself with a
    cast pastes as the crop itself does, in each channel, to a level."""
    editor = Editor(face_model(), aligner="dlib")
    prepared = editor.photo(editor.load(four_faces_close_together()))
    site = prepared.preview_sites[0]
    cast = site.original + np.array([20.0, -12.0, 7.0], np.float32)
    pasted = [
        np.asarray(pasted_face(site, crop, detail, prepared.preview), np.int16)
        for crop in (site.original, cast)
    ]
    assert np.abs(pasted[1] - pasted[0]).max() <= 1


def decoders_edit(crop: Image.Image, detail: float) -> Image.Image:
    """An edit as a trained decoder makes one, D(z, y) + s·(x − D(z, y₀)): its rebuilds are
    smooth (here the crop blurred), and the edit moves their colours."""
    x = np.asarray(crop, np.float32)
    rebuilt = np.asarray(crop.filter(ImageFilter.GaussianBlur(2)), np.float32)
    edited = rebuilt * [1.1, 0.9, 1.0] + 10 + detail * (x - rebuilt)
    return Image.fromarray(np.clip(np.rint(edited), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("detail", [0.0, 0.4, 1.0])
def test_the_previews_bilinear_warp_is_close_to_the_slow_paths_bicubic(detail):
    """The preview warps each face back bilinearly, several times faster than bicubic. What is
    warped is smooth (a decoder's rebuild, or at s = 1 the difference of two), where the two
    kernels agree: under half a level on average, a few levels at most (rounding included),
    and the photo outside the faces' regions untouched."""
    editor = Editor(face_model(), aligner="dlib")
    prepared = editor.photo(editor.load(four_faces_close_together()))
    crops = [decoders_edit(crop, detail) for crop in prepared.crops]
    preview = paste_at(prepared.preview, crops, prepared.preview_sites, detail)
    slow = pasted_one_by_one(prepared.preview, crops, prepared.preview_faces, detail)
    difference = np.abs(np.asarray(preview, float) - np.asarray(slow, float))
    assert difference.mean() < 0.5 and difference.max() <= 10
    untouched = np.ones(difference.shape[:2], bool)
    for x0, y0, x1, y1 in (site.box for site in prepared.preview_sites):
        untouched[y0:y1, x0:x1] = False
    assert untouched.any() and difference[untouched].max() == 0


def test_a_faces_paste_covers_only_where_its_mask_weighs():
    """A face's paste region is where its feathered mask has weight, not the whole footprint of
    the crop around it (where a paste changes nothing, yet a move would warp, blend and encode
    it): each edge row and column of the region has some weight. The export, the preview and
    the one-by-one paste all narrow it alike (the tests above compare them pixel for pixel)."""
    editor = Editor(face_model(), aligner="dlib")
    prepared = editor.photo(editor.load(four_faces_close_together()))
    width, height = prepared.preview.size
    for site in prepared.preview_sites:
        weight = site.alpha[..., 0]
        edges = (weight[0], weight[-1], weight[:, 0], weight[:, -1])
        assert all(edge.any() for edge in edges), site.box
        # and none of its weight is left out: the mask warped onto the region grown by a pixel
        # a side weighs nothing outside it
        x0, y0, x1, y1 = site.box
        gx0, gy0, gx1, gy1 = max(x0 - 1, 0), max(y0 - 1, 0), min(x1 + 1, width), min(y1 + 1, height)
        to_grown = site.to_crop.copy()
        to_grown[:, 2] += site.to_crop[:, :2] @ np.array([gx0 - x0, gy0 - y0], np.float64)
        mask = face_mask(site.original.shape[0])
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        grown = cv2.warpAffine(mask, to_grown, (gx1 - gx0, gy1 - gy0), flags=flags)
        grown[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0] = 0.0
        assert grown.max() == 0.0, site.box


@pytest.mark.parametrize("detail", [0.4, 1.0])
def test_a_previews_moves_paste_over_one_base_per_photo_and_detail(detail):
    """A kept site makes what a paste adds the edit to once for its photo and detail, on the
    second paste in a row there (`PasteSite.base`), and the photo store counts it. Pasting over
    it is the one-off paste's sums in another order: float32 rounds them apart, by one level at
    most, in a few pixels."""
    editor = Editor(face_model(), aligner="dlib")
    prepared = editor.photo(editor.load(four_faces_close_together()))
    site, preview = prepared.preview_sites[0], prepared.preview
    assert site.base(preview, detail) is None, "a first paste at a detail: one-off"
    base = site.base(preview, detail)  # the second in a row: made, and kept
    assert site.base(preview, detail) is base and not base.flags.writeable, "kept"
    assert site.base(preview, detail / 2) is None, "a detail's drag makes none"
    assert site.base(preview, detail / 2) is not None, "until the detail stays"
    assert site.base(preview, detail) is None and site.base(preview.copy(), detail) is None
    assert site.nbytes == site.alpha.nbytes + site.original.nbytes + site.ring.nbytes + base.nbytes
    crop = np.asarray(decoders_edit(prepared.crops[0], detail), np.float32)
    over_base = pasted_face(site, crop, detail, preview, base)
    one_off = pasted_face(site, crop, detail, preview)
    apart = np.abs(np.asarray(over_base, int) - np.asarray(one_off, int))
    assert apart.max() <= 1 and (apart > 0).mean() < 0.001
    assert np.abs(np.asarray(one_off, int) - np.asarray(preview.crop(site.box), int)).max() > 5


@pytest.mark.parametrize("detail", [0.0, 0.6])
@pytest.mark.parametrize("size", [(1200, 800), (900, 900)])
def test_a_digit_moves_preview_and_export_are_the_slow_paths_pictures(detail, size):
    """A centre square is resized the same way in the preview and the export (bicubic): both
    are `paste_centre_square`'s pictures, pixel for pixel; a square photo's too, whose edit is
    the whole picture (no copy of the photo made to be covered). The gray model's preview of a
    gray photo (the square one: the digit alone) is held gray, as it is shown, so a move pastes
    one channel and converts nothing; it is the same picture as the colour paste made gray."""
    editor = Editor(load_model("digits"))
    photo = wide_photo_around(Image.open(DIGITS_SEVEN), size)
    photo_id = editor.load(photo)
    prepared = editor.photo(photo_id)
    assert prepared.preview.mode == ("L" if size[0] == size[1] else "RGB")
    for values in (digit(editor, "seven"), digit(editor, "three")):
        for full_resolution, source in ((True, prepared.photo), (False, prepared.preview)):
            edited = editor.edit(photo_id, values, full_resolution=full_resolution, detail=detail)
            crop = edited.crop.convert("RGB")  # a gray model's crop, in a colour photo
            slow = paste_centre_square(source.convert("RGB"), crop, prepared.crop, detail)
            slow = slow.convert(edited.photo.mode)  # a gray photo's edit is gray (`shown`)
            assert np.array_equal(np.asarray(edited.photo), np.asarray(slow))


@pytest.mark.parametrize("side", [900, 600, 20, 16])
@pytest.mark.parametrize("crop_is_gray", [True, False])
def test_a_square_pasted_without_detail_is_the_float_resizes_picture_to_a_level(side, crop_is_gray):
    """With no detail kept, a centre square enlarged from the crop resizes its 8-bit levels as
    8 bits (OpenCV's fixed-point bicubic: many times faster on every move of a whole-image
    model), a gray crop as one channel. Its rounding is not the float resize's: the picture is
    the same to a level, in at most one pixel in ten thousand. A square shrunk from the crop is
    resized as floats (OpenCV's 8-bit area kernel rounds halves up): the same picture."""
    rng = np.random.default_rng(side)
    levels = rng.integers(0, 256, (32, 32, 1 if crop_is_gray else 3), dtype=np.uint8)
    crop = Image.fromarray(levels.squeeze()).convert("RGB")  # a gray crop: three equal channels
    pasted = np.asarray(paste_centre_square(Image.new("RGB", (side, side)), crop), int)
    kernel = cv2.INTER_AREA if side < 32 else cv2.INTER_CUBIC
    resized = cv2.resize(np.asarray(crop, np.float32), (side, side), interpolation=kernel)
    apart = np.abs(pasted - np.clip(np.rint(resized), 0, 255).astype(int))
    if side < 32:
        assert apart.max() == 0
    else:
        assert apart.max() <= 1 and (apart > 0).mean() <= 1e-4


@pytest.mark.parametrize("faces", ["all", [1], [3, 0]])
def test_a_moves_boxes_hold_all_it_changed_and_its_preview_jpeg_is_the_whole_encoding(faces):
    """An edit says the boxes it pasted into: outside them the preview is the photo's own, so
    the page's JPEG of a move, made again only in those boxes' rows, is the JPEG of the whole
    edited preview, byte for byte."""
    editor = Editor(face_model(), aligner="dlib")
    photo_id = editor.load(four_faces_close_together())
    prepared = editor.photo(photo_id)
    unedited = UneditedPreviews().of(prepared.preview, lambda preview: preview)
    for values in ({"Smiling": 2.0}, {"Smiling": -1.5}):
        edited = editor.edit(photo_id, values, detail=0.4, faces=faces)
        assert len(edited.boxes) == len(edited.crops)
        outside = np.ones((prepared.preview.height, prepared.preview.width), bool)
        for x0, y0, x1, y1 in edited.boxes:
            outside[y0:y1, x0:x1] = False
        changed = np.any(np.asarray(edited.photo) != np.asarray(prepared.preview), axis=2)
        assert changed.any() and not changed[outside].any()
        jpeg = preview_jpeg(inline_photo(edited.photo, unedited, edited.boxes))
        assert jpeg == encoded(edited.photo, PREVIEW_QUALITY)


def preview_jpeg(html: str) -> bytes:
    """The JPEG inside a page's preview <img>."""
    return base64.b64decode(html.split('"')[1].removeprefix("data:image/jpeg;base64,"))


@pytest.mark.parametrize("mode", ["RGB", "L"], ids=["colour", "gray"])
def test_the_pages_preview_of_a_digit_on_paper_is_the_whole_edited_previews_jpeg(mode):
    """Through the page's own edit: a dark digit on paper, edited inverted and shown inverted
    back (`Editor.shown`), gray end to end for a gray photo, move after move."""
    library = ModelLibrary(["digits"])
    editor = library.editor("digits")
    paper = Image.new(mode, (900, 700), "white" if mode == "L" else "#f6efdc")  # cream: colour
    ink = ImageOps.invert(Image.open(DIGITS_SEVEN).convert("L")).resize((600, 600))
    paper.paste(ink.convert(mode), (150, 50))
    photo_id = editor.load(paper)
    prepared = editor.photo(photo_id)
    assert prepared.inverted and prepared.gray == (mode == "L")
    for values in (digit(editor, "two"), digit(editor, "eight")):
        flat = list(flat_values(values).values())
        _, preview, _ = edit(library, "digits", None, photo_id, *flat, inline=True)
        edited = editor.edit(photo_id, values)
        assert edited.photo.mode == mode
        assert preview_jpeg(preview) == encoded(edited.photo, PREVIEW_QUALITY)
        assert preview_jpeg(preview) != encoded(prepared.preview.convert(mode), PREVIEW_QUALITY)


def test_a_digits_box_is_its_centre_square():
    editor = Editor(load_model("digits"))
    photo_id = editor.load(wide_photo_around(Image.open(DIGITS_SEVEN), (1200, 800)))
    prepared = editor.photo(photo_id)
    edited = editor.edit(photo_id, digit(editor, "three"))
    (box,) = edited.boxes
    assert box == centre_square_box(prepared.preview.size)
    unchanged = np.asarray(edited.photo).copy()
    unchanged[box[1] : box[3], box[0] : box[2]] = np.asarray(prepared.preview)[
        box[1] : box[3], box[0] : box[2]
    ]
    assert np.array_equal(unchanged, np.asarray(prepared.preview))
