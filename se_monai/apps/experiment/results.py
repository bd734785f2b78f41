"""Results of the experiment: per-image Dice of a run, the results files gathered from all runs, and summary tables."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

from se_monai.io import nifti_stem
from se_monai.ops.atomic import atomic_write

__all__ = ["REFERENCE_NETWORK", "read_dice", "collect_results", "summarise", "paired_tests", "format_summary"]

#: Network the paired tests compare every other network with: SE-U-Net with the optimised basis.
REFERENCE_NETWORK = "seunet_disco"
#: Significance level below which a difference is reported as more than noise.
ALPHA = 0.05


def read_dice(csv_path: Path, items: list[dict[str, Any]], class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per-image Dice from MetricsSaver's ``val_mean_dice_raw.csv``.

    Returns:
        ``{"<source> <scale>": {class name: Dice, "mean": Dice}}``.
    """
    with open(csv_path) as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    by_stem = {nifti_stem(item["image"]): item for item in items}
    result = {}
    for row in body:
        item = by_stem[nifti_stem(row[0])]
        values = {name: float(row[1 + i]) for i, name in enumerate(class_names)}
        values["mean"] = float(row[header.index("mean")])
        result[f"{item['source']} {item['scale']:g}"] = values
    return result


def collect_results(output_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """All finished runs under ``output_dir/runs``, and ``results.json`` / ``results.csv`` rewritten from them."""
    output_dir = Path(output_dir)
    results = [json.loads(p.read_text()) for p in sorted(output_dir.glob("runs/*/result.json"))]
    with atomic_write(output_dir / "results.json") as partial:
        partial.write_text(json.dumps(results, indent=1) + "\n")
    with atomic_write(output_dir / "results.csv") as partial, open(partial, "w", newline="") as handle:
        writer = csv.writer(handle)
        classes = sorted({c for r in results for d in r["dice"].values() for c in d if c != "mean"})
        writer.writerow(
            [
                "arm",
                "model",
                "augment",
                "train_size",
                "seed",
                "test_image",
                "test_scale",
                *classes,
                "mean",
                "train_seconds",
            ]
        )
        for r in results:
            for key, dice in r["dice"].items():
                source, scale = key.rsplit(" ", 1)
                writer.writerow(
                    [
                        r["arm"],
                        r["model"],
                        r["augment"],
                        r["train_size"],
                        r["seed"],
                        source,
                        scale,
                        *[f"{dice.get(c, float('nan')):.4f}" for c in classes],
                        f"{dice['mean']:.4f}",
                        f"{r['train_seconds']:.1f}",
                    ]
                )
    return results


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
        rows.append(
            {
                "arm": arm,
                "network": info[arm].get("network", arm),
                "model": info[arm]["model"],
                "augment": info[arm]["augment"],
                "train_size": size,
                "test_scale": scale,
                "dice": float(seed_means.mean()),
                "std": float(seed_means.std()),
                "n": len(seed_means),
            }
        )
    return rows


def _seed_scale_means(results: Sequence[dict[str, Any]]) -> dict[tuple[str, int, int, float], float]:
    """Mean Dice over test images per (arm, training-set size, seed, test scale)."""
    cells: dict[tuple[str, int, int, float], list[float]] = {}
    for result in results:
        for key, dice in result["dice"].items():
            cell = (result["arm"], int(result["train_size"]), int(result["seed"]), float(key.rsplit(" ", 1)[1]))
            cells.setdefault(cell, []).append(float(dice["mean"]))
    return {cell: float(np.mean(values)) for cell, values in cells.items()}


def paired_tests(results: Sequence[dict[str, Any]], reference: str = REFERENCE_NETWORK) -> list[dict[str, Any]]:
    """Paired comparison of the ``reference`` network with every other network trained with the same augmentation
    setting, per training-set size: the differences of mean Dice (reference minus other) over every (seed, test
    scale) both have, and the two-sided Wilcoxon signed-rank test on them (scipy.stats.wilcoxon).

    The test scales of one seed share a trained network, so the pairs are not independent samples; with fewer than
    6 pairs no difference can reach p < 0.05. Read ``within_noise`` as "not shown to differ", not as "equal".

    Returns:
        Rows ``{"arm", "reference_arm", "train_size", "pairs", "difference", "p_value", "within_noise"}``; empty
        when no arm uses the ``reference`` network.
    """
    cells = _seed_scale_means(results)
    info = {r["arm"]: r for r in results}
    rows = []
    for arm, other in info.items():
        matches = [a for a, i in info.items() if i["network"] == reference and i["augment"] == other["augment"]]
        if other["network"] == reference or not matches:
            continue
        for size in sorted({c[1] for c in cells if c[0] == arm}):
            keys = sorted(c[2:] for c in cells if c[:2] == (arm, size) and (matches[0], size, *c[2:]) in cells)
            diff = np.array([cells[(matches[0], size, *k)] - cells[(arm, size, *k)] for k in keys])
            p_value = float(wilcoxon(diff).pvalue) if np.count_nonzero(diff) else 1.0
            rows.append(
                {
                    "arm": arm,
                    "reference_arm": matches[0],
                    "train_size": size,
                    "pairs": len(diff),
                    "difference": float(diff.mean()) if len(diff) else float("nan"),
                    "p_value": p_value,
                    "within_noise": p_value >= ALPHA,
                }
            )
    return rows


def _tests_table(rows: list[dict[str, Any]], reference_network: str) -> str:
    sizes = sorted({r["train_size"] for r in rows})
    cell = {(r["arm"], r["train_size"]): r for r in rows}
    lines = [
        f"{reference_network} minus each arm: mean Dice difference over (seed, test scale) "
        f"pairs, Wilcoxon p; '~' where p >= {ALPHA:g} (within noise)",
        f"{'arm':<22}" + "".join(f"{s:>22g}" for s in sizes),
    ]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        texts = []
        for size in sizes:
            r = cell.get((arm, size))
            mark = "~" if r and r["within_noise"] else " "
            texts.append("-" if r is None else f"{r['difference']:+.3f} p={r['p_value']:.2g} n={r['pairs']}{mark}")
        lines.append(f"{arm:<22}" + "".join(f"{t:>22}" for t in texts))
    return "\n".join(lines)


def _table(rows: list[dict[str, Any]], column: str, title: str, spread: bool = True) -> str:
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    columns = sorted({r[column] for r in rows})
    cell = {(r["arm"], r[column]): r for r in rows}
    lines = [title, f"{'arm':<22}" + "".join(f"{c:>14g}" for c in columns)]
    for arm in arms:
        values = [cell.get((arm, c)) for c in columns]
        lines.append(
            f"{arm:<22}"
            + "".join(
                f"{'-':>14}" if v is None else f"{v['dice']:>8.3f} ±{v['std']:.3f}" if spread else f"{v['dice']:>14.3f}"
                for v in values
            )
        )
    return "\n".join(lines)


def format_summary(results: Sequence[dict[str, Any]], reference_network: str = REFERENCE_NETWORK) -> str:
    """Tables of mean Dice (± standard deviation over seeds): by training-set size at test scale 1.0 (or the scale
    closest to it); by test scale for each training-set size; the drop from scale 1.0 to 0.7; and the paired tests
    of ``reference_network`` against every other (:func:`paired_tests`) when it is in the results."""
    rows = summarise(results)
    if not rows:
        return "no finished runs"
    scales = sorted({r["test_scale"] for r in rows})
    reference = min(scales, key=lambda s: abs(s - 1.0))
    by_size = _table(
        [r for r in rows if r["test_scale"] == reference],
        "train_size",
        f"mean Dice by training-set size (columns), test scale {reference:g}",
    )
    tables = [by_size]
    for size in sorted({r["train_size"] for r in rows}):
        tables.append(
            _table(
                [r for r in rows if r["train_size"] == size],
                "test_scale",
                f"mean Dice by test scale (columns), {size} training subjects",
            )
        )
    low = 0.7 if 0.7 in scales else min(scales)
    drops = []
    for high_row, low_row in _pairs(rows, reference, low).values():
        drops.append({**high_row, "dice": high_row["dice"] - low_row["dice"]})
    tables.append(
        _table(
            drops,
            "train_size",
            f"Dice drop from test scale {reference:g} to {low:g} by training-set size (columns; seed means)",
            spread=False,
        )
    )
    tests = paired_tests(results, reference_network)
    if tests:
        tables.append(_tests_table(tests, reference_network))
    return "\n\n".join(tables)


def _pairs(rows: list[dict[str, Any]], first: float, second: float) -> dict[tuple[str, int], tuple[dict, dict]]:
    cell = {(r["arm"], r["train_size"], r["test_scale"]): r for r in rows}
    return {
        (arm, size): (cell[(arm, size, first)], cell[(arm, size, second)])
        for (arm, size, scale) in cell
        if scale == first and (arm, size, second) in cell
    }
