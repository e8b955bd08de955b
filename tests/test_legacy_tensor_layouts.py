"""A crafted legacy checkpoint cannot make the converter build more than the file holds.

Each file here is a well-formed authors' AutoEncoder in the 2017 format whose first weight
(8×3×4×4 floats in a storage of 384) is written with another shape, strides or offset.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fader.authors.conversion import convert_checkpoint
from fader.authors.legacy_pickle import CheckpointError, TensorRef, read_legacy_checkpoint
from tests.legacy_checkpoints import random_autoencoder, save_like_torch_0_3

ROOT = Path(__file__).resolve().parents[1]
HUGE_STRIDE_0 = (0, (10**7, 3, 4, 4), (0, 16, 4, 1))  # 1.9 GB if built, 1.5 KB stored


def crafted(path: Path, layout: tuple) -> Path:
    authors = random_autoencoder()
    weight = authors.enc_layers[0][0].weight
    assert weight.shape == (8, 3, 4, 4)
    return save_like_torch_0_3(authors, path, {weight: layout})


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (HUGE_STRIDE_0, r"strides \(0, 16, 4, 1\).* zero or negative stride"),
        ((0, (8, 3, 4, 4), (-48, 16, 4, 1)), "zero or negative stride"),
        ((0, (800, 3, 4, 4), (48, 16, 4, 1)), "claims 38400 elements, more than its storage's 384"),
        (
            (100, (8, 3, 4, 4), (48, 16, 4, 1)),
            r"reaches outside its storage of 384 elements \(1536",
        ),
        ((0, (8, 3, 4, 4), (49, 16, 4, 1)), "reaches outside its storage of 384 elements"),
        ((-1, (8, 3, 4, 4), (48, 16, 4, 1)), "reaches outside its storage"),
        ((0, (8, 3, -4, 4), (48, 16, 4, 1)), "malformed shape"),
    ],
    ids=[
        "huge_stride_0",
        "negative_stride",
        "too_many_elements",
        "offset_past_end",
        "overlap_past_end",
        "negative_offset",
        "negative_size",
    ],
)
def test_tensor_layouts_outside_their_storage_are_refused_before_anything_is_built(
    tmp_path, layout, message
):
    checkpoint = crafted(tmp_path / "crafted.pth", layout)
    with pytest.raises(CheckpointError, match=message):
        read_legacy_checkpoint(checkpoint)
    with pytest.raises(ValueError, match=message):
        convert_checkpoint(checkpoint)


def test_a_strided_layout_inside_its_storage_still_reads_as_written(tmp_path):
    authors = random_autoencoder()
    weight = authors.enc_layers[0][0].weight
    transposed = (0, (8, 3, 4, 4), (1, 8, 24, 96))  # every element once, last one at 383
    checkpoint = save_like_torch_0_3(authors, tmp_path / "t.pth", {weight: transposed})
    record = read_legacy_checkpoint(checkpoint)
    ref = record.state["_modules"]["enc_layers"].state["_modules"]["0"].state["_modules"]["0"]
    tensor = ref.state["_parameters"]["weight"]
    assert isinstance(tensor, TensorRef)
    expected = torch.as_strided(weight.detach().flatten(), (8, 3, 4, 4), (1, 8, 24, 96))
    assert torch.equal(tensor.materialize(), expected)


PEAK_MEMORY = """
import json, resource, sys
from fader.authors.__main__ import main

def run(checkpoint, out):
    try:
        main([checkpoint, "--out", out])
    except SystemExit as exit_:
        return exit_.code
    return 0

good, crafted, out = sys.argv[1:]
assert run(good, out + "/good") == 0  # imports and a whole conversion before measuring
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = run(crafted, out + "/crafted")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "peak_growth_mb": (after - before) / 1024}))
"""


def test_a_small_file_claiming_a_huge_stride_0_tensor_is_refused_in_little_memory(tmp_path):
    good = save_like_torch_0_3(random_autoencoder(), tmp_path / "good.pth")
    checkpoint = crafted(tmp_path / "crafted.pth", HUGE_STRIDE_0)
    assert checkpoint.stat().st_size < 300_000
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MEMORY, str(good), str(checkpoint), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["code"] == 2
    assert "error: " in result.stderr and "zero or negative stride" in result.stderr
    assert "Traceback" not in result.stderr
    assert outcome["peak_growth_mb"] < 100, outcome
    assert not (tmp_path / "crafted").exists()
