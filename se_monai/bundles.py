"""Bundles of one's own: training on a dataset in the Medical Segmentation Decathlon (MSD) layout writes a bundle of
its own, made from the shipped one, and never the shipped bundle.

:func:`training_bundle` creates the bundle on first use: the shipped configs, docs and licence (no weights), with the
input channels from ``dataset.json`` "modality" and the classes from its "labels" set in ``train.json`` and
``inference.json`` (so evaluation and inference need no override; no plausibility ranges, which belong to the
shipped model's task: :mod:`se_monai.transforms.plausibility`), the dataset folder as their default
``dataset_dir``, the dataset's plan (:mod:`se_monai.data.fingerprint`: target spacing, patch size, intensity
normalisation) in those configs and, with the fingerprint it came from, in ``fingerprint.json``, and ``metadata.json``
describing the data (``network_data_format``, task, data source, version and changelog). A later run with the same
folder checks that the bundle still fits the dataset.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

from se_monai import __version__
from se_monai.data import dataset_fingerprint, plan, read_dataset
from se_monai.io import InputError
from se_monai.ops.atomic import atomic_write
from se_monai.workflows import (
    SHIPPED_BUNDLE,
    bundle_settings,
    default_bundle_dir,
    load_bundle_network,
    resolve_bundle_dir,
)

__all__ = [
    "PLAN_FILE",
    "create_bundle",
    "training_bundle",
    "record_network_overrides",
    "check_init_weights",
    "bundle_plan",
]

#: The dataset fingerprint and the plan derived from it, in a new bundle's folder.
PLAN_FILE = "fingerprint.json"
#: What a new bundle takes from the one it is made from (weights are trained anew).
COPIED = ("configs", "docs", "LICENSE")
#: Configs of a bundle that build the network from their own "network_def".
NETWORK_CONFIGS = ("train.json", "inference.json")


def _write_json(path: Path, content: dict[str, Any]) -> None:
    with atomic_write(path) as partial:
        partial.write_text(json.dumps(content, indent=4) + "\n")


def _planned_transforms(transforms: list[dict[str, Any]], values: dict[str, Any]) -> list[dict[str, Any]]:
    """The preprocessing ``transforms`` with the plan's intensity normalisation: for CT, a fixed clip-and-z-score
    (``ScaleIntensityRanged`` mapping the clip range to its z-scores) instead of the per-image z-score, and no
    cropping to the positive voxels (CT's background is negative)."""
    if values["normalization"] != "ct":
        return transforms
    (low, high), mean, std = values["ct_range"], values["ct_mean"], values["ct_std"]
    ct = {
        "_target_": "ScaleIntensityRanged",
        "keys": "image",
        "a_min": low,
        "a_max": high,
        "b_min": (low - mean) / std,
        "b_max": (high - mean) / std,
        "clip": True,
    }
    kept = [t for t in transforms if t.get("_target_") != "CropForegroundd"]
    return [ct if t.get("_target_") == "NormalizeIntensityd" else t for t in kept]


def _update_configs(root: Path, dataset_dir: Path, dataset: dict[str, Any], values: dict[str, Any]) -> None:
    channels, classes = len(dataset["modality"]), len(dataset["labels"])
    for name, transforms in (
        ("train.json", ("deterministic_transforms",)),
        ("inference.json", ("preprocessing", "transforms")),
    ):
        path = root / "configs" / name
        config = json.loads(path.read_text())
        config.update(in_channels=channels, num_classes=classes, dataset_dir=str(dataset_dir), pixdim=values["pixdim"])
        if name == "train.json":
            config["patch_size"] = values["patch_size"]
        else:  # the classes' names; the shipped model's plausible volumes, brain size, magnification, brain
            # extraction and brain-tissue intensity refinement do not apply
            config.update(class_names=dict(dataset["labels"]), plausibility={}, min_relative_size=0.0)
            config.update(magnification=1.0, brain_extraction="never", intensity_refinement=False)
        parent = config
        for key in transforms[:-1]:
            parent = parent[key]
        parent[transforms[-1]] = _planned_transforms(parent[transforms[-1]], values)
        if values["normalization"] == "ct":  # 0 is a tissue value in CT, not the outside of a skull-stripping mask
            post = (config["train"] if name == "train.json" else config)["postprocessing"]
            post["transforms"] = [t for t in post["transforms"] if t.get("_target_") != "MaskIntensityd"]
        _write_json(path, config)


def _update_metadata(root: Path, dataset: dict[str, Any], dataset_dir: Path) -> None:
    path = root / "configs" / "metadata.json"
    meta = json.loads(path.read_text())
    name = dataset.get("name") or dataset_dir.name
    modalities, labels = dataset["modality"], dataset["labels"]
    meta.update(
        version="0.1.0",
        changelog={"0.1.0": f"created by se-monai {__version__} for the dataset {name} ({dataset_dir})"},
        name=f"SE-U-Net {name}",
        task=dataset.get("description") or f"segmentation of {', '.join(list(labels.values())[1:])}",
        data_source=f"{name}: {dataset.get('reference') or dataset_dir}",
        image_classes=", ".join(f"channel {k}: {v}" for k, v in modalities.items()),
        label_classes=", ".join(f"{k} {v}" for k, v in labels.items()),
        pred_classes=", ".join(f"{k} {v}" for k, v in labels.items()),
        eval_metrics={},
    )
    image, pred = meta["network_data_format"]["inputs"]["image"], meta["network_data_format"]["outputs"]["pred"]
    image.update(num_channels=len(modalities), channel_def=dict(modalities), modality=", ".join(modalities.values()))
    pred.update(num_channels=len(labels), channel_def=dict(labels))
    _write_json(path, meta)


def create_bundle(
    target: str | os.PathLike, dataset_dir: str | os.PathLike, source: str | os.PathLike | None = None
) -> Path:
    """Make the bundle folder ``target`` for the dataset (see the module docstring), from ``source`` (default: the
    bundle se-monai uses, :func:`se_monai.workflows.default_bundle_dir`). Built beside ``target`` and renamed into
    place, so an interrupted call leaves no half bundle.

    Raises:
        InputError: ``target`` exists, or the dataset's ``dataset.json`` is not usable (:func:`read_dataset`).
    """
    target, dataset_dir = Path(target), Path(dataset_dir).resolve()
    dataset = read_dataset(dataset_dir)
    if target.exists():
        raise InputError(f"{target}: exists already; give a new folder for the bundle")
    source = resolve_bundle_dir(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for name in COPIED:
            if (source / name).is_dir():
                shutil.copytree(source / name, staging / name, ignore=shutil.ignore_patterns("__pycache__"))
            elif (source / name).is_file():
                shutil.copy2(source / name, staging / name)
        (staging / "models").mkdir()
        strides = json.loads((staging / "configs" / "train.json").read_text())["network_def"].get("strides", [2, 2, 2])
        fingerprint = dataset_fingerprint(dataset_dir)
        values = plan(fingerprint, stride=math.prod(int(s) for s in strides))
        _write_json(staging / PLAN_FILE, {"plan": values, "fingerprint": fingerprint})
        _update_configs(staging, dataset_dir, dataset, values)
        _update_metadata(staging, dataset, dataset_dir)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def training_bundle(dataset_dir: str | os.PathLike, bundle_dir: str | os.PathLike | None) -> Path:
    """The bundle a training run on ``dataset_dir`` writes to: ``bundle_dir``, created for the dataset when it does
    not exist, or checked to fit it when it does.

    Raises:
        InputError: no ``bundle_dir``; ``bundle_dir`` is the shipped bundle (or ``$SE_MONAI_BUNDLE``), is not a
            bundle, or was made for another number of channels or classes; an unusable ``dataset.json``.
    """
    dataset = read_dataset(dataset_dir)
    if bundle_dir is None:
        raise InputError(
            "train: --bundle_dir is required: the folder of the bundle to train (made from the shipped one if it does "
            "not exist; the shipped bundle is never trained)"
        )
    target = Path(bundle_dir)
    protected = {SHIPPED_BUNDLE.resolve(), default_bundle_dir()}
    if target.resolve() in protected:
        raise InputError(f"{target}: is the bundle se-monai ships or uses; train into a bundle of your own")
    if not target.exists():
        return create_bundle(target, dataset_dir)
    root = resolve_bundle_dir(target)
    settings = bundle_settings(root)
    wanted = {"in_channels": len(dataset["modality"]), "num_classes": len(dataset["labels"])}
    for key, value in wanted.items():
        if settings[key] != value:
            raise InputError(f"{root}: made for {key} {settings[key]}, the dataset {dataset_dir} has {value}")
    return root


def record_network_overrides(bundle_dir: str | os.PathLike, overrides: dict[str, Any]) -> list[str]:
    """Write the ``network_def#...`` entries of a training run's overrides (e.g. ``{"network_def#basis_type":
    "disco"}``) into the bundle's :data:`NETWORK_CONFIGS`, so that its inference and evaluation build the network it
    was trained as: a disco model loaded into the "multi" network (the same weight layout) would run without error
    and be wrong.

    Returns:
        The override keys written.

    Raises:
        InputError: an override names a part of ``network_def`` that is not a dictionary.
    """
    keys = [k for k in overrides if k.startswith("network_def#")]
    for name in NETWORK_CONFIGS if keys else ():
        path = Path(bundle_dir) / "configs" / name
        config = json.loads(path.read_text())
        for key in keys:
            *parents, leaf = key.split("#")
            node = config
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise InputError(f"{path}: --{key}: {'#'.join(parents)} is not a dictionary in this config")
            node[leaf] = overrides[key]
        _write_json(path, config)
    return keys


def check_init_weights(bundle_dir: str | os.PathLike, path: str | os.PathLike | None) -> None:
    """Check before a run that the checkpoint ``path`` (``train.json``'s ``init_weights``: the weights a training run
    starts from, e.g. the shipped ``models/model.pt`` to fine-tune it) loads into the bundle's ``network_def``; None
    (train from scratch) passes.

    Raises:
        InputError: no such file, not a checkpoint, or weights of another network (other channels, classes, basis
            or channel counts).
    """
    if path is None:
        return
    try:
        load_bundle_network(bundle_dir, path, "train.json")
    except FileNotFoundError as err:
        raise InputError(f"--init_weights {err}") from err
    except KeyError as err:
        raise InputError(f"--init_weights {err.args[0]}") from err
    except (RuntimeError, EOFError, pickle.UnpicklingError) as err:
        raise InputError(f"--init_weights {path}: not a PyTorch checkpoint ({type(err).__name__})") from err


def bundle_plan(bundle_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The plan a bundle was made with (:data:`PLAN_FILE`), or None for a bundle made otherwise."""
    path = Path(bundle_dir) / PLAN_FILE
    return json.loads(path.read_text())["plan"] if path.is_file() else None
