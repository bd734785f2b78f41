"""The shipped bundle as the model zoo's CI tests a bundle (its ci/unit_tests): MONAI's ConfigWorkflow on the
bundle's own train, evaluate and inference configs, with their required properties checked, on small synthetic
NIfTIs made here, overriding only sizes and folders. (verify_net_in_out is in test_bundle.py, ckpt_export in
test_export.py.)"""

import hashlib

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import write_msd_dataset
from monai.bundle import ConfigWorkflow

from se_monai.workflows import SHIPPED_BUNDLE

CONFIGS = SHIPPED_BUNDLE / "configs"
LABELS = ["other", "grey matter", "white matter", "CSF"]  # the shipped bundle's classes


def workflow(kind: str, files: list[str], **override) -> ConfigWorkflow:
    return ConfigWorkflow(
        workflow_type=kind,
        config_file=[str(CONFIGS / f) for f in files],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        **override,
    )


def run_checked(flow: ConfigWorkflow, check: bool = True) -> None:
    flow.initialize()
    if check:
        missing = flow.check_properties()
        assert not missing, f"required bundle properties missing: {missing}"
    flow.run()
    flow.finalize()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_msd_dataset(tmp_path_factory.mktemp("zoo") / "Task98_Zoo", ["T1"], LABELS, train=3, test=1)


def digest() -> str:
    return hashlib.sha256((SHIPPED_BUNDLE / "models" / "model.pt").read_bytes()).hexdigest()


def test_train_one_epoch_then_evaluate(dataset, tmp_path):
    before = digest()
    folders = {"dataset_dir": str(dataset), "ckpt_dir": str(tmp_path / "models"), "output_dir": str(tmp_path / "eval")}
    short = {"epochs": 1, "val_interval": 1, "num_workers": 0, "num_samples": 1, "patch_size": [16, 16, 16]}
    short |= {"bn_recalibration_batches": 4}  # the handler runs, briefly
    trainer = workflow("train", ["train.json"], **folders, **short)
    run_checked(trainer)
    assert trainer.parser.get_parsed_content("train#trainer").state.epoch == 1
    saved = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert saved.keys() == trainer.parser.get_parsed_content("network").state_dict().keys()

    # as the zoo does: evaluate.json over train.json, no property check (evaluate.json overrides train.json)
    run_checked(workflow("eval", ["train.json", "evaluate.json"], **folders), check=False)
    rows = (tmp_path / "eval" / "val_mean_dice_raw.csv").read_text().splitlines()
    assert rows[0] == "filename,class0,class1,class2,mean" and "case_003" in rows[1]
    assert all(0.0 <= float(v) <= 1.0 for v in rows[1].split(",")[1:])
    assert digest() == before


def test_infer(dataset, tmp_path):
    run_checked(workflow("infer", ["inference.json"], dataset_dir=str(dataset / "imagesTs"), output_dir=str(tmp_path)))
    seg = nib.load(str(tmp_path / "case_003_seg.nii.gz"))
    image = nib.load(str(dataset / "imagesTs" / "case_003.nii.gz"))
    assert seg.shape == image.shape
    np.testing.assert_allclose(seg.affine, image.affine, atol=1e-4)
    assert set(np.unique(np.asarray(seg.dataobj))) <= set(range(len(LABELS)))
