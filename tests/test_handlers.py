"""se_monai.handlers: atomic checkpoints that keep the best across a resumed run; batch-norm recalibration."""

import os

import pytest
import torch
from ignite.engine import Engine, Events

from se_monai.handlers import BatchNormRecalibration, CheckpointSaver, recalibrate_batch_norm


def _validate(folder, net, score, state=None):
    """One validation epoch scoring ``score``, saved by a new saver (as after a restart), optionally restored."""
    engine = Engine(lambda engine, batch: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def _score(engine):
        engine.state.metrics["dice"] = score

    saver = CheckpointSaver(
        str(folder), {"model": net}, save_key_metric=True, key_metric_name="dice", key_metric_filename="model.pt"
    )
    if state is not None:
        saver.load_state_dict(state)
    saver.attach(engine)
    engine.run([0], max_epochs=1)
    return saver


@pytest.mark.parametrize("restored", [False, True])
def test_a_restored_saver_keeps_the_better_checkpoint(tmp_path, restored):
    net = torch.nn.Linear(2, 2)
    best = {k: v.clone() for k, v in net.state_dict().items()}
    state = _validate(tmp_path, net, 0.5).state_dict()
    assert os.listdir(tmp_path) == ["model.pt"] and os.stat(tmp_path / "model.pt").st_mode & 0o044
    with torch.no_grad():
        net.weight.add_(1.0)
    _validate(tmp_path, net, 0.3, state if restored else None)  # a worse score after the restart
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    assert torch.equal(saved["weight"], best["weight"]) == restored
    assert os.listdir(tmp_path) == ["model.pt"]  # replaced in place, no temporary file left


def test_recalibration_is_the_plain_average_of_the_batch_statistics():
    """Oracle: each batch-norm layer's running mean becomes the mean of the batches' means, and its running variance
    the mean of their unbiased variances, over exactly num_batches batches (cycled); momentum and eval mode after."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Identity(), torch.nn.BatchNorm3d(1))
    batches = [{"image": torch.randn(2, 1, 3, 3, 3) * (k + 1) + k} for k in range(3)]
    used = recalibrate_batch_norm(net, batches, num_batches=5)
    seen = [batches[k % 3]["image"] for k in range(5)]
    norm = net[1]
    assert used == 5 and not net.training and norm.momentum == 0.1
    torch.testing.assert_close(norm.running_mean, torch.stack([b.mean() for b in seen]).mean().reshape(1))
    torch.testing.assert_close(norm.running_var, torch.stack([b.var() for b in seen]).mean().reshape(1))
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_batch_norm(net, [], num_batches=2)
    with pytest.raises(ValueError, match=">= 1"):
        recalibrate_batch_norm(net, batches, num_batches=0)


def test_recalibration_handler_validates_the_best_checkpoint_recalibrated(tmp_path):
    """At the end of training the best checkpoint (not the final weights) is loaded, recalibrated and validated;
    the validator (its key-metric saver) decides whether it replaces the checkpoint."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 1, 1), torch.nn.BatchNorm3d(1))
    torch.save(net.state_dict(), tmp_path / "model.pt")
    best_weight = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(5.0)  # the final weights differ from the best checkpoint's
    seen = {}

    class Validator:
        def run(self, epoch):
            seen.update(epoch=epoch, weight=net[0].weight.detach().clone(), mean=net[1].running_mean.clone())

    data = [{"image": torch.full((1, 1, 2, 2, 2), 3.0)}]
    handler = BatchNormRecalibration(Validator(), net, tmp_path / "model.pt", data, num_batches=2)
    trainer = Engine(lambda engine, batch: None)
    handler.attach(trainer)
    trainer.run([0], max_epochs=4)
    torch.testing.assert_close(seen["weight"], best_weight)
    expected = net[0](data[0]["image"]).mean().reshape(1)
    assert seen["epoch"] == 4
    torch.testing.assert_close(seen["mean"], expected)
    # this validator saved nothing better: the network ends as the checkpoint holds it (statistics not recalibrated)
    torch.testing.assert_close(net[1].running_mean, torch.zeros(1))
    torch.testing.assert_close(net[0].weight, best_weight)
    handler.checkpoint = tmp_path / "missing.pt"  # no best checkpoint (no validation ran): nothing to do
    seen.clear()
    handler(trainer)
    assert seen == {}
