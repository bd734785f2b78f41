"""Bundles made by earlier versions keep working: their configs import names from modules that have moved since
(tests/data/bundle_0.3.4: the configs `se-monai train` wrote with bundle 0.3.4), and the former homes answer with a
DeprecationWarning and the very objects of the new ones."""

import importlib
import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_crops

from se_monai.segmentation import segment_image
from se_monai.workflows import SHIPPED_BUNDLE, run_bundle

OLD = Path(__file__).parent / "data" / "bundle_0.3.4"


@pytest.mark.parametrize(
    "old,new,name",
    [
        ("se_monai.sitk_io", "se_monai.io.sitk", "bundle_readers"),
        ("se_monai.sitk_io", "se_monai.io.sitk", "writer_for"),
        ("se_monai.plausibility", "se_monai.transforms.plausibility", "CheckPlausibilityd"),
        ("se_monai.synth", "se_monai.data.synth", "SynthSegSubjects"),
        ("se_monai.fingerprint", "se_monai.data.fingerprint", "dataset_fingerprint"),
        ("se_monai.dicom_seg", "se_monai.io.dicom_seg", "write_dicom_seg"),
    ],
)
def test_a_former_home_warns_and_gives_the_new_homes_objects(old, new, name):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_names_that_moved_out_of_a_module_that_stays_warn_too():
    import se_monai.data
    import se_monai.inferers
    import se_monai.transforms

    with pytest.warns(DeprecationWarning, match="se_monai.transforms.SizeAdaptiveSpacingd"):
        assert se_monai.inferers.SizeAdaptiveSpacingd is se_monai.transforms.SizeAdaptiveSpacingd
    with pytest.warns(DeprecationWarning, match="images_to_segment"), pytest.raises(FileNotFoundError):
        se_monai.data.list_nifti(OLD / "missing")
    with pytest.raises(AttributeError):
        se_monai.inferers.no_such_name  # noqa: B018


def test_a_bundle_made_with_0_3_4_segments_as_the_shipped_one(tmp_path):
    """Its configs and weights (three classes, tests/data/bundle_0.3.4/models) through segment, as the shipped configs
    with those weights and classes at the training spacing (magnification 1, which 0.3.4 had), and through its own
    evaluate.json over a test set."""
    bundle = tmp_path / "bundle"
    shutil.copytree(OLD, bundle)
    shipped = tmp_path / "shipped"
    shutil.copytree(SHIPPED_BUNDLE / "configs", shipped / "configs")
    shutil.copytree(OLD / "models", shipped / "models")
    inference = shipped / "configs" / "inference.json"
    old_classes = json.loads((OLD / "configs" / "inference.json").read_text())["class_names"]
    settings = {"magnification": 1.0, "num_classes": len(old_classes), "class_names": old_classes}
    settings["intensity_refinement"] = False  # 0.3.4 had no intensity refinement either
    inference.write_text(json.dumps({**json.loads(inference.read_text()), **settings}))
    crops = write_crops(tmp_path / "Task01" / "imagesTs")
    labels = {}
    for name, where in (("old", bundle), ("shipped", shipped)):
        out = segment_image(crops["ras"], tmp_path / f"{name}.nii.gz", bundle_dir=where, progress=False)
        labels[name] = np.asarray(nib.load(str(out)).dataobj)
    np.testing.assert_array_equal(labels["old"], labels["shipped"])
    assert set(np.unique(labels["old"]).tolist()) == {0, 1, 2}
    (tmp_path / "Task01" / "labelsTs").mkdir()
    shutil.copy(crops["labels"], tmp_path / "Task01" / "labelsTs" / crops["ras"].name)
    run_bundle(
        ["train.json", "evaluate.json"],
        bundle_dir=bundle,
        workflow_type="infer",
        quiet=True,
        dataset_dir=str(tmp_path / "Task01"),
        output_dir=str(tmp_path / "eval"),
        num_workers=0,
    )
    rows = (tmp_path / "eval" / "val_mean_dice_raw.csv").read_text().splitlines()
    assert len(rows) == 2 and 0.7 < float(rows[1].split(",")[-1]) <= 1.0
