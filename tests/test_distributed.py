"""Multi-process training and evaluation with torchrun: bundle/configs/multi_gpu_train.json and
multi_gpu_evaluate.json on two CPU processes (Gloo), as a user would run them on N GPUs (NCCL)."""

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import torch

from se_monai.workflows import default_bundle_dir

BUNDLE = default_bundle_dir()


def _torchrun(configs, tmp_path, dataset, **overrides):
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(configs),
        "--meta_file",
        str(BUNDLE / "configs" / "metadata.json"),
        "--bundle_root",
        str(BUNDLE),
        "--dataset_dir",
        str(dataset),
    ]
    for key, value in overrides.items():
        args += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_process_training_keeps_ranks_identical_and_checkpoints_once(icbm_csf_dataset, tmp_path):
    # each rank saves its initial and final weights; the ranks train on different subjects (DistributedSampler),
    # so only the gradient all-reduce of DistributedDataParallel keeps them equal
    probe = tmp_path / "probe.json"
    probe.write_text(
        json.dumps(
            {
                "+initialize": [
                    "$torch.save({k: v.clone() for k, v in @network_def.state_dict().items()}, "
                    "os.path.join(@output_dir, f'init{dist.get_rank()}.pt'))"
                ],
                "finalize": [
                    "$torch.save(@network_def.state_dict(), os.path.join(@output_dir, f'final{dist.get_rank()}.pt'))",
                    "$dist.barrier()",
                    "$dist.destroy_process_group()",
                ],
            }
        )
    )
    configs = [str(BUNDLE / "configs" / "train.json"), str(BUNDLE / "configs" / "multi_gpu_train.json"), str(probe)]
    ckpt, out = tmp_path / "models", tmp_path / "eval"
    out.mkdir()
    done = _torchrun(
        configs,
        tmp_path,
        icbm_csf_dataset,
        ckpt_dir=str(ckpt),
        output_dir=str(out),
        epochs=1,
        val_interval=1,
        bn_recalibration_batches=4,
        patch_size=[32, 32, 32],
        num_samples=1,
        num_workers=0,
        num_val=0,
        train_datalist="$@datalist",
        val_datalist="$@datalist",
        **{"validate#inferer#roi_size": [128, 128, 128]},
    )
    init0, init1 = (torch.load(out / f"init{r}.pt") for r in (0, 1))
    final0, final1 = (torch.load(out / f"final{r}.pt") for r in (0, 1))
    assert set(final0) == set(final1)
    for key in final0:
        torch.testing.assert_close(final0[key], final1[key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(init0[key], init1[key], rtol=0, atol=0, msg=key)
    weights = [k for k in final0 if k.endswith("weight") and final0[k].is_floating_point()]
    assert all(not torch.equal(final0[k], init0[k]) for k in weights)  # it trained
    # the checkpoints (best by validation, and the weights as trained) are written once, by rank 0, without DDP's
    # "module." prefix; the run ends holding the best one (BatchNormRecalibration loads it, recalibrated if that
    # validated better); the resumable training state is gone once the run completes
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.pt", "model_final.pt"]
    kept, as_trained = torch.load(ckpt / "model.pt"), torch.load(ckpt / "model_final.pt")
    assert set(kept) == set(as_trained) == set(final0)
    for key in final0:
        torch.testing.assert_close(kept[key], final0[key], rtol=0, atol=0)
    # the validation metric is reduced over the ranks (one subject each): both ranks' evaluators log the same values
    best = Counter(
        line.split("val_mean_dice: ")[1]
        for line in (done.stdout + done.stderr).splitlines()
        if "Got new best metric of val_mean_dice" in line
    )
    assert best and all(count == 2 for count in best.values()), best


def test_two_process_evaluation_writes_metrics_once(icbm_csf_dataset, tmp_path):
    # a checkpoint to evaluate: the bundle's shipped model
    ckpt = tmp_path / "models"
    ckpt.mkdir()
    (ckpt / "model.pt").symlink_to(BUNDLE / "models" / "model.pt")
    configs = [str(BUNDLE / "configs" / f) for f in ("train.json", "evaluate.json", "multi_gpu_evaluate.json")]
    out = tmp_path / "eval"
    _torchrun(
        configs,
        tmp_path,
        icbm_csf_dataset,
        ckpt_dir=str(ckpt),
        output_dir=str(out),
        num_workers=0,
        test_datalist="$@datalist",
        **{"validate#inferer#roi_size": [128, 128, 128]},
    )
    with open(out / "val_mean_dice_raw.csv") as handle:
        rows = list(csv.reader(handle))
    # both ranks' images, gathered into one file on rank 0
    assert len(rows) == 1 + 2
    assert {Path(r[0]).name.split(".")[0] for r in rows[1:]} == {
        Path(p).name.split(".")[0] for p in sorted((icbm_csf_dataset / "imagesTr").iterdir())
    }
    dice = [float(r[-1]) for r in rows[1:]]
    assert all(0.5 < d <= 1.0 for d in dice)  # the shipped model on synthetic subjects of its training distribution
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".csv") == sorted(
        ["val_mean_dice_raw.csv", "metrics.csv", "val_mean_dice_summary.csv"]
    )
