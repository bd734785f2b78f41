"""Experiment runner: scale generalisation and data efficiency of SE-U-Net against MONAI's UNet.

One JSON config (``configs/scale_generalisation.json``) declares the arms (a network, with or without random
isotropic rescaling augmentation), the training-set sizes, the seeds and the test scales. For every combination the
runner trains with the bundle's ``train.json`` (MONAI's SupervisedTrainer) and evaluates with its ``evaluate.json``
(SupervisedEvaluator, MeanDice, MetricsSaver) on the test images rescaled by each factor, labels resampled with
nearest neighbour. The volumes keep their 1 mm voxels, so a factor below 1 makes the anatomy smaller, as a smaller
head or a coarser scanner would; it is the paper's test (Wimmer et al. 2023, Sec. 4).

Every finished run writes ``<output_dir>/runs/<run>/result.json``; a later invocation skips finished runs, so an
interrupted experiment resumes where it stopped. ``results.csv`` and ``results.json`` gather all runs, and
:mod:`se_monai.plots` draws them.

Data: an MSD-layout ``dataset_dir``. When it has no ``dataset.json`` and is the offline ICBM152 dataset of
:mod:`se_monai.data` (``"synthesise": true``), it is written first. The last training subject validates nothing
and is held out; test images come from ``imagesTs/`` with labels in ``labelsTs/``, or, for a dataset without
labelled test images (most MSD tasks), the last ``num_test`` training subjects, excluded from training.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

__all__ = ["ConfigError", "load_config", "arms", "seeds_for", "plan_runs", "run_name", "scale_tag",
           "scaled_test_pairs", "prepare_test_scales", "run_experiment", "collect_results"]

#: Keys a config must have.
REQUIRED = ("name", "output_dir", "dataset_dir", "networks", "train_sizes", "seeds", "test_scales", "iterations")


class ConfigError(ValueError):
    """An experiment config that cannot be run; the message names the file and the problem."""


def load_config(path: str | os.PathLike, **overrides: Any) -> dict[str, Any]:
    """Read an experiment config; ``overrides`` replace top-level keys (e.g. ``output_dir``).

    Relative ``output_dir`` and ``dataset_dir`` are relative to the working directory.

    Raises:
        ConfigError: unreadable JSON, missing keys, or arms without a network.
    """
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not a readable JSON experiment config ({err})".splitlines()[0]) from err
    config.update({k: v for k, v in overrides.items() if v is not None})
    missing = [key for key in REQUIRED if key not in config]
    if missing:
        raise ConfigError(f"{path}: missing {', '.join(missing)}")
    for name, network in config["networks"].items():
        if "network_def" not in network:
            raise ConfigError(f"{path}: network {name!r} has no network_def")
    if min(config["train_sizes"]) < 1:
        raise ConfigError(f"{path}: train_sizes must be at least 1")
    if isinstance(config["seeds"], dict) and set(config["seeds"]) - {str(s) for s in config["train_sizes"]}:
        raise ConfigError(f"{path}: seeds has sizes that are not in train_sizes")
    config["_path"] = str(path)
    config["arms"] = arms(config)
    return config


def arms(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every network with each augmentation setting of ``config["augment"]`` (default ``[false, true]``): arm
    ``<network>`` trains without, ``<network>_aug`` with random isotropic rescaling."""
    return {
        f"{name}_aug" if augment else name: {**network, "network": name, "augment": bool(augment)}
        for name, network in config["networks"].items()
        for augment in config.get("augment", [False, True])
    }


def run_name(arm: str, size: int, seed: int) -> str:
    """Folder name of one run under ``<output_dir>/runs``."""
    return f"{arm}__n{int(size):03d}__seed{int(seed)}"


def scale_tag(scale: float) -> str:
    """File-name tag of a test scale, ``scale070`` for 0.7 (no dot: MetricsSaver rows are matched by file stem)."""
    return f"scale{round(float(scale) * 100):03d}"


def scaled_test_pairs(output_dir: str | os.PathLike, scale: float) -> list[tuple[Path, Path]]:
    """``(image, label)`` files of the test images rescaled by ``scale`` (:func:`prepare_test_scales`)."""
    folder = Path(output_dir) / "test_scales"
    tag = scale_tag(scale)
    return [(image, image.with_name(f"{image.name[:-len('.nii.gz')]}_label.nii.gz"))
            for image in sorted(folder.glob(f"*_{tag}.nii.gz"))]  # fmt: skip


def seeds_for(config: dict[str, Any], size: int) -> list[int]:
    """Seeds of a training-set size: ``config["seeds"]`` is a list for every size, or ``{"<size>": [seeds]}``."""
    seeds = config["seeds"]
    if isinstance(seeds, dict):
        return [int(s) for s in seeds.get(str(size), [])]
    return [int(s) for s in seeds]


def plan_runs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (arm, training-set size, seed): the first seed of every size first, smallest sizes first, so an
    interrupted experiment has one complete pass before the repeats."""
    pairs = [(rank, size, seed) for size in config["train_sizes"] for rank, seed in enumerate(seeds_for(config, size))]
    return [
        {"arm": arm, "train_size": size, "seed": seed, "name": run_name(arm, size, seed)}
        for _, size, seed in sorted(pairs)
        for arm in config["arms"]
    ]


def _datalists(config: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Training candidates (in dataset.json order, the held-out ones removed) and labelled test images."""
    from monai.data import load_decathlon_datalist

    from se_monai.data import labelled_test_datalist

    root = Path(config["dataset_dir"])
    training = load_decathlon_datalist(str(root / "dataset.json"), True, "training", str(root))
    try:
        test = labelled_test_datalist(root)
    except FileNotFoundError:
        count = int(config.get("num_test", 5))
        training, test = training[:-count], training[-count:]
    largest = max(config["train_sizes"])
    if len(training) < largest + 1:
        raise ConfigError(f"{root}: {len(training)} training subjects; the config needs {largest} plus 1 held out")
    return training, test


def _prepare_dataset(config: dict[str, Any]) -> None:
    root = Path(config["dataset_dir"])
    if (root / "dataset.json").is_file():
        return
    if not config.get("synthesise", False):
        raise ConfigError(f"{root}: no dataset.json (expected the MSD layout)")
    from se_monai.data import prepare_brain_tissue_dataset

    prepare_brain_tissue_dataset(root, num_subjects=max(config["train_sizes"]) + 1, seed=int(config.get("data_seed", 0)))


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    partial = path.with_name(path.name + ".partial.nii.gz")
    nib.save(nib.Nifti1Image(array, affine), str(partial))
    os.replace(partial, path)


def prepare_test_scales(test: Sequence[dict[str, str]], scales: Sequence[float], folder: Path) -> list[dict[str, Any]]:
    """Rescale every test image (trilinear) and label (nearest) by every factor with MONAI's ``Zoom``, keeping the
    voxel size, so the anatomy shrinks or grows in millimetres. Written once, then reused.

    Returns:
        ``[{"image", "label", "scale", "source"}]``.
    """
    from monai.transforms import Zoom

    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for pair in test:
        stem = Path(pair["image"]).name.split(".")[0]
        image_nii = label_nii = None
        for scale in scales:
            tag = f"{stem}_{scale_tag(scale)}"
            image_path, label_path = folder / f"{tag}.nii.gz", folder / f"{tag}_label.nii.gz"
            if not (image_path.is_file() and label_path.is_file()):
                if image_nii is None:
                    image_nii, label_nii = nib.load(pair["image"]), nib.load(pair["label"])
                image = np.asarray(image_nii.dataobj, dtype=np.float32)
                label = np.asarray(label_nii.dataobj).astype(np.float32)
                if image.ndim == 3:
                    image = image[None]
                else:
                    image = np.moveaxis(image, -1, 0)
                zoomed = Zoom(scale, mode="trilinear", keep_size=False, align_corners=False)(image)
                zoomed_label = Zoom(scale, mode="nearest", keep_size=False)(label[None])
                zoomed = np.asarray(zoomed)
                _save_nifti(zoomed[0] if zoomed.shape[0] == 1 else np.moveaxis(zoomed, 0, -1), image_nii.affine,
                            image_path)  # fmt: skip
                _save_nifti(np.asarray(zoomed_label)[0].round().astype(np.uint8), image_nii.affine, label_path)
            items.append({"image": str(image_path), "label": str(label_path), "scale": float(scale), "source": stem})
    return items


def _augmentation(config: dict[str, Any]) -> dict[str, Any]:
    """Random isotropic rescaling of a training patch (MONAI ``RandZoomd``), as in the paper's augmentation arm."""
    aug = config.get("augmentation", {})
    return {
        "_target_": "RandZoomd",
        "keys": ["image", "label"],
        "prob": float(aug.get("prob", 1 / 1.5)),
        "min_zoom": float(aug.get("min_zoom", 0.7)),
        "max_zoom": float(aug.get("max_zoom", 1.0)),
        "mode": ["trilinear", "nearest"],
        "align_corners": [False, None],
        "keep_size": True,
        "padding_mode": "constant",
    }


def _train_overrides(config: dict[str, Any], run: dict[str, Any], run_dir: Path, training: list[dict[str, str]],
                     validation: dict[str, str], bundle_dir: Path) -> dict[str, Any]:  # fmt: skip
    from monai.bundle import ConfigParser

    arm = config["arms"][run["arm"]]
    size = run["train_size"]
    epochs = max(1, math.ceil(config["iterations"] / size))  # the same number of iterations for every size
    parser = ConfigParser()
    parser.read_config(str(bundle_dir / "configs" / "train.json"))
    random_transforms = copy.deepcopy(parser.get("train#random_transforms"))
    if arm.get("augment", False):
        crop = next(i for i, t in enumerate(random_transforms) if "Crop" in t["_target_"])
        random_transforms.insert(crop + 1, _augmentation(config))
    handlers = copy.deepcopy(parser.get("train#handlers"))
    handlers = [h for h in handlers if h["_target_"] not in ("ValidationHandler", "TensorBoardStatsHandler")]
    handlers.append({"_target_": "CheckpointSaver", "save_dir": "@ckpt_dir", "save_dict": {"model": "@network"},
                     "save_final": True, "final_filename": "model.pt"})  # fmt: skip
    final_factor = float(config.get("final_lr_factor", 0.95**20))
    overrides = {
        "dataset_dir": str(config["dataset_dir"]),
        "ckpt_dir": str(run_dir),
        "output_dir": str(run_dir),
        "train_datalist": training[:size],
        "val_datalist": [validation],
        "epochs": epochs,
        "val_interval": epochs + 1,
        "num_classes": int(config.get("num_classes", 3)),
        "patch_size": list(config.get("patch_size", [48, 48, 48])),
        "num_samples": int(config.get("num_samples", 2)),
        "num_workers": 0,
        "learning_rate": float(arm.get("learning_rate", 0.008)),
        "lr_decay": final_factor ** (1.0 / epochs),
        "network_def": arm["network_def"],
        "train#random_transforms": random_transforms,
        "train#handlers": handlers,
        "train#dataset": {"_target_": "PersistentDataset", "data": "@train_datalist",
                          "transform": "@train#preprocessing", "cache_dir": str(Path(config["output_dir"]) / "cache")},
        "initialize": [f"$monai.utils.set_determinism(seed={int(run['seed'])})"],
    }  # fmt: skip
    overrides.update(config.get("bundle_overrides", {}))
    return overrides


def _read_dice(csv_path: Path, items: list[dict[str, Any]], class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-image Dice from MetricsSaver's ``val_mean_dice_raw.csv`` as ``{"<source> <scale>": {class: dice, "mean"}}``."""
    with open(csv_path) as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    by_stem = {Path(item["image"]).name.split(".")[0]: item for item in items}
    result = {}
    for row in body:
        item = by_stem[Path(row[0]).name.split(".")[0]]
        values = {name: float(row[1 + i]) for i, name in enumerate(class_names)}
        values["mean"] = float(row[header.index("mean")])
        result[f"{item['source']} {item['scale']:g}"] = values
    return result


def _run_one(config: dict[str, Any], run: dict[str, Any], run_dir: Path, training: list[dict[str, str]],
             validation: dict[str, str], items: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    import shutil

    from se_monai.workflows import default_bundle_dir, run_bundle

    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again from scratch
    run_dir.mkdir(parents=True)
    bundle_dir = Path(config.get("bundle_dir") or default_bundle_dir())
    overrides = _train_overrides(config, run, run_dir, training, validation, bundle_dir)
    start = time.perf_counter()
    workflow = run_bundle(["train.json"], bundle_dir=bundle_dir, quiet=True, **overrides)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    train_seconds = time.perf_counter() - start
    loss = float(trainer.state.output[0]["loss"]) if trainer.state.output else float("nan")
    start = time.perf_counter()
    evaluation = {k: overrides[k] for k in ("dataset_dir", "ckpt_dir", "num_classes", "network_def", "patch_size")}
    evaluation.update(output_dir=str(run_dir / "test"), test_datalist=[{"image": i["image"], "label": i["label"]}
                                                                        for i in items])  # fmt: skip
    run_bundle(["train.json", "evaluate.json"], bundle_dir=bundle_dir, workflow_type="infer", quiet=True, **evaluation)
    eval_seconds = time.perf_counter() - start
    class_names = config.get("class_names", ["grey matter", "white matter"])
    result = {
        **run,
        "network": config["arms"][run["arm"]]["network"],
        "model": config["arms"][run["arm"]].get("model", run["arm"]),
        "augment": config["arms"][run["arm"]]["augment"],
        "iterations": int(trainer.state.iteration),
        "final_loss": loss,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "parameters": int(sum(p.numel() for p in workflow.parser.get_parsed_content("network").parameters())),
        "dice": _read_dice(run_dir / "test" / "val_mean_dice_raw.csv", items, class_names),
    }
    partial = run_dir / "result.json.partial"
    partial.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(partial, run_dir / "result.json")
    return result


def collect_results(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All finished runs under ``output_dir/runs``, and ``results.json`` / ``results.csv`` rewritten from them."""
    output_dir = Path(output_dir)
    results = [json.loads(p.read_text()) for p in sorted(output_dir.glob("runs/*/result.json"))]
    (output_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    with open(output_dir / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        classes = sorted({c for r in results for d in r["dice"].values() for c in d if c != "mean"})
        writer.writerow(["arm", "model", "augment", "train_size", "seed", "test_image", "test_scale", *classes,
                         "mean", "train_seconds"])  # fmt: skip
        for r in results:
            for key, dice in r["dice"].items():
                source, scale = key.rsplit(" ", 1)
                writer.writerow([r["arm"], r["model"], r["augment"], r["train_size"], r["seed"], source, scale,
                                 *[f"{dice.get(c, float('nan')):.4f}" for c in classes], f"{dice['mean']:.4f}",
                                 f"{r['train_seconds']:.1f}"])  # fmt: skip
    return results


def run_experiment(config: dict[str, Any], progress: bool = True) -> list[dict[str, Any]]:
    """Run every planned run that has no ``result.json`` yet; returns all results (see :func:`collect_results`).

    Raises:
        ConfigError: a dataset that cannot serve the config.
    """
    from tqdm import tqdm

    output_dir = Path(config["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k[0] != "_"}, indent=2))
    _prepare_dataset(config)
    training, test = _datalists(config)
    validation = training[-1]
    items = prepare_test_scales(test, config["test_scales"], output_dir / "test_scales")
    runs = plan_runs(config)
    todo = [r for r in runs if not (output_dir / "runs" / r["name"] / "result.json").is_file()]
    logging.getLogger("ignite").setLevel(logging.WARNING)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc=config["name"], unit="run", disable=not progress)
    for run in todo:
        bar.set_postfix_str(run["name"])
        result = _run_one(config, run, output_dir / "runs" / run["name"], training, validation, items)
        bar.write(f"{run['name']}: mean Dice " + ", ".join(f"{k} {v['mean']:.3f}" for k, v in result["dice"].items()))
        bar.update(1)
    bar.close()
    return collect_results(output_dir)


def summarise(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean Dice (over classes) per (arm, training-set size, test scale), averaged over seeds and test images.

    Returns:
        Rows ``{"arm", "network", "model", "augment", "train_size", "test_scale", "dice", "std", "n"}``, with
        ``std`` the standard deviation over seeds (0 for one seed) and ``n`` the number of seeds.
    """
    groups: dict[tuple[str, int, float], dict[int, list[float]]] = {}
    info: dict[str, dict[str, Any]] = {}
    for result in results:
        info[result["arm"]] = result
        for key, dice in result["dice"].items():
            scale = float(key.rsplit(" ", 1)[1])
            per_seed = groups.setdefault((result["arm"], int(result["train_size"]), scale), {})
            per_seed.setdefault(int(result["seed"]), []).append(float(dice["mean"]))
    rows = []
    for (arm, size, scale), per_seed in sorted(groups.items()):
        seed_means = np.array([np.mean(values) for values in per_seed.values()])
        rows.append({
            "arm": arm, "network": info[arm].get("network", arm), "model": info[arm]["model"],
            "augment": info[arm]["augment"], "train_size": size, "test_scale": scale,
            "dice": float(seed_means.mean()), "std": float(seed_means.std()), "n": len(seed_means),
        })  # fmt: skip
    return rows


def _table(rows: list[dict[str, Any]], column: str, title: str, spread: bool = True) -> str:
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    columns = sorted({r[column] for r in rows})
    cell = {(r["arm"], r[column]): r for r in rows}
    lines = [title, f"{'arm':<22}" + "".join(f"{c:>14g}" for c in columns)]
    for arm in arms:
        values = [cell.get((arm, c)) for c in columns]
        lines.append(f"{arm:<22}" + "".join(
            f"{'-':>14}" if v is None else f"{v['dice']:>8.3f} ±{v['std']:.3f}" if spread else f"{v['dice']:>14.3f}"
            for v in values))  # fmt: skip
    return "\n".join(lines)


def format_summary(results: Sequence[dict[str, Any]]) -> str:
    """Tables of mean Dice (± standard deviation over seeds): by training-set size at test scale 1.0 (or the scale
    closest to it); by test scale for each training-set size; and the drop from scale 1.0 to 0.7."""
    rows = summarise(results)
    if not rows:
        return "no finished runs"
    scales = sorted({r["test_scale"] for r in rows})
    reference = min(scales, key=lambda s: abs(s - 1.0))
    by_size = _table([r for r in rows if r["test_scale"] == reference], "train_size",
                     f"mean Dice by training-set size (columns), test scale {reference:g}")  # fmt: skip
    tables = [by_size]
    for size in sorted({r["train_size"] for r in rows}):
        tables.append(_table([r for r in rows if r["train_size"] == size], "test_scale",
                             f"mean Dice by test scale (columns), {size} training subjects"))  # fmt: skip
    low = 0.7 if 0.7 in scales else min(scales)
    drops = []
    for high_row, low_row in _pairs(rows, reference, low).values():
        drops.append({**high_row, "dice": high_row["dice"] - low_row["dice"]})
    tables.append(_table(drops, "train_size", f"Dice drop from test scale {reference:g} to {low:g} by training-set "
                                              "size (columns; seed means)", spread=False))  # fmt: skip
    return "\n\n".join(tables)


def _pairs(rows: list[dict[str, Any]], first: float, second: float) -> dict[tuple[str, int], tuple[dict, dict]]:
    cell = {(r["arm"], r["train_size"], r["test_scale"]): r for r in rows}
    return {
        (arm, size): (cell[(arm, size, first)], cell[(arm, size, second)])
        for (arm, size, scale) in cell
        if scale == first and (arm, size, second) in cell
    }


def predict(output_dir: str | os.PathLike, run: str, image: str | os.PathLike) -> np.ndarray:
    """Label volume that a finished run's model (``<output_dir>/runs/<run>/model.pt``) predicts for one NIfTI image,
    with the bundle's ``inference.json`` (sliding-window inference; same grid as the image).

    Raises:
        ConfigError: no such finished run.
    """
    import tempfile

    from se_monai.workflows import default_bundle_dir, run_bundle

    output_dir = Path(output_dir)
    config = json.loads((output_dir / "config.json").read_text())
    checkpoint, finished = output_dir / "runs" / run / "model.pt", output_dir / "runs" / run / "result.json"
    if not (checkpoint.is_file() and finished.is_file()):
        raise ConfigError(f"{checkpoint}: no finished run {run!r} in {output_dir}")
    arm = json.loads(finished.read_text())["arm"]
    bundle_dir = Path(config.get("bundle_dir") or default_bundle_dir())
    with tempfile.TemporaryDirectory() as staging:
        overrides = {
            "datalist": [str(Path(image).resolve())],
            "output_dir": staging,
            "num_classes": int(config.get("num_classes", 3)),
            "network_def": config["arms"][arm]["network_def"],
            "handlers#0#load_path": str(checkpoint),
            "inferer#progress": False,
        }
        run_bundle(["inference.json"], bundle_dir=bundle_dir, workflow_type="infer", quiet=True, **overrides)
        (written,) = [p for p in Path(staging).iterdir() if p.name.endswith((".nii", ".nii.gz"))]
        return np.asarray(nib.load(str(written)).dataobj).astype(np.int64)
