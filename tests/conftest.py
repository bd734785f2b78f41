import os
import sys
import tempfile

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
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
def icbm_t1_demo(tmp_path_factory):
    """`se-monai demo` once per test session: the shipped bundle on the whole real ICBM152 T1 (30-40 s on 2 cores).
    Its Dice scores, what it printed and the segmentation it wrote (``icbm152_t1_seg.nii.gz``)."""
    import contextlib
    import io

    from se_monai.cli.commands import demo

    folder, printed = tmp_path_factory.mktemp("demo"), io.StringIO()
    with contextlib.redirect_stdout(printed):
        scores = demo(output_dir=str(folder))
    return {"scores": scores, "printed": printed.getvalue(), "segmentation": folder / "icbm152_t1_seg.nii.gz"}


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
