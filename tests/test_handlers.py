"""se_monai.handlers: atomic checkpoints that keep the best across a resumed run."""

import os

import pytest
import torch
from ignite.engine import Engine, Events

from se_monai.handlers import CheckpointSaver


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
