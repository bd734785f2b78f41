"""Validation Dice of a trained bundle's checkpoint after its batch-norm statistics are re-estimated over the
skull-stripped training subjects, as the bundle's BatchNormRecalibration does for the best checkpoint at the end of
training (docs/results.md, "The CSF class": the final weights against the best checkpoint). Nothing is written into
the bundle: the evaluator's checkpoint saver and logs go to a temporary folder.

Run (after `se-monai train`; about 2 minutes on 2 CPU cores):

    .venv/bin/python studies/recalibrated_validation.py out/icbm152_bundle out/icbm152_bundle/models/model_final.pt
"""

from __future__ import annotations

import tempfile

import fire
import torch
from monai.bundle import ConfigParser

from se_monai.handlers import recalibrate_batch_norm


def main(bundle_dir: str, checkpoint: str, num_batches: int = 150, seed: int = 0) -> float:
    """Print and return the validation mean Dice of ``checkpoint`` recalibrated over ``num_batches`` batches."""
    with tempfile.TemporaryDirectory() as tmp:
        parser = ConfigParser()
        parser.read_config(f"{bundle_dir}/configs/train.json")
        parser.update({"bundle_root": bundle_dir, "ckpt_dir": tmp, "output_dir": tmp, "num_workers": 0})
        network = parser.get_parsed_content("network")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        network.load_state_dict(state.get("model", state))
        torch.manual_seed(seed)
        recalibrate_batch_norm(network, parser.get_parsed_content("train#bn_dataloader"), num_batches)
        evaluator = parser.get_parsed_content("validate#evaluator")
        evaluator.run()
        dice = float(evaluator.state.metrics[evaluator.state.key_metric_name])
    print(f"{checkpoint}: validation {evaluator.state.key_metric_name} {dice:.4f} after recalibration")
    return dice


if __name__ == "__main__":
    fire.Fire(main)
