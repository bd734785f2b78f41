"""The demo: the shipped model segments the real ICBM152 T1 (held out from its training data), scored against the
template's tissue labels."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib

from se_monai.data import LABELS, icbm152_paths, load_icbm152, tissue_labels
from se_monai.metrics import label_dice
from se_monai.segmentation import segment_image

__all__ = ["run_demo"]


def run_demo(
    output_dir: str | os.PathLike = "out/demo",
    bundle_dir: str | os.PathLike | None = None,
    progress: bool | None = None,
    verbose: bool = False,
) -> tuple[Path, dict[str, float]]:
    """Segment the ICBM152 T1 into ``<output_dir>/icbm152_t1_seg.nii.gz`` and score it (``progress`` and
    ``verbose``: of :func:`se_monai.segmentation.segment_image`).

    Returns:
        The segmentation written and ``{"grey matter": Dice, "white matter": Dice}``.

    Raises:
        InputError, FileNotFoundError: as :func:`se_monai.segmentation.segment_image`; the template is not installed.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t1 = icbm152_paths()["t1"]
    target = segment_image(t1, out / "icbm152_t1_seg.nii.gz", bundle_dir, progress=progress, verbose=verbose)
    _, gm, wm, _ = load_icbm152()
    tissues = {name: int(value) for value, name in LABELS.items() if int(value) > 0}
    return target, label_dice(nib.load(str(target)).get_fdata(), tissue_labels(gm, wm), tissues)
