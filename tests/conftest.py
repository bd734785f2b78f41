import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# optimised bases fitted during the tests go to a throw-away folder, not the user's cache
os.environ["SE_MONAI_CACHE"] = tempfile.mkdtemp(prefix="se-monai-bases-")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# CUDA computes float32 convolutions and products in TF32 (10-bit significands) by default: the tests compare float32
# results (reference formulation, CPU) at float32 tolerances; mixed precision has tests of its own
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


@pytest.fixture(scope="session")
def icbm_dataset(tmp_path_factory):
    """A two-subject ICBM152 brain-tissue dataset in the MSD layout (written once per test session)."""
    from se_monai.data import prepare_brain_tissue_dataset

    root = tmp_path_factory.mktemp("icbm152")
    prepare_brain_tissue_dataset(root, num_subjects=2, seed=0)
    return root


@pytest.fixture(scope="session")
def icbm_csf_dataset(tmp_path_factory):
    """The same with the CSF class (labels 0 other, 1 grey matter, 2 white matter, 3 CSF), the shipped model's
    classes."""
    from se_monai.data import TemplateSubjects, prepare_brain_tissue_dataset

    root = tmp_path_factory.mktemp("icbm152_csf")
    prepare_brain_tissue_dataset(root, num_subjects=2, seed=0, subjects=TemplateSubjects(csf=True))
    return root


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """The built wheel installed (without dependencies: this environment has them) into a fresh folder, and the
    environment that puts that folder first on Python's path (for :func:`helpers.run_installed`)."""
    import subprocess

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


@pytest.fixture(scope="session")
def icbm_t1_demo(installed):
    """`se-monai demo` once per test session, as a user runs it: from the installed wheel, in a folder outside the
    repository; the shipped bundle on the whole real ICBM152 T1 (30-40 s on 2 cores). Its Dice scores by class name,
    what it printed and the segmentation it wrote (``icbm152_t1_seg.nii.gz``)."""
    from helpers import run_installed

    done = run_installed(installed, "-m", "se_monai.cli", "demo", "--output_dir", "demo")
    assert done.returncode == 0, done.stderr[-2000:]
    scores = dict(line[len("Dice ") :].rsplit(": ", 1) for line in done.stdout.splitlines() if line.startswith("Dice "))
    return {
        "scores": {name: float(value) for name, value in scores.items()},
        "printed": done.stdout,
        "segmentation": installed["cwd"] / "demo" / "icbm152_t1_seg.nii.gz",
    }


@pytest.fixture(scope="session")
def t1(tmp_path_factory):
    """The RAS crop of the real T1 as SimpleITK reads it, with an oblique direction and an origin of its own:
    geometry to keep."""
    import SimpleITK as sitk
    from helpers import OBLIQUE, write_crops

    crop = write_crops(tmp_path_factory.mktemp("crops"))["ras"]
    image = sitk.ReadImage(str(crop))
    image.SetDirection(OBLIQUE)
    image.SetOrigin((12.5, -40.25, 7.0))
    return image


@pytest.fixture
def count_calls(monkeypatch):
    """``count_calls(owner, name)`` wraps ``owner.name`` for the test and returns the list of the positional
    arguments of every call, to assert which path ran."""

    def count(owner, name):
        calls = []
        original = getattr(owner, name)

        def counting(*args, **kwargs):
            calls.append(args)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)
        return calls

    return count
