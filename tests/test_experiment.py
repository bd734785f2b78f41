"""The scale-generalisation experiment runner (se_monai.apps.experiment), its plots and CLI commands."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from se_monai.apps import experiment, plots

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "configs" / "scale_generalisation_quick.json"
FULL = ROOT / "configs" / "scale_generalisation.json"


def test_shipped_configs_load_and_plan():
    full = experiment.load_config(FULL)
    # five networks, each with and without rescaling augmentation
    networks = ("seunet_mean", "seunet_max", "seunet_disco", "unet_paper", "unet_matched")
    assert set(full["arms"]) == {f"{n}{a}" for n in networks for a in ("", "_aug")}
    assert full["networks"]["seunet_disco"]["network_def"]["basis_type"] == "disco"
    assert full["arms"]["unet_paper_aug"]["augment"] and not full["arms"]["unet_paper"]["augment"]
    runs = experiment.plan_runs(full)
    expected = sum(len(experiment.seeds_for(full, s)) for s in full["train_sizes"]) * len(full["arms"])
    assert len(runs) == expected == len({r["name"] for r in runs})
    # a complete first pass (first seed of every size, smallest first) before any repeat
    first_pass = len(full["train_sizes"]) * len(full["arms"])
    assert [r["train_size"] for r in runs[: first_pass : len(full["arms"])]] == sorted(full["train_sizes"])
    assert all(r["seed"] == 0 for r in runs[:first_pass])
    assert experiment.load_config(QUICK)["train_sizes"] == [1]


def test_parameter_count_of_matched_unet_is_close_to_seunet():
    from monai.bundle import ConfigParser

    config = experiment.load_config(FULL)
    counts = {}
    for name in ("seunet_mean", "unet_matched", "unet_paper"):
        parser = ConfigParser({"num_classes": 3, "net": config["networks"][name]["network_def"]})
        counts[name] = sum(p.numel() for p in parser.get_parsed_content("net").parameters())
    assert abs(counts["unet_matched"] - counts["seunet_mean"]) / counts["seunet_mean"] < 0.05
    assert counts["unet_paper"] > 50 * counts["seunet_mean"]


@pytest.mark.parametrize(
    "content, problem",
    [("{not json", "not a readable JSON"), ('{"name": "x"}', "missing"), (None, "not a readable JSON")],
)
def test_bad_config_is_one_line_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "exp.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(experiment.ConfigError, match=problem) as info:
        experiment.load_config(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    path = tmp_path / "exp.json"
    path.write_text('{"name": "x"}')
    done = subprocess.run(
        [sys.executable, "-m", "se_monai.cli", "experiment", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"se-monai: error: {path}: missing {', '.join(experiment.REQUIRED[1:])}"
    ]


def test_prepare_test_scales_keeps_voxels_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(20, 24, 16)).astype(np.float32)
    label = np.zeros((20, 24, 16), np.uint8)
    label[5:15, 6:18, 4:12] = 1
    label[8:12, 9:15, 6:10] = 2
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), str(tmp_path / "a.nii.gz"))
    nib.save(nib.Nifti1Image(label, affine), str(tmp_path / "a_label.nii.gz"))
    pair = [{"image": str(tmp_path / "a.nii.gz"), "label": str(tmp_path / "a_label.nii.gz")}]
    items = experiment.prepare_test_scales(pair, [0.5, 1.0, 1.25], tmp_path / "scaled")
    assert [i["scale"] for i in items] == [0.5, 1.0, 1.25]
    for item in items:
        img, lab = nib.load(item["image"]), nib.load(item["label"])
        assert img.shape == lab.shape == tuple(int(np.floor(s * item["scale"])) for s in image.shape)
        np.testing.assert_allclose(img.affine, affine)  # 1 mm voxels: the anatomy changes size
        values = np.unique(np.asarray(lab.dataobj))
        assert set(values) <= {0, 1, 2} and 2 in values
        # nearest-neighbour labels keep the structure's volume fraction
        fraction = (np.asarray(lab.dataobj) > 0).mean()
        assert abs(fraction - (label > 0).mean()) < 0.05
    np.testing.assert_array_equal(np.asarray(nib.load(items[1]["label"]).dataobj), label)
    mtime = Path(items[0]["image"]).stat().st_mtime_ns
    experiment.prepare_test_scales(pair, [0.5], tmp_path / "scaled")  # written once, then reused
    assert Path(items[0]["image"]).stat().st_mtime_ns == mtime


def _result(arm, network, augment, size, seed, dice):
    """One run's result.json as the runner writes it (the fields the summaries read)."""
    return {
        "arm": arm,
        "network": network,
        "model": network,
        "augment": augment,
        "train_size": size,
        "seed": seed,
        "dice": dice,
        "train_seconds": 1.0,
    }


def _fake_results():
    results = []
    for arm, network, aug, base in (
        ("seunet_mean", "seunet_mean", False, 0.8),
        ("unet_paper_aug", "unet_paper", True, 0.6),
    ):
        for size in (2, 5):
            for seed in (0, 1):
                dice = {
                    f"t1 {s:g}": {
                        "grey matter": base - 0.1 * (1 - s),
                        "white matter": base,
                        "mean": base - 0.05 * (1 - s) + 0.01 * seed + 0.02 * size,
                    }
                    for s in (0.7, 1.0)
                }
                results.append(_result(arm, network, aug, size, seed, dice))
    return results


def test_summarise_averages_seeds_and_reports_spread():
    rows = experiment.summarise(_fake_results())
    cell = {(r["arm"], r["train_size"], r["test_scale"]): r for r in rows}
    assert len(rows) == 2 * 2 * 2
    row = cell[("seunet_mean", 2, 0.7)]
    assert row["n"] == 2
    assert row["dice"] == pytest.approx(0.8 - 0.015 + 0.005 + 0.04)
    assert row["std"] == pytest.approx(0.005)
    text = experiment.format_summary(_fake_results())
    assert "test scale 1" in text and "5 training subjects" in text
    assert f"{cell[('unet_paper_aug', 5, 0.7)]['dice']:.3f}" in text


def _paired_results(offsets):
    """SE-U-Net (optimised basis) and two baselines, 3 seeds x 4 test scales; ``offsets[size]`` is the baseline's
    Dice minus the reference's per (seed, scale), in plan order."""
    results = []
    scales = (0.4, 0.7, 1.0, 2.0)
    for arm, network, aug in (
        ("seunet_disco_aug", "seunet_disco", True),
        ("unet_paper_aug", "unet_paper", True),
        ("unet_matched", "unet_matched", False),  # no reference arm without augmentation: not compared
    ):
        for size, offset in offsets.items():
            for seed in range(3):
                dice = {}
                for i, s in enumerate(scales):
                    value = 0.8 - 0.1 * abs(1 - s) + (0.0 if network == "seunet_disco" else offset[4 * seed + i])
                    # two test images per scale: the pair is their mean
                    dice[f"a {s:g}"] = {"mean": value + 0.01}
                    dice[f"b {s:g}"] = {"mean": value - 0.01}
                results.append(_result(arm, network, aug, size, seed, dice))
    return results


def test_paired_tests_wilcoxon_over_seeds_and_scales():
    worse = [-0.05 - 0.001 * i for i in range(12)]  # the baseline below the reference in all 12 pairs
    mixed = [0.002 * (-1) ** i * (i + 1) for i in range(12)]  # signs alternate: no consistent difference
    results = _paired_results({2: worse, 5: mixed})
    rows = {(r["arm"], r["train_size"]): r for r in experiment.results.paired_tests(results)}
    assert set(rows) == {("unet_paper_aug", 2), ("unet_paper_aug", 5)}
    clear = rows[("unet_paper_aug", 2)]
    assert clear["reference_arm"] == "seunet_disco_aug" and clear["pairs"] == 12
    assert clear["difference"] == pytest.approx(-np.mean(worse))
    # exact two-sided signed-rank p when all 12 differences have one sign: 2 / 2^12
    assert clear["p_value"] == pytest.approx(2 / 2**12) and not clear["within_noise"]
    noise = rows[("unet_paper_aug", 5)]
    assert noise["difference"] == pytest.approx(-np.mean(mixed)) and noise["p_value"] > 0.5 and noise["within_noise"]
    text = experiment.format_summary(results)
    assert "Wilcoxon" in text and f"p={clear['p_value']:.2g}" in text and "~" in text
    assert experiment.results.paired_tests(_fake_results()) == []  # no optimised-basis arm: no tests


def test_plot_segmentation_draws_the_labels(tmp_path):
    import matplotlib.image

    grid = np.indices((24, 24, 24)) - 12
    image = np.exp(-(grid**2).sum(0) / 80.0).astype(np.float32)
    labels = ((grid**2).sum(0) < 36).astype(np.uint8) + ((grid**2).sum(0) < 9)
    drawn = plots.plot_segmentation(image, labels, tmp_path / "seg.png", ["outer", "inner"])
    bare = plots.plot_segmentation(image, np.zeros_like(labels), tmp_path / "bare.png", ["outer", "inner"])
    with_labels, without = matplotlib.image.imread(drawn), matplotlib.image.imread(bare)
    assert with_labels.shape == without.shape
    # the label colours tint the image: pixels differ from the unlabelled drawing, and colour (R != B) appears
    changed = np.abs(with_labels[..., :3] - without[..., :3]).sum(-1) > 0.1
    assert changed.mean() > 0.01
    assert (np.abs(with_labels[..., 0] - with_labels[..., 2]) > 0.1)[changed].mean() > 0.5
    with pytest.raises(ValueError, match="same shape"):
        plots.plot_segmentation(image, labels[:-1], tmp_path / "bad.png", ["outer", "inner"])
    assert not (tmp_path / "bad.png").exists()


def test_plots_are_written(tmp_path):
    written = plots.plot_results(_fake_results(), tmp_path)
    assert [p.name for p in written] == [
        "dice_vs_train_size.png",
        "dice_vs_test_scale.png",
        "dice_vs_test_scale_smallest.png",
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    assert plots.plot_results([], tmp_path / "none") == []


def test_confusion_colours():
    truth = np.array([[0, 1, 1, 2, 0]])
    prediction = np.array([[0, 1, 0, 1, 2]])
    overlay = plots.confusion_colours(prediction, truth)
    assert overlay.shape == (1, 5, 4)
    green, red, blue = overlay[0, 1], overlay[0, 3], overlay[0, 2]
    assert green[1] > 0.5 and red[0] > 0.5 and blue[2] > 0.5
    assert overlay[0, 0, 3] == 0 and overlay[0, 4, 0] > 0.5  # background stays clear; predicted there is FP
    with pytest.raises(ValueError, match="shape"):
        plots.confusion_colours(prediction, truth[:, :3])


def test_quick_config_runs_resumes_and_plots(tmp_path, icbm_dataset):
    """The CI smoke test of the runner: the quick config end to end through the CLI, then a resume and an overlay."""
    from se_monai.cli import main

    out = tmp_path / "quick"
    main(
        ["experiment", str(QUICK), "--output_dir", str(out), "--dataset_dir", str(icbm_dataset), "--progress", "False"]
    )
    config = experiment.load_config(QUICK)
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(config["arms"]) * len(config["test_scales"])
    assert {r["arm"] for r in rows} == set(config["arms"])
    assert {float(r["test_scale"]) for r in rows} == set(config["test_scales"])
    for row in rows:
        dice = [float(row["grey matter"]), float(row["white matter"])]
        assert all(0.0 <= d <= 1.0 for d in dice)
        assert float(row["mean"]) == pytest.approx(np.mean(dice), abs=1e-3)
    results = json.loads((out / "results.json").read_text())
    assert all(r["iterations"] == config["iterations"] for r in results)
    assert (out / "dice_vs_test_scale.png").is_file() and (out / "dice_vs_train_size.png").is_file()
    # resumable: finished runs are not repeated
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")}
    assert len(stamps) == len(config["arms"])
    main(
        [
            "experiment",
            str(QUICK),
            "--output_dir",
            str(out),
            "--dataset_dir",
            str(icbm_dataset),
            "--progress",
            "False",
            "--plots",
            "False",
        ]
    )
    assert {p: p.stat().st_mtime_ns for p in out.glob("runs/*/result.json")} == stamps
    # an overlay of two arms' predictions on the rescaled real T1
    arms = list(config["arms"])[:2]  # SE-U-Net and the matched UNet
    main(["plot-overlay", str(out), "--arms", f"[{arms[0]},{arms[1]}]", "--scale", "0.7"])
    overlay = out / "overlay_n001_scale070.png"
    assert overlay.read_bytes()[:4] == b"\x89PNG"
    prediction = experiment.predict(out, f"{arms[0]}__n001__seed0", next(out.glob("test_scales/*_scale070.nii.gz")))
    assert prediction.shape == nib.load(str(next(out.glob("test_scales/*_scale070_label.nii.gz")))).shape
    assert set(np.unique(prediction)) <= {0, 1, 2}
