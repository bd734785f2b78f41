"""Bundles of one's own: training on a dataset in the Medical Segmentation Decathlon (MSD) layout writes a bundle of
its own, made from the shipped one, and never the shipped bundle.

:func:`training_bundle` creates the bundle on first use: the shipped configs, docs and licence (no weights), with the
input channels from ``dataset.json`` "modality" and the classes from its "labels" set in ``train.json`` and
``inference.json`` (so evaluation and inference need no override), the dataset folder as their default
``dataset_dir``, and ``metadata.json`` describing the data (``network_data_format``, task, data source, version and
changelog). A later run with the same folder checks that the bundle still fits the dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from se_monai import __version__
from se_monai.io import InputError
from se_monai.ops.atomic import atomic_write
from se_monai.workflows import SHIPPED_BUNDLE, bundle_settings, default_bundle_dir, resolve_bundle_dir

__all__ = ["read_dataset", "create_bundle", "training_bundle"]

#: What a new bundle takes from the one it is made from (weights are trained anew).
COPIED = ("configs", "docs", "LICENSE")


def read_dataset(dataset_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``dataset.json`` of an MSD-layout dataset, checked for what a bundle needs.

    Returns:
        The parsed file, with "modality" ``{"0": name, ...}`` and "labels" ``{"0": name, ...}``.

    Raises:
        InputError: no ``dataset.json``, not JSON, or "modality"/"labels" missing or not numbered from "0".
    """
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        raise InputError(f"{dataset_dir}: no dataset.json (expected the MSD layout)")
    try:
        dataset = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable JSON file ({err})".splitlines()[0]) from err
    for key in ("modality", "labels"):
        entries = dataset.get(key)
        if not isinstance(entries, dict) or not entries:
            raise InputError(f'{path}: no "{key}" (expected e.g. {{"0": "..."}})')
        if sorted(entries, key=lambda k: int(k) if str(k).isdigit() else -1) != [str(i) for i in range(len(entries))]:
            raise InputError(f'{path}: "{key}" must be numbered 0..{len(entries) - 1}, got {sorted(entries)}')
    return dataset


def _write_json(path: Path, content: dict[str, Any]) -> None:
    with atomic_write(path) as partial:
        partial.write_text(json.dumps(content, indent=4) + "\n")


def _update_configs(root: Path, dataset_dir: Path, channels: int, classes: int) -> None:
    for name in ("train.json", "inference.json"):
        path = root / "configs" / name
        config = json.loads(path.read_text())
        config.update(in_channels=channels, num_classes=classes, dataset_dir=str(dataset_dir))
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
        _update_configs(staging, dataset_dir, len(dataset["modality"]), len(dataset["labels"]))
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
