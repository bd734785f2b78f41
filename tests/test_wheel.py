"""se-monai as users get it: the wheel, installed into a fresh folder, used from outside the repository."""

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_crops

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The built wheel installed (without dependencies: this environment has them) into a fresh folder, and the
    environment that puts that folder first on Python's path."""
    work = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(work / "dist"), str(ROOT)]
    done = subprocess.run(build, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (work / "dist").glob("se_monai-*.whl")
    target = work / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k != "SE_MONAI_BUNDLE"}
    env["PYTHONPATH"] = str(target)
    outside = work / "elsewhere"
    outside.mkdir()
    return {"target": target, "env": env, "cwd": outside}


def run(installed, *args):
    """``python ARGS`` with the installed copy first on the path, in a folder outside the repository."""
    env, cwd = installed["env"], installed["cwd"]
    command = [sys.executable, *args]  # the child writes UTF-8 (progress bars), whatever this process's locale
    return subprocess.run(command, capture_output=True, encoding="utf-8", timeout=600, env=env, cwd=cwd)


def test_the_wheel_carries_the_bundle_and_bases(installed):
    package = installed["target"] / "se_monai"
    done = run(installed, "-c", "import se_monai; print(se_monai.__file__)")
    assert done.stdout.strip() == str(package / "__init__.py")  # the installed copy, not the source tree
    for name in ("configs/inference.json", "configs/train.json", "configs/metadata.json", "models/model.pt", "LICENSE"):
        assert (package / "bundle" / name).is_file() and not (package / "bundle" / name).is_symlink()
    assert len(list((package / "bases" / "data").glob("disco_*.npz"))) == 2
    done = run(installed, "-m", "se_monai.cli", "bundle-dir")
    assert done.returncode == 0 and done.stdout.strip() == str(package / "bundle")


def test_segment_and_monai_bundle_run_from_outside_the_repository(installed, tmp_path):
    crops = write_crops(tmp_path / "scans")
    out = installed["cwd"] / "seg.nii.gz"
    done = run(installed, "-m", "se_monai.cli", "segment", str(crops["lps"]), str(out), "--progress", "False")
    assert done.returncode == 0, done.stderr[-2000:]
    assert nib.load(str(out)).shape == nib.load(str(crops["lps"])).shape
    config = installed["target"] / "se_monai" / "bundle" / "configs" / "inference.json"
    labels = installed["cwd"] / "labels"
    done = run(
        installed,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(config),
        "--datalist",
        f"['{crops['ras']}']",
        "--output_dir",
        str(labels),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (written,) = labels.glob("*.nii.gz")
    assert set(np.unique(np.asarray(nib.load(str(written)).dataobj))) == {0, 1, 2, 3}


def test_demo_from_outside_the_repository(installed):
    done = run(installed, "-m", "se_monai.cli", "demo", "--output_dir", "demo")
    assert done.returncode == 0, done.stderr[-2000:]
    dice = [float(line.rsplit(" ", 1)[1]) for line in done.stdout.splitlines() if line.startswith("Dice ")]
    assert len(dice) == 2 and min(dice) >= 0.80
    assert (installed["cwd"] / "demo" / "icbm152_t1_seg.nii.gz").is_file()
