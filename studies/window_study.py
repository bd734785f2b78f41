"""How much the shipped model's labels depend on the sliding window: larger sliding-window batches,
cheaper blending, and whether labels stay within Dice 1e-3 of the default's.

The ICBM152 T1 at 1 mm, z-scored over its non-zero voxels with the zeros kept (as the bundle's
``NormalizeIntensityd(nonzero=True)`` leaves them), the whole 197 x 233 x 189 grid as ``se-monai bench`` times it,
the shipped network (``bundle/configs/inference.json`` with ``models/model.pt``) under MONAI's
``SlidingWindowInferer`` with the bundle's windowing (96^3, overlap 0.25, constant blending) and with others:
fewer, larger windows, less overlap, Gaussian blending, one window for the whole volume. For each: wall time,
Dice and changed voxels against the bundle's windowing, and Dice against the template's own labels (argmax of its
tissue maps) inside the brain, where the bundle masks its output.

    .venv/bin/python studies/window_study.py            # about 3 minutes on 2 CPU cores
"""

from __future__ import annotations

import time

import fire
import torch
from monai.inferers import SlidingWindowInferer

from se_monai.data import load_icbm152, tissue_labels
from se_monai.metrics import label_dice
from se_monai.workflows import load_bundle_network

CLASSES = {"GM": 1, "WM": 2}
#: (roi_size, overlap, blending mode); the first is the bundle's.
WINDOWS = (
    ((96, 96, 96), 0.25, "constant"),
    ((96, 96, 96), 0.25, "gaussian"),
    ((128, 128, 128), 0.25, "constant"),
    ((112, 128, 112), 0.1, "constant"),
    ((104, 120, 96), 0.0, "constant"),
    ((64, 64, 64), 0.25, "gaussian"),
    ((200, 240, 192), 0.0, "constant"),
)


def main(threads: int = 2) -> None:
    torch.set_num_threads(threads)
    network = load_bundle_network().eval()
    t1, gm, wm, _ = load_icbm152()
    t1 = torch.from_numpy(t1).float()
    brain = t1 != 0
    image = torch.where(brain, (t1 - t1[brain].mean()) / t1[brain].std(), 0.0)[None, None]
    truth = tissue_labels(gm, wm)
    rows, reference = [], None
    for roi, overlap, mode in WINDOWS:
        inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=1, overlap=overlap, mode=mode)
        with torch.no_grad():
            start = time.perf_counter()
            labels = (inferer(image, network).argmax(1)[0] * brain).numpy()
            seconds = time.perf_counter() - start
        reference = labels if reference is None else reference
        rows.append((roi, overlap, mode, seconds, labels))
    print(f"ICBM152 T1 {tuple(image.shape[2:])}, shipped model, {threads} threads, torch {torch.__version__}")
    print(
        "| window | overlap | blending | seconds | Dice GM / WM vs the bundle's windowing | voxels changed "
        "| Dice GM / WM vs template labels |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for roi, overlap, mode, seconds, labels in rows:
        same = label_dice(labels, reference, CLASSES)
        true = label_dice(labels, truth, CLASSES)
        changed = int((labels != reference).sum())
        print(
            f"| {'x'.join(map(str, roi))} | {overlap} | {mode} | {seconds:.2f} | {same['GM']:.4f} / {same['WM']:.4f} "
            f"| {changed} | {true['GM']:.4f} / {true['WM']:.4f} |"
        )


if __name__ == "__main__":
    fire.Fire(main)
