"""The commands of ``se-monai`` (run through python-fire by :func:`se_monai.cli.main`): argument checks, one library or
apps call per command, printing (results on stdout; the engines' logs only with ``--verbose``). Each public function
is one command: its name (``_`` written ``-`` on the command line) is in ``__all__``, in the order ``se-monai
--help`` lists them, and the first line of its docstring is its summary there. Bad input raises
:class:`se_monai.io.InputError` (or FileNotFoundError), which the entry point prints as one line.
"""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Any

from se_monai.apps import bench as benchmark
from se_monai.apps import experiment as runner
from se_monai.apps import export as onnx_export
from se_monai.apps import plots as plotting
from se_monai.apps.demo import run_demo
from se_monai.apps.equivariance import format_table as format_equivariance
from se_monai.apps.equivariance import report as equivariance_report
from se_monai.bases import BASIS_TYPES, disco
from se_monai.bundles import bundle_plan, check_init_weights, record_network_overrides, training_bundle
from se_monai.data import GENERATORS, TISSUE_SOURCES, describe_plan, prepare_brain_tissue_dataset, training_subjects
from se_monai.engines import CasesFailed
from se_monai.io import InputError
from se_monai.segmentation import OUTPUT_SUFFIXES, segment_folder, segment_image
from se_monai.workflows import default_bundle_dir, load_bundle_network, resolve_bundle_dir, run_bundle

__all__ = [
    "segment",
    "train",
    "evaluate",
    "prepare_data",
    "demo",
    "bundle_dir",
    "bench",
    "equivariance",
    "fit_basis",
    "experiment",
    "plot_overlay",
    "export_onnx",
]


def segment(
    input: str,
    output: str,
    bundle_dir: str | None = None,
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    device: str | None = None,
    progress: Any = None,
    plausibility: str = "warn",
    series: str | None = None,
    statistics: Any = None,
    probabilities: Any = None,
    probabilities_dtype: str = "float32",
    tta: Any = False,
    amp: Any = None,
    output_ext: str = ".nii.gz",
    verbose: bool = False,
    brain_extraction: str | None = None,
) -> str:
    """Segment an image (NIfTI, NRRD, MetaImage, DICOM series) or a folder of them; labels on the input's grid.

    Args:
        input: image (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd) or DICOM series folder; or a folder of images and
            DICOM series (with an output folder).
        output: label file (.nii, .nii.gz, .nrrd, .mha; .dcm: a DICOM SEG of a DICOM series), not the input; or, for
            an input folder, an output folder (``<name>_seg<output_ext>`` per case; cases already done are skipped,
            failures listed, exit 2 if any).
        bundle_dir: the bundle folder (default: the one shipped with se-monai).
        overlap: sliding-window overlap (0..1).
        sw_batch_size: windows per forward pass.
        device: "cpu", "cuda", ... (default: CUDA if available).
        progress: the progress bar on stderr (default: when stderr is a terminal); --noprogress hides it.
        plausibility: tissue volumes outside the bundle's plausible ranges (another contrast, a partial field of
            view): "warn" (one line, the output is written), "raise" (an error, nothing written) or "off".
        series: the series instance UID to segment from a folder with several DICOM series.
        statistics: per-class voxels, volume (mL) and mean input intensity to this .json file (folders: a flag,
            ``<name>_statistics.json``).
        probabilities: class probabilities (refined softmax), a channel per class, to this image file (folders: a flag,
            ``<name>_prob<output_ext>``).
        probabilities_dtype: float32 or float16.
        tta: mirroring test-time augmentation: --tta over the bundle's axes (shipped: all three, 8 passes, about
            7x the time), --tta [0] over those axes (left-right only: 2 passes); off by default.
        amp: mixed precision: default float16 on CUDA, bfloat16 on CPUs with AMX; --amp (any CPU), --noamp (float32).
        output_ext: for folders: .nii.gz, .nii, .nrrd or .mha.
        verbose: also print the engine's logs and MONAI's warnings.
        brain_extraction: find a head's brain first (deepbet): "auto" (shipped bundle: heads only), "always", "never".

    Returns:
        The label file or folder written.
    """
    options = {"bundle_dir": bundle_dir, "overlap": overlap, "sw_batch_size": sw_batch_size, "device": device}
    options |= {"verbose": bool(verbose), "brain_extraction": brain_extraction}
    options |= {"plausibility": plausibility, "probabilities_dtype": probabilities_dtype, "tta": tta, "amp": amp}
    if Path(input).is_dir() and not Path(output).name.lower().endswith(OUTPUT_SUFFIXES):
        done = segment_folder(input, output, output_ext, bool(statistics), bool(probabilities), progress, **options)
        print(f"{len(done['written'])} written, {len(done['skipped'])} already there, {len(done['failed'])} failed")
        if done["failed"]:
            raise InputError(f"{len(done['failed'])} of {sum(map(len, done.values()))} inputs failed (listed above)")
        return str(output)
    options |= {"progress": progress, "series": series, "statistics": statistics, "probabilities": probabilities}
    target = segment_image(input, output, **options)
    written = {"segmentation": target, "statistics": statistics, "probabilities": probabilities}
    print("\n".join(f"{name} written to {path}" for name, path in written.items() if path is not None))
    return str(target)


def train(dataset_dir: str, bundle_dir: str | None = None, verbose: bool = False, **overrides: Any) -> None:
    """Train a bundle of your own on an MSD-layout dataset (made from the shipped bundle on first use).

    Args:
        dataset_dir: folder with ``dataset.json``, ``imagesTr/``, ``labelsTr/``.
        bundle_dir: the bundle to train (required; never the shipped one): created from the shipped one when it does
            not exist, with the dataset's channels and classes; its best checkpoint is ``<bundle_dir>/models/model.pt``.
        verbose: print the engines' logs (each iteration's loss, each validation) instead of a progress bar.
        overrides: any train.json id, e.g. ``--epochs 10``, ``--init_weights model.pt`` (fine-tuning: start from
            those weights, checked to fit first); those of the network (``--network_def#basis_type disco``) are also
            written into the bundle's train.json and inference.json, so that inference builds the network trained.
    """
    root = training_bundle(dataset_dir, bundle_dir)
    print(f"training the bundle {root}")
    for key in record_network_overrides(root, overrides):
        print(f"{key} = {overrides[key]!r} written into the bundle's train.json and inference.json")
    check_init_weights(root, overrides.get("init_weights"))
    values = bundle_plan(root)
    if values is not None:
        print(describe_plan(values) + " (explicit overrides win)")
    dataset = str(Path(dataset_dir).resolve())
    workflow, _ = _run(["train.json"], root, "train", verbose, dataset_dir=dataset, **overrides)
    state = workflow.parser.get_parsed_content("validate#evaluator").state
    print(f"best validation {state.key_metric_name} {state.best_metric:.4f} at epoch {state.best_metric_epoch}")
    print(f"model written to {Path(workflow.parser.get_parsed_content('ckpt_dir')) / 'model.pt'}")


def evaluate(dataset_dir: str, bundle_dir: str | None = None, verbose: bool = False, **overrides: Any) -> None:
    """Dice of the bundle's model on imagesTs/ images with labels in labelsTs/ (eval/: metrics, statistics.json).

    Args:
        dataset_dir: an MSD-layout dataset folder.
        bundle_dir: bundle folder (default: the one shipped with se-monai).
        verbose: print the engine's logs instead of a progress bar.
        overrides: any train.json or evaluate.json id.
    """
    root = resolve_bundle_dir(bundle_dir)
    configs = ["train.json", "evaluate.json"]
    workflow, failed = _run(configs, root, "infer", verbose, dataset_dir=str(dataset_dir), **overrides)
    for name, value in workflow.parser.get_parsed_content("validate#evaluator").state.metrics.items():
        print(f"{name}: {value:.4f}")  # of the cases that did not fail
    print(f"metrics written to {workflow.parser.get_parsed_content('output_dir')}")
    if failed is not None:
        raise InputError(str(failed))


def _run(configs: list[str], root: Path, workflow_type: str, verbose: bool, **overrides: Any) -> tuple[Any, Any]:
    """``(workflow, CasesFailed or None)`` of run_bundle, with a progress bar on a terminal and the engines' logs
    only when ``verbose``."""
    overrides.setdefault("progress", not verbose and sys.stderr.isatty())
    try:
        return run_bundle(configs, root, workflow_type, quiet=not verbose, **overrides), None
    except CasesFailed as failed:
        return failed.workflow, failed


def prepare_data(
    output_dir: str,
    num_subjects: int = 12,
    seed: int = 0,
    generator: str = "template",
    t1_prob: float = 0.0,
    strip_prob: float = 0.5,
    thickness_range: tuple[float, float] = (0.0, 0.0),
    csf: bool = False,
    tissue: str = "probability",
    partial_volume: int = 1,
) -> str:
    """Write the offline ICBM152 brain-tissue dataset in the MSD layout (see se_monai.data).

    Args:
        output_dir: folder to write (created if missing; existing files are kept).
        num_subjects: synthetic training subjects.
        seed: random seed; the same seed writes the same data.
        generator: "template" (the template deformed and recontrasted), "synthseg" (se_monai.data.synth: random
            contrasts, resolutions and sizes 0.6-1.5, with a head around some of the brains) or "mixed" (the two in
            turn; the shipped model's data with ``--num_subjects 24 --t1_prob 1``).
        t1_prob, strip_prob, thickness_range, partial_volume: with "synthseg" or "mixed", the fraction of SynthSeg-style
            subjects in T1 contrast order (CSF < grey < white matter; else any contrast), the fraction skull-stripped
            (others: a head), e.g. ``"(-1,2)"``: voxels white matter grows into grey matter (<0: back), and e.g. 2:
            label maps painted at half the voxel size and averaged back (partial volume; 1: painted per voxel).
        csf: label CSF as class 3 (other 0, grey matter 1, white matter 2 keep their values).
        tissue: "probability" (tissue classes of the template's probability maps) or "intensity" (following its T1's
            intensities: a thinner cortex, se_monai.data.intensity_tissue_maps).
    """
    for name, value in (("num_subjects", num_subjects), ("partial_volume", partial_volume)):
        if int(value) < 1:
            raise InputError(f"{output_dir}: --{name} must be at least 1, got {value}")
    for name, value, choices in (("generator", generator, GENERATORS), ("tissue", tissue, TISSUE_SOURCES)):
        if value not in choices:
            raise InputError(f"--{name} {value}: expected one of {', '.join(choices)}")
    for name, value in (("t1_prob", t1_prob), ("strip_prob", strip_prob)):
        if not 0.0 <= float(value) <= 1.0:
            raise InputError(f"{output_dir}: --{name} must be in 0..1, got {value}")
    thickness = tuple(_floats(thickness_range, "thickness_range"))
    if len(thickness) != 2 or thickness[0] > thickness[1]:
        raise InputError(f"--thickness_range {thickness_range}: expected two numbers (low, high), low <= high")
    synthseg = {"t1_prob": t1_prob, "strip_prob": strip_prob, "thickness_range": thickness}
    subjects = training_subjects(generator, bool(csf), tissue, partial_volume=int(partial_volume), **synthseg)
    path = prepare_brain_tissue_dataset(output_dir, num_subjects=num_subjects, seed=seed, subjects=subjects)
    print(f"dataset written: {path}")
    return str(path)


def demo(output_dir: str = "out/demo", bundle_dir: str | None = None, verbose: bool = False) -> dict[str, float]:
    """Segment the real ICBM152 T1 with the shipped model and print grey/white-matter Dice against the template.

    Args:
        output_dir: folder for ``icbm152_t1_seg.nii.gz``.
        bundle_dir: bundle folder (default: the one shipped with se-monai).
        verbose: also print the engine's logs and MONAI's warnings.

    Returns:
        ``{"grey matter": dice, "white matter": dice}``.
    """
    target, scores = run_demo(output_dir, bundle_dir, verbose=verbose)
    print(f"segmentation written to {target}")
    for name, value in scores.items():
        print(f"Dice {name}: {value:.4f}")
    return scores


def bundle_dir() -> str:
    """Print the folder of the bundle se-monai uses: $SE_MONAI_BUNDLE, else the one shipped inside the package.

    Copy it to start a bundle of your own: ``cp -r "$(se-monai bundle-dir)" my_bundle``. Returns the folder.
    """
    path = default_bundle_dir()
    print(path)
    return str(path)


def bench(
    size: int = 64,
    repeats: int = 5,
    device: str = "cpu",
    threads: int | None = None,
    layers: bool = True,
    volume: bool = True,
    amp: bool = False,
    memory: bool = True,
    json: bool = False,
    basis_type: str = "multi",
) -> None:
    """Time SEUNet beside our re-implementation of the paper's formulation, the reference and MONAI's UNet baseline.

    Also reports each model's multiply-adds per voxel and GFLOP/s, and a dense conv3d's GFLOP/s on this machine.

    Args:
        size: edge of the cubic 4-channel input (voxels, divisible by 8).
        repeats: timed repeats (median reported), after 2 warm-up repeats.
        device: torch device.
        threads: torch CPU threads (default: torch's choice).
        layers: include the per-layer forward breakdown.
        volume: include whole-volume sliding-window inference of the ICBM152 T1 at 1 mm.
        amp: also time SEUNet under autocast (bfloat16 on CPU, float16 on CUDA).
        memory: measure each model's training-step memory (on CPU in a fresh process per model).
        json: print JSON instead of tables.
        basis_type: SEUNet's basis: "multi" (the paper's configuration), "disco" (the shipped model's), "single".
    """
    if int(size) % 8:
        raise InputError(f"--size {size}: must be divisible by 8 (SEUNet strides)")
    if basis_type not in BASIS_TYPES:
        raise InputError(f"--basis_type {basis_type}: expected one of {', '.join(BASIS_TYPES)}")
    settings = {"size": size, "repeats": repeats, "device": device, "threads": threads, "layers": layers}
    report = benchmark.run(**settings, volume=volume, amp=amp, memory=memory, basis_type=basis_type)
    print(jsonlib.dumps(report, indent=2) if json else benchmark.format_table(report))


def _floats(value: Any, name: str) -> list[float]:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise InputError(f"--{name} {value}: expected a number or a list of numbers, e.g. [1,0.9,0.81]") from err


def equivariance(
    kernel_size: int = 9,
    effective_size: int = 3,
    scales: Any = None,
    size: int = 64,
    factors: Any = (0.9, 0.81),
    interpolations: Any = ("cubic", "trilinear"),
    seeds: Any = (0, 1),
    activation: str = "silu",
    integer: bool = True,
    network: bool = True,
    json: bool = False,
) -> None:
    """Scale-equivariance error of the Hermite and optimised (disco) bases and a plain CNN (se_monai.apps.equivariance).

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
    settings = {"kernel_size": int(kernel_size), "effective_size": int(effective_size), "size": int(size)}
    settings |= {"scales": None if scales is None else _floats(scales, "scales"), "integer": integer}
    settings |= {"interpolations": [interpolations] if isinstance(interpolations, str) else list(interpolations)}
    settings |= {"seeds": [int(v) for v in _floats(seeds, "seeds")], "factors": _floats(factors, "factors")}
    settings |= {"activation": activation, "network": network}
    try:
        result = equivariance_report(**settings)
    except ValueError as err:
        raise InputError(f"equivariance: {err}") from err
    print(jsonlib.dumps(result, indent=2) if json else format_equivariance(result))


def fit_basis(
    kernel_size: int, effective_size: int, scales: Any, output_dir: str | None = None, interpolation: str = "cubic"
) -> str:
    """Fit the optimised (disco) basis for a configuration and store it (default: the cache se-monai reads).

    Args:
        kernel_size, effective_size: of the SE convolutions.
        scales: Gaussian widths (voxels), e.g. [1,0.9,0.81].
        output_dir: folder to write to (default ``$SE_MONAI_CACHE`` or ``~/.cache/se-monai/bases``).
        interpolation: resampling operator the loss uses (cubic, trilinear, nearest).

    Returns:
        The path written.
    """
    scale_list = _floats(scales, "scales")
    try:
        path = disco.fit_to_file(int(kernel_size), scale_list, int(effective_size), interpolation, output_dir)
    except ValueError as err:
        raise InputError(f"fit-basis: {err}") from err
    except OSError as err:
        raise InputError(f"{output_dir}: cannot write the basis ({err.strerror or err})") from err
    print(f"basis written to {path}")
    return str(path)


def experiment(
    config: str,
    output_dir: str | None = None,
    dataset_dir: str | None = None,
    plots: bool = True,
    progress: bool = True,
) -> str:
    """Run an experiment config (configs/scale_generalisation.json): train and test every arm, size and seed.

    Args:
        config: the experiment's JSON file.
        output_dir: replaces the config's ``output_dir`` (runs, results.csv/json, plots).
        dataset_dir: replaces the config's ``dataset_dir`` (an MSD-layout dataset).
        plots: draw the Dice plots (PNG) from the results.
        progress: the progress bar on stderr (default: when stderr is a terminal); --noprogress hides it.

    Returns:
        The output folder. Finished runs are kept and skipped, so the same command resumes an interrupted experiment.
    """
    try:
        settings = runner.load_config(config, output_dir=output_dir, dataset_dir=dataset_dir)
        results = runner.run_experiment(settings, progress=progress)
    except runner.ConfigError as err:
        raise InputError(str(err)) from err
    target = Path(settings["output_dir"])
    if plots:
        for path in plotting.plot_results(results, target, settings.get("test_scales")):
            print(f"plot written to {path}")
    print(runner.format_summary(results))
    print(f"results in {target / 'results.csv'} and {target / 'results.json'}")
    return str(target)


def plot_overlay(
    results_dir: str,
    arms: Any = ("seunet_mean_aug", "unet_paper_aug"),
    train_size: int | None = None,
    seed: int = 0,
    scale: float = 0.7,
    axis: int = 2,
    index: int | None = None,
    output: str | None = None,
) -> str:
    """Draw a test image, its ground truth and two (or more) trained arms' predictions on one slice (TP/FP/FN colours).

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
    arm_list = [arms] if isinstance(arms, str) else list(arms)
    written = plotting.plot_run_overlay(results_dir, arm_list, train_size, int(seed), float(scale), axis, index, output)
    print(f"overlay written to {written}")
    return str(written)


def export_onnx(
    output: str,
    bundle_dir: str | None = None,
    ckpt_file: str | None = None,
    input_shape: Any = (1, 1, 96, 96, 96),
    dynamic: bool = True,
    check: bool = True,
) -> str:
    """Export the bundle's network with its trained weights to ONNX (dynamic batch and sizes).

    The graph maps ``image`` (B, 1, D, H, W) to ``logits`` (B, K, D, H, W), K classes (D, H, W multiples of 8).

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
    root = resolve_bundle_dir(bundle_dir)
    shape = tuple(int(v) for v in _floats(input_shape, "input_shape"))
    try:
        network = load_bundle_network(root, ckpt_file)
        written = onnx_export.export_onnx(output, network, input_shape=shape, dynamic=dynamic)
    except (ValueError, KeyError) as err:
        raise InputError(str(err).strip("'\"")) from err
    print(f"ONNX model written to {written}")
    if check:
        print(f"max |onnxruntime - eager| on {shape}: {onnx_export.check_onnx(written, network, shape):.2e}")
    return str(written)
