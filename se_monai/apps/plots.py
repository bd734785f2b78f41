"""Plots of the scale-generalisation experiment (matplotlib, written as PNG).

- :func:`plot_results`: mean Dice against training-set size and against test scale, in the style of Wimmer et al.
  (2023), Fig. 3 (paper_results.png): SE-U-Net with mean ("avg") projection green circles, with max projection blue
  triangles, the paper's U-Net baseline red squares; dashed without and solid with rescaling augmentation.
- :func:`plot_overlay`: one slice of an image, its ground truth and the predictions of several models, each voxel of
  a prediction coloured as true positive, false positive or false negative.
- :func:`plot_segmentation`: three orthogonal slices of an image with a label map over it, for images without ground
  truth (real scans).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from se_monai.apps import experiment
from se_monai.io import InputError
from se_monai.metrics import label_dice
from se_monai.ops.atomic import atomic_write

__all__ = ["STYLES", "plot_results", "plot_overlay", "plot_segmentation", "confusion_colours", "plot_run_overlay"]

#: Colour and marker per network of configs/scale_generalisation.json; other networks get matplotlib's cycle.
STYLES = {
    "seunet_mean": ("tab:green", "o"),
    "seunet_max": ("tab:blue", "^"),
    "seunet_disco": ("tab:olive", "p"),
    "unet_paper": ("tab:red", "s"),
    "unet_matched": ("tab:purple", "D"),
}


def _pyplot():
    # matplotlib is imported when a plot is drawn, not with the module: it is heavy, and only plotting needs it
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
        ax.errorbar(
            [p[column] for p in points],
            [p["dice"] for p in points],
            yerr=[p["std"] for p in points],
            color=colour,
            marker=marker,
            markerfacecolor="none",
            linestyle="-" if points[0]["augment"] else "--",
            capsize=3,
            label=label,
        )
    ax.grid(axis="y", linestyle="--", alpha=0.5)


def plot_results(
    results: Sequence[dict[str, Any]], output_dir: str | os.PathLike, test_scales: Sequence[float] | None = None
) -> list[Path]:
    """Draw ``dice_vs_train_size.png`` (test scale 1.0, or the closest), ``dice_vs_test_scale.png`` (largest
    training set) and ``dice_vs_test_scale_smallest.png`` (smallest training set, when it differs) from the
    experiment's results (:func:`se_monai.apps.experiment.collect_results`).

    Args:
        results: finished runs.
        output_dir: folder for the PNG files.
        test_scales: scales to show on the second plot (default: all in the results).

    Returns:
        The files written (none when there are no results).
    """
    rows = experiment.summarise(results)
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
        (
            "dice_vs_train_size.png",
            [r for r in rows if r["test_scale"] == reference],
            "train_size",
            "Number of training subjects",
            f"test scale {reference:g}",
        ),
        (
            "dice_vs_test_scale.png",
            [r for r in rows if r["train_size"] == largest and r["test_scale"] in shown],
            "test_scale",
            "Scaling of test data",
            f"{largest} training subjects",
        ),
    ]
    if smallest != largest:
        figures.append(
            (
                "dice_vs_test_scale_smallest.png",
                [r for r in rows if r["train_size"] == smallest and r["test_scale"] in shown],
                "test_scale",
                "Scaling of test data",
                f"{smallest} training subjects",
            )
        )
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
        written.append(_save(fig, output_dir / name))
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
    overlay = np.zeros((*prediction.shape, 4))
    overlay[(prediction > 0) & (prediction == truth)] = (0.0, 0.8, 0.0, 0.6)
    overlay[(prediction > 0) & (prediction != truth)] = (0.9, 0.0, 0.0, 0.7)
    overlay[(truth > 0) & (prediction == 0)] = (0.0, 0.3, 1.0, 0.7)
    return overlay


def _save(fig, output: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG atomically (creating the folder) and close it."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(output) as partial:
        fig.savefig(partial, dpi=120, format="png")
    _pyplot().close(fig)
    return output


def _slice_index(truth: np.ndarray, axis: int, index: int | None) -> int:
    """``index`` checked against the volume, or the slice across ``axis`` with the most foreground in ``truth``."""
    if axis not in (0, 1, 2):
        raise ValueError(f"axis {axis}: expected 0, 1 or 2")
    if index is None:
        index = int(np.argmax((np.moveaxis(truth, axis, 0) > 0).reshape(truth.shape[axis], -1).sum(1)))
    if not 0 <= index < truth.shape[axis]:
        raise ValueError(f"slice {index} outside 0..{truth.shape[axis] - 1}")
    return index


def _draw_prediction(ax, picture: np.ndarray, guess: np.ndarray, classes: np.ndarray, name: str) -> None:
    """One prediction over the image in confusion colours, titled with its Dice on the slice (foreground classes
    present in either, averaged)."""
    highest = int(max(guess.max(), classes.max()))
    present = [c for c in range(1, highest + 1) if (guess == c).any() or (classes == c).any()]
    dice = list(label_dice(guess, classes, {str(c): c for c in present}).values())
    ax.imshow(picture, cmap="gray")
    ax.imshow(confusion_colours(guess, classes), interpolation="nearest")
    ax.set_title(f"{name}\nslice Dice {np.mean(dice):.3f}" if dice else name, fontsize="small")


def plot_overlay(
    image: np.ndarray,
    truth: np.ndarray,
    predictions: Mapping[str, np.ndarray],
    output: str | os.PathLike,
    axis: int = 2,
    index: int | None = None,
    title: str | None = None,
) -> Path:
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
    index = _slice_index(truth, axis, index)

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
    axes[1].imshow(
        np.ma.masked_equal(classes, 0),
        cmap="viridis",
        alpha=0.6,
        interpolation="nearest",
        vmin=1,
        vmax=max(int(truth.max()), 2),
    )
    axes[1].set_title("ground truth")
    for ax, (name, prediction) in zip(axes[2:], predictions.items(), strict=True):
        _draw_prediction(ax, picture, cut(prediction), classes, name)
    for ax in axes:
        ax.set_axis_off()
    from matplotlib.patches import Patch  # matplotlib: see _pyplot

    fig.legend(
        handles=[
            Patch(color=c, label=n)
            for c, n in (("tab:green", "true positive"), ("tab:red", "false positive"), ("tab:blue", "false negative"))
        ],
        loc="lower center",
        ncol=3,
        fontsize="small",
    )
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, output)


def plot_segmentation(
    image: np.ndarray,
    labels: np.ndarray,
    output: str | os.PathLike,
    class_names: Sequence[str],
    title: str | None = None,
) -> Path:
    """Draw a label map over its image on the sagittal, coronal and axial slices through the centre of the labelled
    voxels (axes 0, 1, 2 of a RAS-oriented volume), each class in its own colour with a legend.

    Args:
        image: ``(D, H, W)`` intensities.
        labels: ``(D, H, W)`` integer labels, 0 = background, ``c`` = ``class_names[c - 1]``.
        output: PNG to write (atomically).
        class_names: names of the foreground classes.
        title: figure title.

    Returns:
        The PNG path.

    Raises:
        ValueError: the shapes differ.
    """
    if image.shape != labels.shape:
        raise ValueError(f"image {image.shape} and labels {labels.shape} must have the same shape")
    found = np.argwhere(labels > 0)
    centre = found.mean(0).round().astype(int) if len(found) else np.array(labels.shape) // 2
    plt = _pyplot()
    from matplotlib.colors import ListedColormap  # matplotlib: see _pyplot
    from matplotlib.patches import Patch

    colours = [f"C{i % 10}" for i in range(len(class_names))]
    cmap = ListedColormap(colours)
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 4.0))
    for axis, ax in enumerate(axes):
        picture = np.rot90(np.take(image, centre[axis], axis=axis))
        cut = np.rot90(np.take(labels, centre[axis], axis=axis))
        ax.imshow(picture, cmap="gray")
        ax.imshow(
            np.ma.masked_equal(cut, 0),
            cmap=cmap,
            vmin=0.5,
            vmax=len(class_names) + 0.5,
            alpha=0.45,
            interpolation="nearest",
        )
        ax.set_axis_off()
    fig.legend(
        handles=[Patch(color=c, label=n) for c, n in zip(colours, class_names, strict=True)],
        loc="lower center",
        ncol=len(class_names),
        fontsize="small",
    )
    if title:
        fig.suptitle(title, fontsize="medium")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, output)


def plot_run_overlay(
    results_dir: str | os.PathLike,
    arms: Sequence[str],
    train_size: int | None = None,
    seed: int = 0,
    scale: float = 0.7,
    axis: int = 2,
    index: int | None = None,
    output: str | os.PathLike | None = None,
) -> Path:
    """:func:`plot_overlay` of the first test image at ``scale`` of an experiment, with the predictions of the runs of
    ``arms`` (sliding-window inference through the bundle, :func:`se_monai.apps.experiment.predict`).

    Args:
        results_dir: an experiment's output folder.
        arms: arm names of its config.
        train_size: the runs' training-set size (default: the smallest of the experiment).
        seed: the runs' seed.
        scale: the test scale of the image.
        axis, index: the slice (see :func:`plot_overlay`).
        output: PNG to write (default ``<results_dir>/overlay_n<size>_scale<scale*100>.png``).

    Returns:
        The path written.

    Raises:
        InputError: not an experiment folder, no test image at ``scale``, an unknown arm, an unfinished run, or a bad
            slice.
    """
    root = Path(results_dir)
    config_path = root / "config.json"
    if not config_path.is_file():
        raise InputError(f"{root}: not an experiment output folder (no config.json)")
    config = json.loads(config_path.read_text())
    size = int(train_size) if train_size is not None else min(config["train_sizes"])
    pairs = experiment.scaled_test_pairs(root, scale)
    if not pairs:
        raise InputError(f"{root / 'test_scales'}: no test image at scale {scale}")
    image_path, label_path = pairs[0]
    target = Path(output) if output else root / f"overlay_n{size:03d}_{experiment.scale_tag(scale)}.png"
    unknown = [arm for arm in arms if arm not in config["arms"]]
    if unknown:
        raise InputError(f"{config_path}: no arm {unknown[0]!r} (arms: {', '.join(config['arms'])})")
    try:
        predictions = {
            config["arms"][arm].get("model", arm)
            + (" + aug." if config["arms"][arm]["augment"] else ""): experiment.predict(
                root, experiment.run_name(arm, size, seed), image_path
            )
            for arm in arms
        }
    except experiment.ConfigError as err:
        raise InputError(str(err)) from err
    image = np.asarray(nib.load(str(image_path)).dataobj, dtype=np.float32)
    truth = np.asarray(nib.load(str(label_path)).dataobj).astype(np.int64)
    title = f"{image_path.name}: test scale {scale:g}, {size} training subjects"
    try:
        return plot_overlay(image, truth, predictions, target, axis=int(axis), index=index, title=title)
    except ValueError as err:
        raise InputError(f"{image_path}: {err}") from err
