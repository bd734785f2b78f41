"""Plots of the scale-generalisation experiment (matplotlib, written as PNG).

- :func:`plot_results`: mean Dice against training-set size and against test scale, in the style of Wimmer et al.
  (2023), Fig. 3 (paper_results.png): SE-U-Net with mean ("avg") projection green circles, with max projection blue
  triangles, the paper's U-Net baseline red squares; dashed without and solid with rescaling augmentation.
- :func:`plot_overlay`: one slice of an image, its ground truth and the predictions of several models, each voxel of
  a prediction coloured as true positive, false positive or false negative.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["STYLES", "plot_results", "plot_overlay", "confusion_colours"]

#: Colour and marker per network of configs/scale_generalisation.json; other networks get matplotlib's cycle.
STYLES = {
    "seunet_mean": ("tab:green", "o"),
    "seunet_max": ("tab:blue", "^"),
    "seunet_disco": ("tab:olive", "p"),
    "unet_paper": ("tab:red", "s"),
    "unet_matched": ("tab:purple", "D"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style(network: str, index: int) -> tuple[str, str]:
    return STYLES.get(network, (f"C{index % 10}", "v"))


def _draw(ax, rows: list[dict[str, Any]], column: str) -> None:
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    for index, arm in enumerate(arms):
        points = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r[column])
        colour, marker = _style(points[0]["network"], index)
        label = points[0]["model"] + (" + augmentation" if points[0]["augment"] else "")
        ax.errorbar([p[column] for p in points], [p["dice"] for p in points], yerr=[p["std"] for p in points],
                    color=colour, marker=marker, markerfacecolor="none", linestyle="-" if points[0]["augment"] else "--",
                    capsize=3, label=label)  # fmt: skip
    ax.grid(axis="y", linestyle="--", alpha=0.5)


def plot_results(results: Sequence[dict[str, Any]], output_dir: str | os.PathLike,
                 test_scales: Sequence[float] | None = None) -> list[Path]:  # fmt: skip
    """Draw ``dice_vs_train_size.png`` (test scale 1.0, or the closest), ``dice_vs_test_scale.png`` (largest
    training set) and ``dice_vs_test_scale_smallest.png`` (smallest training set, when it differs) from the
    experiment's results (:func:`se_monai.experiment.collect_results`).

    Args:
        results: finished runs.
        output_dir: folder for the PNG files.
        test_scales: scales to show on the second plot (default: all in the results).

    Returns:
        The files written (none when there are no results).
    """
    from se_monai.experiment import summarise

    rows = summarise(results)
    if not rows:
        return []
    plt = _pyplot()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    scales = sorted({r["test_scale"] for r in rows})
    reference = min(scales, key=lambda s: abs(s - 1.0))
    largest = max(r["train_size"] for r in rows)
    shown = set(scales if test_scales is None else (float(s) for s in test_scales))
    smallest = min(r["train_size"] for r in rows)
    figures = [
        ("dice_vs_train_size.png", [r for r in rows if r["test_scale"] == reference], "train_size",
         "Number of training subjects", f"test scale {reference:g}"),
        ("dice_vs_test_scale.png", [r for r in rows if r["train_size"] == largest and r["test_scale"] in shown],
         "test_scale", "Scaling of test data", f"{largest} training subjects"),
    ]  # fmt: skip
    if smallest != largest:
        figures.append(("dice_vs_test_scale_smallest.png",
                        [r for r in rows if r["train_size"] == smallest and r["test_scale"] in shown],
                        "test_scale", "Scaling of test data", f"{smallest} training subjects"))  # fmt: skip
    written = []
    for name, subset, column, xlabel, title in figures:
        fig, ax = plt.subplots(figsize=(10.4, 4.8))
        _draw(ax, subset, column)
        ax.set_xticks(sorted({r[column] for r in subset}))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Mean Dice on test data")
        ax.set_title(title)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the axes, as the paper
        fig.tight_layout()
        fig.savefig(output_dir / name, dpi=120)
        plt.close(fig)
        written.append(output_dir / name)
    return written


def confusion_colours(prediction: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """RGBA overlay of a label prediction against the ground truth (same shape, integer labels, 0 = background).

    True positive (foreground, right class): green; false positive (foreground predicted, background or another
    class in the truth): red; false negative (foreground in the truth, background predicted): blue; else clear.

    Returns:
        Array of shape ``prediction.shape + (4,)``, float in [0, 1].

    Raises:
        ValueError: shapes differ.
    """
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from ground truth {truth.shape}")
    overlay = np.zeros(prediction.shape + (4,))
    overlay[(prediction > 0) & (prediction == truth)] = (0.0, 0.8, 0.0, 0.6)
    overlay[(prediction > 0) & (prediction != truth)] = (0.9, 0.0, 0.0, 0.7)
    overlay[(truth > 0) & (prediction == 0)] = (0.0, 0.3, 1.0, 0.7)
    return overlay


def plot_overlay(image: np.ndarray, truth: np.ndarray, predictions: Mapping[str, np.ndarray],
                 output: str | os.PathLike, axis: int = 2, index: int | None = None,
                 title: str | None = None) -> Path:  # fmt: skip
    """Draw one slice: the image, the ground truth (class colours), then every prediction over the image with
    :func:`confusion_colours`, and the slice's Dice of each prediction (foreground classes averaged).

    Args:
        image: ``(D, H, W)`` intensities.
        truth: ``(D, H, W)`` integer labels.
        predictions: model name to ``(D, H, W)`` integer labels.
        output: PNG to write.
        axis: 0, 1 or 2, the axis the slice is taken across (2: axial for RAS volumes).
        index: slice index (default: the slice with the most foreground in ``truth``).
        title: figure title.

    Returns:
        The PNG path.

    Raises:
        ValueError: shapes differ or ``axis``/``index`` is out of range.
    """
    if image.shape != truth.shape or any(p.shape != truth.shape for p in predictions.values()):
        raise ValueError(f"image {image.shape}, truth {truth.shape} and predictions must have the same shape")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis {axis}: expected 0, 1 or 2")
    if index is None:
        index = int(np.argmax((np.moveaxis(truth, axis, 0) > 0).reshape(truth.shape[axis], -1).sum(1)))
    if not 0 <= index < truth.shape[axis]:
        raise ValueError(f"slice {index} outside 0..{truth.shape[axis] - 1}")

    def cut(volume: np.ndarray) -> np.ndarray:
        return np.rot90(np.take(volume, index, axis=axis))

    plt = _pyplot()
    panels = 2 + len(predictions)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 3.6))
    picture = cut(image)
    classes = cut(truth)
    axes[0].imshow(picture, cmap="gray")
    axes[0].set_title("image")
    axes[1].imshow(picture, cmap="gray")
    axes[1].imshow(np.ma.masked_equal(classes, 0), cmap="viridis", alpha=0.6, interpolation="nearest",
                   vmin=1, vmax=max(int(truth.max()), 2))  # fmt: skip
    axes[1].set_title("ground truth")
    for ax, (name, prediction) in zip(axes[2:], predictions.items()):
        guess = cut(prediction)
        dice = []
        for c in range(1, int(max(truth.max(), prediction.max())) + 1):
            total = (guess == c).sum() + (classes == c).sum()
            if total:
                dice.append(2 * ((guess == c) & (classes == c)).sum() / total)
        ax.imshow(picture, cmap="gray")
        ax.imshow(confusion_colours(guess, classes), interpolation="nearest")
        ax.set_title(f"{name}\nslice Dice {np.mean(dice):.3f}" if dice else name, fontsize="small")
    for ax in axes:
        ax.set_axis_off()
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=c, label=n) for c, n in
                        (("tab:green", "true positive"), ("tab:red", "false positive"), ("tab:blue", "false negative"))],
               loc="lower center", ncol=3, fontsize="small")  # fmt: skip
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    plt.close(fig)
    return output
