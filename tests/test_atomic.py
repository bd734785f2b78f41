"""Atomic writes (se_monai.ops.atomic): the target appears only complete, and a failed write leaves it as it was."""

import os

import pytest

from se_monai.ops.atomic import TEMPORARY_PREFIX, atomic_write


def test_write_then_rename(tmp_path):
    target = tmp_path / "labels.nii.gz"
    with atomic_write(target) as partial:
        assert partial.parent == tmp_path and partial.name.endswith("-labels.nii.gz")  # writers see the suffix
        assert partial.name.startswith(TEMPORARY_PREFIX) and not target.exists()
        partial.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="exporter failed"), atomic_write(target) as partial:
        partial.write_bytes(b"half")
        raise RuntimeError("exporter failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError), atomic_write(tmp_path / "missing" / "out.json"):
        pass
