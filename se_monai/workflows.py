"""Running the se-monai bundle's MONAI/Ignite workflows (train, evaluate, inference) from Python.

The workflows themselves are declared in ``bundle/configs/*.json`` (MONAI's SupervisedTrainer and
SupervisedEvaluator with handlers); this module only finds the bundle, merges configs and overrides, and runs
them with ``monai.bundle.ConfigWorkflow``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

__all__ = ["default_bundle_dir", "find_bundle_root", "run_bundle", "load_bundle_network", "label_dice"]

#: Environment variable that points the CLI at a bundle other than the one beside the package.
BUNDLE_ENV = "SE_MONAI_BUNDLE"


def default_bundle_dir() -> Path:
    """The bundle to use: ``$SE_MONAI_BUNDLE`` if set, else ``bundle/`` of the source tree se_monai runs from.

    Raises:
        FileNotFoundError: neither exists (e.g. a wheel install without the bundle: set ``SE_MONAI_BUNDLE``).
    """
    candidates = [Path(os.environ[BUNDLE_ENV])] if os.environ.get(BUNDLE_ENV) else []
    candidates.append(Path(__file__).resolve().parent.parent / "bundle")
    for path in candidates:
        if (path / "configs" / "metadata.json").is_file():
            return path
    raise FileNotFoundError(
        f"no se-monai bundle found (looked in {', '.join(map(str, candidates))}); set {BUNDLE_ENV} to its folder"
    )


def find_bundle_root() -> str:
    """Default ``bundle_root`` of the configs: "." when run from inside a bundle folder (the model-zoo
    convention), else :func:`default_bundle_dir`, so ``python -m monai.bundle run --config_file
    bundle/configs/inference.json`` also works from the repository root."""
    if Path("configs", "metadata.json").is_file() and Path("configs", "inference.json").is_file():
        return "."
    return str(default_bundle_dir())


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
        FileNotFoundError: no bundle found (see :func:`default_bundle_dir`); errors of the configs' components.
    """
    root = Path(bundle_dir) if bundle_dir is not None else default_bundle_dir()
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


def load_bundle_network(bundle_dir: str | os.PathLike | None = None, ckpt_file: str | os.PathLike | None = None,
                        config_file: str = "inference.json") -> Any:  # fmt: skip
    """The bundle's ``network_def`` with the weights of ``ckpt_file`` (default ``<bundle>/models/model.pt``), in
    eval mode on the CPU.

    Raises:
        FileNotFoundError: no checkpoint.
        KeyError: the checkpoint's keys do not match the network.
    """
    import torch
    from monai.bundle import ConfigParser

    root = Path(bundle_dir) if bundle_dir is not None else default_bundle_dir()
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


def label_dice(prediction: Any, reference: Any, labels: dict[str, int]) -> dict[str, float]:
    """Dice of each label value between two label volumes of the same shape (MONAI's ``compute_dice``).

    Args:
        prediction, reference: integer label arrays or tensors, same shape.
        labels: ``{name: label value}``.

    Returns:
        ``{name: Dice}``; 1.0 where both volumes lack the label.

    Raises:
        ValueError: the shapes differ.
    """
    import numpy as np
    import torch
    from monai.metrics import compute_dice

    pred = torch.as_tensor(np.ascontiguousarray(prediction)).round().long()
    ref = torch.as_tensor(np.ascontiguousarray(reference)).round().long()
    if pred.shape != ref.shape:
        raise ValueError(f"label volumes differ in shape: {tuple(pred.shape)} vs {tuple(ref.shape)}")
    scores = {}
    for name, value in labels.items():
        p, r = (pred == value)[None, None].float(), (ref == value)[None, None].float()
        scores[name] = float(compute_dice(p, r, include_background=True, ignore_empty=False).item())
    return scores
