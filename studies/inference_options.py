"""Whole-volume inference of the shipped model by four CPU engines, measured rather than assumed.

The ICBM152 T1 at 1 mm (z-scored over its non-zero voxels, as ``se-monai bench`` does), MONAI's
``SlidingWindowInferer`` with the bundle's window (96^3, overlap 0.25, one window per batch), and the shipped
network (``bundle/configs/inference.json`` with ``models/model.pt``) evaluated by: eager PyTorch in float32 (what
the bundle runs), eager under bfloat16 autocast, ``torch.compile`` (inductor; its compile time reported apart) and
ONNX Runtime (CPU execution provider, the ``se-monai export-onnx`` graph for a 96^3 window), each after one
untimed warm-up window. Each engine's labels
are compared with the float32 ones (Dice per class and voxels changed). Needs the ``export`` extra (onnxruntime).

    .venv/bin/python studies/inference_options.py            # about 5 minutes on 2 CPU cores
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import onnxruntime
import torch
from monai.inferers import SlidingWindowInferer

from se_monai.apps.export import export_onnx
from se_monai.data import load_icbm152
from se_monai.inferers import AutocastNetwork
from se_monai.metrics import label_dice
from se_monai.workflows import load_bundle_network

WINDOW = (96, 96, 96)


def _onnx_predictor(network: torch.nn.Module, folder: Path, threads: int):
    path = export_onnx(folder / "se_unet.onnx", network=network, input_shape=(1, 1, *WINDOW), dynamic=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(["logits"], {"image": x.numpy()})[0])


def main(threads: int = 2) -> None:
    torch.set_num_threads(threads)
    network = load_bundle_network().eval()
    t1 = torch.from_numpy(load_icbm152()[0]).float()
    image = ((t1 - t1[t1 != 0].mean()) / t1[t1 != 0].std())[None, None]
    inferer = SlidingWindowInferer(roi_size=WINDOW, sw_batch_size=1, overlap=0.25)

    def segment(predictor) -> tuple[torch.Tensor, float]:
        with torch.no_grad():
            predictor(image[..., : WINDOW[0], : WINDOW[1], : WINDOW[2]].contiguous())  # warm-up, untimed
            start = time.perf_counter()
            labels = inferer(image, predictor).argmax(1)[0]
            return labels, time.perf_counter() - start

    reference, seconds = segment(network)
    rows = [("eager float32 (the bundle's)", seconds, reference, None)]
    labels, seconds = segment(AutocastNetwork(network, "cpu"))
    rows.append(("eager, bfloat16 autocast", seconds, labels, None))
    compiled = torch.compile(network, dynamic=False)
    start = time.perf_counter()
    with torch.no_grad():
        compiled(image[..., : WINDOW[0], : WINDOW[1], : WINDOW[2]].contiguous())
    compile_s = time.perf_counter() - start
    labels, seconds = segment(compiled)
    rows.append(("torch.compile (inductor)", seconds, labels, compile_s))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        predictor = _onnx_predictor(network, Path(folder), threads)
        export_s = time.perf_counter() - start
        labels, seconds = segment(predictor)
    rows.append(("ONNX Runtime (CPU)", seconds, labels, export_s))
    print(
        f"ICBM152 T1 {tuple(image.shape[2:])}, windows {WINDOW}, overlap 0.25, {threads} threads, "
        f"torch {torch.__version__}"
    )
    print(
        "| engine | whole volume (s) | vs eager float32 | one-off set-up (s) | Dice GM / WM vs float32 "
        "| voxels changed |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    base = rows[0][1]
    for name, seconds, labels, setup in rows:
        scores = label_dice(labels.numpy(), reference.numpy(), {"GM": 1, "WM": 2})
        changed = int((labels != reference).sum())
        extra = f"{setup:.0f}" if setup is not None else "-"
        dice = f"{scores['GM']:.5f} / {scores['WM']:.5f}"
        print(f"| {name} | {seconds:.2f} | {base / seconds:.2f}x | {extra} | {dice} | {changed} |")


if __name__ == "__main__":
    main()
