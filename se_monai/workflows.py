"""Running the se-monai bundle's MONAI/Ignite workflows (train, evaluate, inference) from Python.

The workflows themselves are declared in ``bundle/configs/*.json`` (MONAI's SupervisedTrainer and
SupervisedEvaluator with handlers); this module finds the bundle, merges configs and overrides, runs them with
``monai.bundle.ConfigWorkflow``, loads the trained network, and segments one image with the inference config.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from se_monai.io import InputError, check_nifti, check_output_path, is_nifti
from se_monai.ops.atomic import TEMPORARY_PREFIX, atomic_write
from se_monai.plausibility import ACTIONS
from se_monai.sitk_io import LABEL_SUFFIXES, label_statistics, needs_sitk, read_image, write_on_grid

__all__ = [
    "BUNDLE_ENV",
    "SHIPPED_BUNDLE",
    "default_bundle_dir",
    "resolve_bundle_dir",
    "find_bundle_root",
    "bundle_settings",
    "run_bundle",
    "load_bundle_network",
    "segment_image",
]

#: Environment variable that points se-monai at a bundle other than the one beside the package.
BUNDLE_ENV = "SE_MONAI_BUNDLE"
#: The bundle shipped inside the package.
SHIPPED_BUNDLE = Path(__file__).resolve().parent / "bundle"
#: Files that make a folder an se-monai bundle.
_BUNDLE_FILES = ("configs/metadata.json", "configs/inference.json")


def _is_bundle(path: Path) -> bool:
    return all((path / name).is_file() for name in _BUNDLE_FILES)


def default_bundle_dir() -> Path:
    """The bundle to use: ``$SE_MONAI_BUNDLE`` if set, else the bundle shipped inside the package
    (``se_monai/bundle``, a link to ``bundle/`` in the source tree).

    Raises:
        FileNotFoundError: ``$SE_MONAI_BUNDLE`` or the shipped bundle is not a bundle folder.
    """
    path = Path(os.environ[BUNDLE_ENV]) if os.environ.get(BUNDLE_ENV) else SHIPPED_BUNDLE
    if not _is_bundle(path):
        source = f"${BUNDLE_ENV}" if os.environ.get(BUNDLE_ENV) else "the shipped bundle"
        raise FileNotFoundError(f"{path}: no se-monai bundle there ({source}; it needs {' and '.join(_BUNDLE_FILES)})")
    return path.resolve()


def resolve_bundle_dir(bundle_dir: str | os.PathLike | None = None) -> Path:
    """``bundle_dir`` when it is a bundle folder, or :func:`default_bundle_dir` when it is None.

    Raises:
        InputError: ``bundle_dir`` lacks ``configs/metadata.json`` or ``configs/inference.json``.
        FileNotFoundError: no default bundle (see :func:`default_bundle_dir`).
    """
    if bundle_dir is None:
        return default_bundle_dir()
    path = Path(bundle_dir)
    missing = [name for name in _BUNDLE_FILES if not (path / name).is_file()]
    if missing:
        raise InputError(f"{path}: not an se-monai bundle (no {' or '.join(missing)})")
    return path


def find_bundle_root() -> str:
    """Default ``bundle_root`` of the configs: "." when run from inside a bundle folder (the model-zoo
    convention), else :func:`default_bundle_dir`, so ``python -m monai.bundle run --config_file
    bundle/configs/inference.json`` also works from the repository root."""
    if _is_bundle(Path(".")):
        return "."
    return str(default_bundle_dir())


def bundle_settings(bundle_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """``{"in_channels": C, "num_classes": K}`` of a bundle's network, from its ``configs/inference.json``.

    Raises:
        InputError, FileNotFoundError: not a bundle (see :func:`resolve_bundle_dir`).
    """
    parser = ConfigParser()
    parser.read_config(str(resolve_bundle_dir(bundle_dir) / "configs" / "inference.json"))
    return {
        "in_channels": int(parser.get_parsed_content("network_def#in_channels")),
        "num_classes": int(parser.get_parsed_content("network_def#out_channels")),
    }


def run_bundle(
    configs: Sequence[str],
    bundle_dir: str | os.PathLike | None = None,
    workflow_type: str = "train",
    quiet: bool = False,
    **overrides: Any,
) -> ConfigWorkflow:
    """Run bundle configs, e.g. ``run_bundle(["train.json"], epochs=2, dataset_dir="data/icbm152")``.

    Args:
        configs: config file names inside ``<bundle>/configs`` (later files override earlier ones), or paths.
        bundle_dir: the bundle folder; default :func:`default_bundle_dir`.
        workflow_type: "train" or "infer" (MONAI's ConfigWorkflow type; "infer" also serves evaluation).
        quiet: skip the bundle's logging.conf and silence INFO logs while the workflow runs (warnings still show).
        overrides: config ids and their values; ids with ``#`` go through a dict
            (``run_bundle(cfgs, **{"validate#inferer#overlap": 0.5})``).

    Returns:
        The finished workflow; resolved components via ``wf.parser.get_parsed_content("train#trainer")``.

    Raises:
        InputError, FileNotFoundError: no bundle (see :func:`resolve_bundle_dir`); errors of the configs' components.
    """
    root = resolve_bundle_dir(bundle_dir)
    files = [str(p if Path(p).is_file() else root / "configs" / p) for p in configs]
    overrides.setdefault("bundle_root", str(root))
    previous = logging.root.manager.disable
    if quiet:
        logging.disable(logging.WARNING)  # ConfigWorkflow warns that it skips the logging file
    try:
        workflow = ConfigWorkflow(
            config_file=files if len(files) > 1 else files[0],
            meta_file=str(root / "configs" / "metadata.json"),
            logging_file=False if quiet else str(root / "configs" / "logging.conf"),
            workflow_type=workflow_type,
            **overrides,
        )
        if quiet:
            logging.disable(logging.INFO)
        workflow.initialize()
        workflow.run()
        workflow.finalize()
    finally:
        logging.disable(previous)
    return workflow


def load_bundle_network(
    bundle_dir: str | os.PathLike | None = None,
    ckpt_file: str | os.PathLike | None = None,
    config_file: str = "inference.json",
) -> torch.nn.Module:
    """The bundle's ``network_def`` with the weights of ``ckpt_file`` (default ``<bundle>/models/model.pt``), in
    eval mode on the CPU.

    Raises:
        FileNotFoundError: no checkpoint.
        KeyError: the checkpoint's keys do not match the network.
    """
    root = resolve_bundle_dir(bundle_dir)
    ckpt = Path(ckpt_file) if ckpt_file is not None else root / "models" / "model.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no checkpoint")
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / config_file))
    parser["bundle_root"] = str(root)
    network = parser.get_parsed_content("network_def", instantiate=True)
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a nested checkpoint {"model": ..., "optimizer": ...}
    try:
        network.load_state_dict(state)
    except RuntimeError as err:
        raise KeyError(f"{ckpt}: does not fit the bundle's network_def ({str(err).splitlines()[0]})") from err
    return network.eval()


def segment_image(
    input: str | os.PathLike,
    output: str | os.PathLike,
    bundle_dir: str | os.PathLike | None = None,
    overlap: float = 0.25,
    sw_batch_size: int = 1,
    device: str | None = None,
    progress: bool = True,
    plausibility: str = "warn",
    series: str | None = None,
    statistics: str | os.PathLike | None = None,
) -> Path:
    """Segment one image with the bundle's ``inference.json`` and write the label image atomically, on the input's
    grid (same shape and affine; for NRRD, MetaImage and DICOM inputs the same size, spacing, origin and direction).

    Args:
        input: image (.nii or .nii.gz), 3-D, or 4-D with the bundle's number of channels last; or, for a
            one-channel model, a 3-D .nrrd, .nhdr, .mha or .mhd file or a DICOM series folder
            (:mod:`se_monai.sitk_io`).
        output: label file to write (.nii, .nii.gz, .nrrd or .mha); must differ from ``input``.
        bundle_dir: the bundle folder (default :func:`default_bundle_dir`).
        overlap, sw_batch_size, progress: of the sliding-window inferer.
        device: "cpu", "cuda", ... (default: the config's, CUDA if available).
        plausibility: what to do when the tissue volumes are outside the bundle's ranges
            (:mod:`se_monai.plausibility`): "warn" (one log line, the output is written), "raise" or "off".
        series: the DICOM series instance UID, for a folder with several series.
        statistics: a .json file to write per class (by the bundle's class names): voxels, volume in mL and mean
            input intensity (:func:`se_monai.sitk_io.label_statistics`), written after the labels.

    Returns:
        The path written.

    Raises:
        InputError: a bad input or output path (see :func:`se_monai.io.check_nifti`), not a bundle, a bundle
            without ``models/model.pt``, or an unknown ``plausibility``.
        se_monai.plausibility.ImplausibleSegmentation: with ``plausibility="raise"`` (an InputError raised inside
            the bundle's transforms, unwrapped from MONAI's RuntimeError); nothing is written.
    """
    if plausibility not in ACTIONS:
        raise InputError(f"--plausibility {plausibility}: expected one of {', '.join(ACTIONS)}")
    root = resolve_bundle_dir(bundle_dir)
    channels = bundle_settings(root)["in_channels"]
    reference = _read_other_format(input, channels, series) if needs_sitk(input) else None
    if reference is None:
        check_nifti(input, channels=channels)
    target = _check_outputs(output, input, statistics)
    if not (root / "models" / "model.pt").is_file():
        raise InputError(f"{root / 'models' / 'model.pt'}: no trained model in the bundle (run se-monai train)")
    overrides: dict[str, Any] = {
        "datalist": [str(Path(input).resolve())],
        "inferer#overlap": float(overlap),
        "inferer#sw_batch_size": int(sw_batch_size),
        "inferer#progress": bool(progress),
        "plausibility_action": plausibility,
        "output_ext": ".nii" if target.name.endswith(".nii") else ".nii.gz",
    }
    if device is not None:
        overrides["device"] = f"$torch.device('{device}')"
    with (
        atomic_write(target) as partial,
        tempfile.TemporaryDirectory(prefix=TEMPORARY_PREFIX, dir=target.parent) as staging,
    ):
        if reference is not None:  # the bundle reads NIfTI: the input converted, its geometry in the affine
            converted = Path(staging) / "input" / "image.nii.gz"
            converted.parent.mkdir()
            sitk.WriteImage(reference, str(converted))
            overrides["datalist"] = [str(converted)]
        try:
            run_bundle(["inference.json"], bundle_dir=root, workflow_type="infer", output_dir=staging, **overrides)
        except RuntimeError as err:  # MONAI's Compose wraps what a transform raises; a user error stays one line
            cause = err
            while cause is not None and not isinstance(cause, InputError):
                cause = cause.__cause__
            raise cause or err from None
        written = sorted(p for p in Path(staging).iterdir() if is_nifti(p))
        if len(written) != 1:
            raise RuntimeError(f"inference wrote {len(written)} files to {staging}, expected 1")
        table = _statistics(root, written[0], reference, input) if statistics is not None else None
        if needs_sitk(target):
            write_on_grid(written[0], reference, partial)
        else:
            os.replace(written[0], partial)
    if table is not None:
        with atomic_write(Path(statistics)) as partial:
            partial.write_text(json.dumps(table, indent=2) + "\n")
    return target


def _check_outputs(output: str | os.PathLike, source: str | os.PathLike, statistics: Any) -> Path:
    """The label output's path, checked, and the statistics file's (a .json beside neither input nor output)."""
    target = check_output_path(output, source, others=LABEL_SUFFIXES)
    if statistics is not None:
        if Path(statistics).suffix != ".json":
            raise InputError(f"{statistics}: --statistics must name a .json file")
        check_output_path(statistics, source, target, others=(".json",))
    return target


def _statistics(root: Path, labels: Path, reference: Any, source: str | os.PathLike) -> dict[str, dict]:
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    image = reference if reference is not None else sitk.ReadImage(str(source))
    return label_statistics(labels, image, dict(parser.get("class_names")))


def _read_other_format(path: str | os.PathLike, channels: int, series: str | None) -> Any:
    """The SimpleITK image of a non-NIfTI input, checked for the model: 3-D, one channel, finite values."""
    image = read_image(path, series)
    if channels != 1 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path}: {image.GetNumberOfComponentsPerPixel()} channel(s) for a {channels}-channel model "
            "(several channels: give a 4-D NIfTI, channels last)"
        )
    if image.GetDimension() != 3:
        raise InputError(f"{path}: expected a 3-D volume, got {image.GetDimension()}-D size {image.GetSize()}")
    if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
        raise InputError(f"{path}: contains NaN or infinite values")
    return image
