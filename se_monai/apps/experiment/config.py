"""The experiment's JSON config (see :mod:`se_monai.apps.experiment`), its arms, and the plan of runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "REQUIRED", "load_config", "arms", "run_name", "scale_tag", "seeds_for", "plan_runs"]

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
