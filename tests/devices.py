"""The devices a test runs on: the CPU always, CUDA when one is available. A CUDA parameter carries the ``cuda``
marker, so ``pytest -m cuda`` selects the CUDA runs alone (``.ci/cuda_check.sh`` on a lent GPU); without a GPU they
skip."""

import pytest
import torch

CUDA = pytest.param(
    "cuda",
    marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")],
    id="cuda",
)
#: ``@pytest.mark.parametrize("device", DEVICES)``
DEVICES = ["cpu", CUDA]
