"""Mirroring test-time augmentation of the shipped model: what ``se-monai segment --tta`` costs and buys.

The real ICBM152 T1 at 1 mm (the demo's image; held out from training) segmented by ``segment_image`` without TTA,
with ``tta=[0]`` (left-right, the only flip in train.json's augmentation; 2 passes) and with ``tta=True`` (the
bundle's ``tta_axes``, all three axes: the 8 mirror images, as nnU-Net mirrors by default), each
timed once (wall clock, the whole command: reading, inference, writing), Dice against the template's tissue labels
and voxels changed against no TTA.

    .venv/bin/python studies/tta_study.py            # about 2 minutes on 2 CPU cores
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from se_monai.data import LABELS, icbm152_paths, load_icbm152, tissue_labels
from se_monai.metrics import label_dice
from se_monai.segmentation import segment_image

SETTINGS = {"none": False, "left-right": [0], "all three axes (bundle default)": True}


def main() -> None:
    _, gm, wm, _ = load_icbm152()
    truth = tissue_labels(gm, wm)
    tissues = {name: int(value) for value, name in LABELS.items() if int(value) > 0}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| TTA | passes | time (s) | Dice GM | Dice WM | voxels changed vs none |")
    print("|---|---|---|---|---|---|")
    reference = None
    with tempfile.TemporaryDirectory() as folder:
        for name, tta in SETTINGS.items():
            start = time.perf_counter()
            path = segment_image(icbm152_paths()["t1"], Path(folder) / "seg.nii.gz", progress=False, tta=tta)
            seconds = time.perf_counter() - start
            labels = np.asarray(nib.load(str(path)).dataobj)
            reference = labels if reference is None else reference
            dice = label_dice(labels, truth, tissues)
            passes = 1 if tta is False else 8 if tta is True else 2 ** len(tta)
            changed = float(np.mean(labels != reference))
            print(
                f"| {name} | {passes} | {seconds:.1f} | {dice['grey matter']:.4f} | {dice['white matter']:.4f} "
                f"| {100 * changed:.2f} % |"
            )


if __name__ == "__main__":
    main()
