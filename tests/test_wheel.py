"""se-monai as users get it: the wheel, installed into a fresh folder, used from outside the repository."""

import nibabel as nib
import numpy as np
from helpers import run_installed, write_crops


def test_the_wheel_carries_the_bundle_and_bases(installed):
    package = installed["target"] / "se_monai"
    done = run_installed(installed, "-c", "import se_monai; print(se_monai.__file__)")
    assert done.stdout.strip() == str(package / "__init__.py")  # the installed copy, not the source tree
    for name in ("configs/inference.json", "configs/train.json", "configs/metadata.json", "models/model.pt", "LICENSE"):
        assert (package / "bundle" / name).is_file() and not (package / "bundle" / name).is_symlink()
    assert len(list((package / "bases" / "data").glob("disco_*.npz"))) == 2
    done = run_installed(installed, "-m", "se_monai.cli", "bundle-dir")
    assert done.returncode == 0 and done.stdout.strip() == str(package / "bundle")


def test_segment_and_monai_bundle_run_from_outside_the_repository(installed, tmp_path):
    crops = write_crops(tmp_path / "scans")
    out = installed["cwd"] / "seg.nii.gz"
    done = run_installed(installed, "-m", "se_monai.cli", "segment", str(crops["lps"]), str(out), "--progress", "False")
    assert done.returncode == 0, done.stderr[-2000:]
    assert nib.load(str(out)).shape == nib.load(str(crops["lps"])).shape
    config = installed["target"] / "se_monai" / "bundle" / "configs" / "inference.json"
    labels = installed["cwd"] / "labels"
    done = run_installed(
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
