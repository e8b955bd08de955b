"""`pip install` of this repository gives a user the `fader` library, usable outside the checkout.

The wheel is built from a copy of the checkout (a build writes `build/` and `*.egg-info` into
the tree it runs in), installed with pip into a folder of its own, and run by this interpreter
from another folder with only that folder added to the path, as a user's project would.
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement
from safetensors.torch import load_file, save_file

from fader import FaderNetwork
from fader.attributes import neutral_values, with_values

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "assets" / "models" / "digits"
NOT_COPIED = shutil.ignore_patterns(".*", "__pycache__", "build", "*.egg-info", "runs")

USE_IT = """
import json, sys
from pathlib import Path

import fader
from fader import FaderNetwork
from fader.attributes import neutral_values, with_values
from safetensors.torch import load_file, save_file

folder, tensors = Path(sys.argv[1]), Path(sys.argv[2])
model = FaderNetwork.from_pretrained(folder)
x = load_file(tensors)["x"]
values = with_values(model.config, neutral_values(model.config), {"zero": 0, "eight": 1})
edited = model.decode(model.encode(x), model.slider_channels(values, len(x)))
save_file({"edited": edited.contiguous()}, tensors.with_name("edited.safetensors"))
path = [str(Path(entry).resolve()) for entry in sys.path]  # "" is this folder
print(json.dumps({"file": fader.__file__, "path": path, "attributes": model.attributes}))
"""


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """`command`'s stdout; on failure its stderr is the test's message."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def pip(*args: str, cwd: Path) -> None:
    env = {**os.environ, "PIP_NO_INDEX": "1"}  # nothing may come from the network
    run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], cwd, env)


@pytest.mark.slow
def test_the_wheel_installs_the_library_alone_and_runs_a_model_from_another_folder(
    tmp_path: Path,
):
    source = tmp_path / "checkout"
    shutil.copytree(ROOT, source, ignore=NOT_COPIED)
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), ".", cwd=source)
    (wheel,) = (tmp_path / "dist").glob("fader-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
    assert {name.split("/")[0] for name in names if not name.startswith("fader-")} == {"fader"}
    assert "fader/model.py" in names and "fader/folder.py" in names
    requires = [line.split(":", 1)[1] for line in metadata.decode().splitlines()
                if line.startswith("Requires-Dist:")]  # fmt: skip
    required = {Requirement(line).name for line in requires if "extra ==" not in line}
    assert {"torch", "safetensors", "huggingface_hub", "numpy", "pillow"} <= required

    site = tmp_path / "site"
    pip("install", "--no-deps", "--target", str(site), str(wheel), cwd=tmp_path)
    project = tmp_path / "users_project"
    shutil.copytree(DIGITS, project / "digits")
    channels = FaderNetwork.from_pretrained(DIGITS).config.image_channels
    x = torch.rand(2, channels, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    save_file({"x": x}, project / "x.safetensors")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = run(
        [sys.executable, "-c", USE_IT, "digits", "x.safetensors"],
        project,
        {**env, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1"},
    )
    report = json.loads(out.splitlines()[-1])
    assert Path(report["file"]).resolve() == (site / "fader" / "__init__.py").resolve()
    environment = Path(sys.prefix).resolve()  # the interpreter's own packages (CI's venv lies
    checkout = [  # inside the checkout): anything else from the checkout would be a leak
        entry
        for entry in map(Path, report["path"])
        if entry.is_relative_to(ROOT) and not entry.is_relative_to(environment)
    ]
    assert not checkout, f"the checkout is on the path: {checkout}"
    assert report["attributes"] == FaderNetwork.from_pretrained(DIGITS).attributes

    model = FaderNetwork.from_pretrained(DIGITS)
    with torch.inference_mode():
        values = with_values(model.config, neutral_values(model.config), {"zero": 0, "eight": 1})
        alpha = model.slider_channels(values, len(x))
        expected = model.decode(model.encode(x), alpha)
    torch.testing.assert_close(load_file(project / "edited.safetensors")["edited"], expected)


def test_the_librarys_dependencies_agree_with_requirements_txt():
    """pyproject.toml declares what `pip install .` brings; requirements.txt (the app's) pins
    the same packages at versions those declarations accept."""
    tomllib = pytest.importorskip("tomllib")  # the standard library's from Python 3.11 on
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            pinned[requirement.name.lower().replace("_", "-")] = requirement
    extras = [r for group in declared["optional-dependencies"].values() for r in group]
    for line in declared["dependencies"] + extras:
        requirement = Requirement(line)
        app = pinned.get(requirement.name.lower().replace("_", "-"))
        if app is None:
            continue  # pulled in by another requirement (opencv-python by face-alignment)
        for spec in app.specifier:
            if spec.operator == "==":
                assert requirement.specifier.contains(spec.version), (line, str(app))
            else:
                assert str(requirement.specifier) == str(app.specifier), (line, str(app))
