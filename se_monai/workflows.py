"""Running the se-monai bundle's MONAI/Ignite workflows (train, evaluate, inference) from Python.

The workflows themselves are declared in ``bundle/configs/*.json`` (MONAI's SupervisedTrainer and
SupervisedEvaluator with handlers); this module finds the bundle, merges configs and overrides, runs them with
``monai.bundle.ConfigWorkflow`` and loads the trained network (:mod:`se_monai.segmentation` segments images with
the inference config).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from se_monai.engines import CasesFailed
from se_monai.io import InputError

__all__ = [
    "BUNDLE_ENV",
    "SHIPPED_BUNDLE",
    "default_bundle_dir",
    "resolve_bundle_dir",
    "find_bundle_root",
    "bundle_settings",
    "bundle_class_names",
    "bundle_preprocess",
    "run_bundle",
    "load_bundle_network",
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


def bundle_settings(bundle_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """``{"in_channels": C, "num_classes": K, "brain_extraction": mode}`` of a bundle's network and inference, from
    its ``configs/inference.json`` (mode: its "brain_extraction", None for bundles without that stage).

    Raises:
        InputError, FileNotFoundError: not a bundle (see :func:`resolve_bundle_dir`).
    """
    parser = _inference_config(bundle_dir)
    return {
        "in_channels": int(parser.get_parsed_content("network_def#in_channels")),
        "num_classes": int(parser.get_parsed_content("network_def#out_channels")),
        "brain_extraction": parser.get("brain_extraction"),
    }


def bundle_class_names(bundle_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """``{class index (a string): name}`` of a bundle, its ``configs/inference.json`` "class_names".

    Raises:
        InputError, FileNotFoundError: not a bundle (see :func:`resolve_bundle_dir`).
    """
    return {str(k): str(v) for k, v in dict(_inference_config(bundle_dir).get("class_names")).items()}


def _inference_config(bundle_dir: str | os.PathLike | None) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(resolve_bundle_dir(bundle_dir) / "configs" / "inference.json"))
    return parser


def bundle_preprocess(
    image: str | os.PathLike, bundle_dir: str | os.PathLike | None = None, **overrides: Any
) -> torch.Tensor:
    """The image file as the bundle's inference.json hands it to its inferer: its ``preprocessing`` (loading,
    RAS orientation, resampling to the bundle's spacing, cropping to the non-zero voxels, normalisation);
    ``overrides``: config ids set first, e.g. ``magnification=1.0``.

    Returns:
        A ``(C, D, H, W)`` MetaTensor (voxels of the bundle's spacing, mm).

    Raises:
        InputError, FileNotFoundError: no bundle (see :func:`resolve_bundle_dir`); errors of MONAI's transforms.
    """
    parser = _inference_config(bundle_dir)
    parser["bundle_root"] = str(resolve_bundle_dir(bundle_dir))
    for key, value in overrides.items():
        parser[key] = value
    return parser.get_parsed_content("preprocessing")({"image": str(image)})["image"]


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
        se_monai.engines.CasesFailed: cases failed and were skipped (``failed.workflow``: the finished workflow).
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
        try:
            workflow.run()
        except CasesFailed as failed:
            failed.workflow = workflow  # the results of the cases that did not fail
            raise
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
