"""Training and testing of one run of the experiment through the bundle's ``train.json`` and ``evaluate.json``, the
loop over all planned runs, and predictions of a finished run's model."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai.bundle import ConfigParser
from tqdm import tqdm

from se_monai.apps.experiment.config import ConfigError, plan_runs
from se_monai.apps.experiment.results import collect_results, read_dice
from se_monai.apps.experiment.testset import datalists, prepare_dataset, prepare_test_scales
from se_monai.io import is_nifti
from se_monai.ops.atomic import atomic_write
from se_monai.workflows import resolve_bundle_dir, run_bundle

__all__ = ["run_experiment", "predict"]


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


def _train_overrides(
    config: dict[str, Any],
    run: dict[str, Any],
    run_dir: Path,
    training: list[dict[str, str]],
    validation: dict[str, str],
    bundle_dir: Path,
) -> dict[str, Any]:
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
    # no validation (nor the recalibration it judges): every run trains a fixed budget
    skipped = ("ValidationHandler", "BatchNormRecalibration", "TensorBoardStatsHandler")
    handlers = [h for h in handlers if not h["_target_"].endswith(skipped)]
    for handler in handlers:  # without validation, the run's model is its final weights
        if handler["_target_"].endswith("CheckpointSaver") and handler.get("save_final"):
            handler["final_filename"] = "model.pt"
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
        "train#dataset": {
            "_target_": "PersistentDataset",
            "data": "@train_datalist",
            "transform": "@train#preprocessing",
            "cache_dir": str(Path(config["output_dir"]) / "cache"),
        },
        "initialize": [f"$monai.utils.set_determinism(seed={int(run['seed'])})"],
    }
    overrides.update(config.get("bundle_overrides", {}))
    return overrides


def _run_one(
    config: dict[str, Any],
    run: dict[str, Any],
    run_dir: Path,
    training: list[dict[str, str]],
    validation: dict[str, str],
    items: list[dict[str, Any]],
) -> dict[str, Any]:
    shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again from scratch
    run_dir.mkdir(parents=True)
    bundle_dir = resolve_bundle_dir(config.get("bundle_dir"))
    overrides = _train_overrides(config, run, run_dir, training, validation, bundle_dir)
    start = time.perf_counter()
    workflow = run_bundle(["train.json"], bundle_dir=bundle_dir, quiet=True, **overrides)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    train_seconds = time.perf_counter() - start
    loss = float(trainer.state.output[0]["loss"]) if trainer.state.output else float("nan")
    start = time.perf_counter()
    evaluation = {k: overrides[k] for k in ("dataset_dir", "ckpt_dir", "num_classes", "network_def", "patch_size")}
    evaluation.update(
        output_dir=str(run_dir / "test"), test_datalist=[{"image": i["image"], "label": i["label"]} for i in items]
    )
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
        "dice": read_dice(run_dir / "test" / "val_mean_dice_raw.csv", items, class_names),
    }
    with atomic_write(run_dir / "result.json") as partial:
        partial.write_text(json.dumps(result, indent=2) + "\n")
    return result


def run_experiment(config: dict[str, Any], progress: bool = True) -> list[dict[str, Any]]:
    """Run every planned run that has no ``result.json`` yet; returns all results (see :func:`collect_results`).

    Raises:
        ConfigError: a dataset that cannot serve the config.
    """
    output_dir = Path(config["output_dir"])
    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(output_dir / "config.json") as partial:
        partial.write_text(json.dumps({k: v for k, v in config.items() if k[0] != "_"}, indent=2))
    prepare_dataset(config)
    training, test = datalists(config)
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


def predict(output_dir: str | os.PathLike, run: str, image: str | os.PathLike) -> np.ndarray:
    """Label volume that a finished run's model (``<output_dir>/runs/<run>/model.pt``) predicts for one NIfTI image,
    with the bundle's ``inference.json`` (sliding-window inference; same grid as the image).

    Raises:
        ConfigError: no such finished run.
    """
    output_dir = Path(output_dir)
    config = json.loads((output_dir / "config.json").read_text())
    checkpoint, finished = output_dir / "runs" / run / "model.pt", output_dir / "runs" / run / "result.json"
    if not (checkpoint.is_file() and finished.is_file()):
        raise ConfigError(f"{checkpoint}: no finished run {run!r} in {output_dir}")
    arm = json.loads(finished.read_text())["arm"]
    bundle_dir = resolve_bundle_dir(config.get("bundle_dir"))
    with tempfile.TemporaryDirectory() as staging:
        overrides = {
            "datalist": [str(Path(image).resolve())],
            "output_dir": staging,
            "num_classes": int(config.get("num_classes", 3)),
            "network_def": config["arms"][arm]["network_def"],
            "handlers#0#load_path": str(checkpoint),
            "inferer#progress": False,
            "intensity_refinement": False,  # the networks compared, not the shipped brain-tissue refinement
        }
        run_bundle(["inference.json"], bundle_dir=bundle_dir, workflow_type="infer", quiet=True, **overrides)
        (written,) = [p for p in Path(staging).iterdir() if is_nifti(p)]
        return np.asarray(nib.load(str(written)).dataobj).astype(np.int64)
