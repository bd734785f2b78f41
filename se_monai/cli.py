"""Command line interface ``se-monai`` (python-fire).

    se-monai segment IN.nii.gz OUT.nii.gz        label NIfTI from one image (sliding-window inference)
    se-monai train --dataset_dir DIR [--epochs N]  train the bundle on an MSD-layout dataset
    se-monai evaluate --dataset_dir DIR          Dice of the bundle's model on labelled test images
    se-monai prepare-data DIR                    write the offline ICBM152 brain-tissue dataset (MSD layout)
    se-monai demo [--output_dir DIR]             segment the real ICBM152 T1 and print grey/white-matter Dice
    se-monai bench [--json]                      time SEUNet, its reference formulation and MONAI's UNet
    se-monai equivariance [--json]               equivariance error of the Hermite and optimised bases, a plain CNN
    se-monai fit-basis --kernel_size K --effective_size E --scales [..]   fit and store an optimised basis
    se-monai experiment CONFIG [--output_dir DIR]   scale-generalisation experiment (resumable), results and plots
    se-monai plot-overlay RESULTS_DIR ARM_A ARM_B   image, ground truth and two models' predictions on a slice
    se-monai export-onnx OUT.onnx                 export the bundle's network to ONNX (dynamic batch and sizes)

Bad input ends with one line ``se-monai: error: <file>: <problem>`` on stderr and exit status 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import fire

from se_monai.io import InputError, check_nifti, check_output_path, staged_output_dir

__all__ = [
    "segment", "train", "evaluate", "prepare_data", "demo", "bench", "equivariance", "fit_basis", "experiment", "plot_overlay", "export_onnx", "main",
]  # fmt: skip


def _bundle_dir(bundle_dir: str | None) -> Path:
    from se_monai.workflows import default_bundle_dir

    if bundle_dir is None:
        return default_bundle_dir()
    path = Path(bundle_dir)
    if not (path / "configs" / "inference.json").is_file():
        raise InputError(f"{path}: not an se-monai bundle (no configs/inference.json)")
    return path


def segment(
    input: str,
    output: str,
    bundle_dir: str | None = None,
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    device: str | None = None,
    progress: bool = True,
) -> str:
    """Segment one NIfTI image with the bundle's SE-U-Net and write a label NIfTI (same shape and affine).

    Args:
        input: image (.nii or .nii.gz), 3-D or 4-D with one channel.
        output: label file to write (.nii or .nii.gz); must differ from ``input``.
        bundle_dir: the bundle folder (default: the one shipped with se-monai).
        overlap: sliding-window overlap (0..1).
        sw_batch_size: windows per forward pass.
        device: "cpu", "cuda", ... (default: CUDA if available).
        progress: show the sliding-window progress bar.

    Returns:
        The path written.
    """
    check_nifti(input)
    target = check_output_path(output, input)
    root = _bundle_dir(bundle_dir)
    if not (root / "models" / "model.pt").is_file():
        raise InputError(f"{root / 'models' / 'model.pt'}: no trained model in the bundle (run se-monai train)")
    from se_monai.workflows import run_bundle

    overrides: dict[str, Any] = {
        "datalist": [str(Path(input).resolve())],
        "inferer#overlap": float(overlap),
        "inferer#sw_batch_size": int(sw_batch_size),
        "inferer#progress": bool(progress),
        "postprocessing#transforms#3#output_ext": ".nii.gz" if target.name.endswith(".gz") else ".nii",
    }
    if device is not None:
        overrides["device"] = f"$torch.device('{device}')"
    with staged_output_dir(target) as staging:
        overrides["output_dir"] = str(staging)
        run_bundle(["inference.json"], bundle_dir=root, workflow_type="infer", **overrides)
        written = sorted(p for p in staging.iterdir() if p.name.endswith((".nii", ".nii.gz")))
        if len(written) != 1:
            raise RuntimeError(f"inference wrote {len(written)} files to {staging}, expected 1")
        os.replace(written[0], target)
    print(f"segmentation written to {target}")
    return str(target)


def train(dataset_dir: str, bundle_dir: str | None = None, **overrides: Any) -> None:
    """Train the bundle (``configs/train.json``) on an MSD-layout dataset.

    Args:
        dataset_dir: folder with ``dataset.json``, ``imagesTr/``, ``labelsTr/``.
        bundle_dir: bundle folder; the best checkpoint is written to ``<bundle_dir>/models/model.pt``.
        overrides: any train.json id, e.g. ``--epochs 10 --learning_rate 0.004``.
    """
    if not (Path(dataset_dir) / "dataset.json").is_file():
        raise InputError(f"{dataset_dir}: no dataset.json (expected the MSD layout)")
    from se_monai.workflows import run_bundle

    run_bundle(["train.json"], bundle_dir=_bundle_dir(bundle_dir), dataset_dir=str(dataset_dir), **overrides)


def evaluate(dataset_dir: str, bundle_dir: str | None = None, **overrides: Any) -> None:
    """Dice of the bundle's model on ``imagesTs/`` images that have labels in ``labelsTs/`` (metrics in eval/)."""
    from se_monai.workflows import run_bundle

    run_bundle(
        ["train.json", "evaluate.json"], bundle_dir=_bundle_dir(bundle_dir), workflow_type="infer",
        dataset_dir=str(dataset_dir), **overrides,
    )  # fmt: skip


def prepare_data(output_dir: str, num_subjects: int = 12, seed: int = 0) -> str:
    """Write the offline ICBM152 brain-tissue dataset in the MSD layout (see :mod:`se_monai.data`)."""
    from se_monai.data import prepare_brain_tissue_dataset

    if int(num_subjects) < 1:
        raise InputError(f"{output_dir}: --num_subjects must be at least 1, got {num_subjects}")
    path = prepare_brain_tissue_dataset(output_dir, num_subjects=num_subjects, seed=seed)
    print(f"dataset written: {path}")
    return str(path)


def demo(output_dir: str = "out/demo", bundle_dir: str | None = None) -> dict[str, float]:
    """Segment the real ICBM152 T1 with the shipped model and print grey/white-matter Dice against the template.

    Returns:
        ``{"grey matter": dice, "white matter": dice}``.
    """
    from se_monai.data import icbm152_paths, load_icbm152, tissue_labels
    from se_monai.workflows import label_dice

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / "icbm152_t1_seg.nii.gz"
    segment(str(icbm152_paths()["t1"]), str(target), bundle_dir=bundle_dir)
    _, gm, wm, _ = load_icbm152()
    import nibabel as nib

    scores = label_dice(nib.load(str(target)).get_fdata(), tissue_labels(gm, wm), {"grey matter": 1, "white matter": 2})
    for name, value in scores.items():
        print(f"Dice {name}: {value:.4f}")
    return scores


def bench(size: int = 64, repeats: int = 5, device: str = "cpu", threads: int | None = None, layers: bool = True,
          volume: bool = True, amp: bool = False, json: bool = False) -> None:  # fmt: skip
    """Time SEUNet, its reference formulation and MONAI's UNet baseline side by side (see se_monai.bench).

    Args:
        size: edge of the cubic 4-channel input (voxels, divisible by 8).
        repeats: timed repeats (median reported), after 2 warm-up repeats.
        device: torch device.
        threads: torch CPU threads (default: torch's choice).
        layers: include the per-layer forward breakdown.
        volume: include whole-volume sliding-window inference of the ICBM152 T1 at 1 mm.
        amp: also time SEUNet under autocast (bfloat16 on CPU, float16 on CUDA).
        json: print JSON instead of tables.
    """
    if int(size) % 8:
        raise InputError(f"--size {size}: must be divisible by 8 (SEUNet strides)")
    from se_monai import bench as benchmark

    report = benchmark.run(size=size, repeats=repeats, device=device, threads=threads, layers=layers, volume=volume,
                           amp=amp)
    if json:
        import json as json_module

        print(json_module.dumps(report, indent=2))
    else:
        print(benchmark.format_table(report))


def _floats(value: Any, name: str) -> list[float]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise InputError(f"--{name} {value}: expected a number or a list of numbers, e.g. [1,0.9,0.81]") from err


def equivariance(kernel_size: int = 9, effective_size: int = 3, scales: Any = None, size: int = 64,
                 factors: Any = (0.9, 0.81), interpolations: Any = ("cubic", "trilinear"), seeds: Any = (0, 1),
                 activation: str = "silu", integer: bool = True, network: bool = True,
                 json: bool = False) -> None:  # fmt: skip
    """Scale-equivariance error of the Hermite and optimised (disco) bases and a plain CNN (see se_monai.equivariance).

    Args:
        kernel_size, effective_size: of the SE convolutions.
        scales: Gaussian widths (voxels), e.g. [1,0.9,0.81,0.729] (default 0.9**i, i = 0..3).
        size: edge (voxels) of the smooth random test fields.
        factors: rescale factors, each a power of the ratio between consecutive scales.
        interpolations: resampling of the inputs and outputs: cubic, trilinear, nearest.
        seeds: random fields and weights to average over.
        activation: between the convolutions of the stack: silu or relu.
        integer: include scales (1, 2) with 2x subsampling.
        network: include the bundle's trained SEUNet end to end on the real T1.
        json: print JSON instead of tables.
    """
    from se_monai import equivariance as measure

    interpolations = [interpolations] if isinstance(interpolations, str) else list(interpolations)
    seeds = [int(v) for v in _floats(seeds, "seeds")]
    try:
        result = measure.report(kernel_size=int(kernel_size), effective_size=int(effective_size),
                                scales=None if scales is None else _floats(scales, "scales"), size=int(size),
                                factors=_floats(factors, "factors"), interpolations=interpolations, seeds=seeds,
                                activation=activation, integer=integer, network=network)  # fmt: skip
    except ValueError as err:
        raise InputError(f"equivariance: {err}") from err
    if json:
        import json as json_module

        print(json_module.dumps(result, indent=2))
    else:
        print(measure.format_table(result))


def fit_basis(kernel_size: int, effective_size: int, scales: Any, output_dir: str | None = None,
              interpolation: str = "cubic") -> str:  # fmt: skip
    """Fit the optimised (disco) basis for a configuration and store it (default: the cache se-monai reads).

    Args:
        kernel_size, effective_size: of the SE convolutions.
        scales: Gaussian widths (voxels), e.g. [1,0.9,0.81].
        output_dir: folder to write to (default ``$SE_MONAI_CACHE`` or ``~/.cache/se-monai/bases``).
        interpolation: resampling operator the loss uses (cubic, trilinear, nearest).

    Returns:
        The path written.
    """
    from se_monai import disco

    scale_list = _floats(scales, "scales")
    target = Path(output_dir) if output_dir is not None else disco.cache_dir()
    try:
        basis = disco.fit_disco_basis(int(kernel_size), scale_list, int(effective_size), interpolation, progress=True)
    except ValueError as err:
        raise InputError(f"fit-basis: {err}") from err
    path = target / disco.basis_filename(int(kernel_size), int(effective_size), scale_list, interpolation)
    disco.save_basis(basis, path)
    print(f"basis written to {path}")
    return str(path)


def experiment(config: str, output_dir: str | None = None, dataset_dir: str | None = None, plots: bool = True,
               progress: bool = True) -> str:  # fmt: skip
    """Run an experiment config (configs/scale_generalisation.json): train and test every arm, size and seed.

    Finished runs are kept and skipped, so the same command resumes an interrupted experiment.

    Args:
        config: the experiment's JSON file.
        output_dir: replaces the config's ``output_dir`` (runs, results.csv/json, plots).
        dataset_dir: replaces the config's ``dataset_dir`` (an MSD-layout dataset).
        plots: draw the Dice plots (PNG) from the results.
        progress: show the progress bar.

    Returns:
        The output folder.
    """
    from se_monai import experiment as runner

    try:
        settings = runner.load_config(config, output_dir=output_dir, dataset_dir=dataset_dir)
        results = runner.run_experiment(settings, progress=progress)
    except runner.ConfigError as err:
        raise InputError(str(err)) from err
    target = Path(settings["output_dir"])
    if plots:
        from se_monai import plots as plotting

        for path in plotting.plot_results(results, target, settings.get("test_scales")):
            print(f"plot written to {path}")
    print(runner.format_summary(results))
    print(f"results in {target / 'results.csv'} and {target / 'results.json'}")
    return str(target)


def plot_overlay(results_dir: str, arms: Any = ("seunet_mean_aug", "unet_paper_aug"), train_size: int | None = None,
                 seed: int = 0, scale: float = 0.7, axis: int = 2, index: int | None = None,
                 output: str | None = None) -> str:  # fmt: skip
    """Draw a test image, its ground truth and the predictions of two (or more) trained arms on one slice, voxels
    coloured as true positive, false positive and false negative (se_monai.plots.plot_overlay).

    Args:
        results_dir: an experiment's output folder (``se-monai experiment``).
        arms: arm names of the config, e.g. [seunet_mean_aug,unet_paper_aug].
        train_size: the runs' training-set size (default: the smallest of the experiment).
        seed: the runs' seed.
        scale: the test scale of the image.
        axis, index: slice across axis 0, 1 or 2 (default 2); index default: the slice with the most foreground.
        output: PNG to write (default ``<results_dir>/overlay_n<size>_scale<scale*100>.png``).

    Returns:
        The path written.
    """
    import json as json_module

    import nibabel as nib
    import numpy as np

    from se_monai import experiment as runner
    from se_monai import plots as plotting

    root = Path(results_dir)
    config_path = root / "config.json"
    if not config_path.is_file():
        raise InputError(f"{root}: not an experiment output folder (no config.json)")
    config = json_module.loads(config_path.read_text())
    arms = [arms] if isinstance(arms, str) else list(arms)
    size = int(train_size) if train_size is not None else min(config["train_sizes"])
    pairs = runner.scaled_test_pairs(root, scale)
    if not pairs:
        raise InputError(f"{root / 'test_scales'}: no test image at scale {scale}")
    image_path, label_path = pairs[0]
    target = Path(output) if output else root / f"overlay_n{size:03d}_{runner.scale_tag(scale)}.png"
    try:
        predictions = {
            f"{config['arms'][arm].get('model', arm)}{' + aug.' if config['arms'][arm]['augment'] else ''}":
                runner.predict(root, runner.run_name(arm, size, seed), image_path)
            for arm in arms
        }  # fmt: skip
    except KeyError as err:
        raise InputError(f"{config_path}: no arm {err} (arms: {', '.join(config['arms'])})") from err
    except runner.ConfigError as err:
        raise InputError(str(err)) from err
    image = np.asarray(nib.load(str(image_path)).dataobj, dtype=np.float32)
    truth = np.asarray(nib.load(str(label_path)).dataobj).astype(np.int64)
    try:
        written = plotting.plot_overlay(image, truth, predictions, target, axis=int(axis), index=index,
                                        title=f"{image_path.name}: test scale {scale:g}, {size} training subjects")
    except ValueError as err:
        raise InputError(f"{image_path}: {err}") from err
    print(f"overlay written to {written}")
    return str(written)


def export_onnx(output: str, bundle_dir: str | None = None, ckpt_file: str | None = None,
                input_shape: Any = (1, 1, 96, 96, 96), dynamic: bool = True, check: bool = True) -> str:  # fmt: skip
    """Export the bundle's network with its trained weights to ONNX (input ``image`` (B, 1, D, H, W), output
    ``logits`` (B, 3, D, H, W); D, H, W multiples of 8 when dynamic).

    Args:
        output: the .onnx file to write (an existing file is replaced only after a successful export).
        bundle_dir: the bundle folder (default: the one shipped with se-monai).
        ckpt_file: weights (default ``<bundle>/models/model.pt``).
        input_shape: example input (B, C, D, H, W).
        dynamic: free batch and spatial sizes.
        check: compare onnxruntime with the eager network on the example shape and print the difference.

    Returns:
        The path written.
    """
    from se_monai import export
    from se_monai.workflows import load_bundle_network

    root = _bundle_dir(bundle_dir)
    shape = tuple(int(v) for v in _floats(input_shape, "input_shape"))
    try:
        network = load_bundle_network(root, ckpt_file)
        written = export.export_onnx(output, network, input_shape=shape, dynamic=dynamic)
    except (ValueError, KeyError) as err:
        raise InputError(str(err).strip("'\"")) from err
    print(f"ONNX model written to {written}")
    if check:
        print(f"max |onnxruntime - eager| on {shape}: {export.check_onnx(written, network, shape):.2e}")
    return str(written)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``se-monai`` command."""
    commands = {
        "segment": segment,
        "train": train,
        "evaluate": evaluate,
        "prepare-data": prepare_data,
        "prepare_data": prepare_data,
        "demo": demo,
        "bench": bench,
        "equivariance": equivariance,
        "fit-basis": fit_basis,
        "fit_basis": fit_basis,
        "experiment": experiment,
        "plot-overlay": plot_overlay,
        "plot_overlay": plot_overlay,
        "export-onnx": export_onnx,
        "export_onnx": export_onnx,
    }
    try:
        fire.Fire(commands, command=argv, name="se-monai", serialize=lambda _: None)
    except (InputError, FileNotFoundError) as err:
        print(f"se-monai: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
