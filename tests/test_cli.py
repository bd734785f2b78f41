"""``se-monai``: bad inputs get one line and exit 2, never a partial output or a changed input; good input works."""

import contextlib
import gzip
import hashlib
import io
import logging
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_crops

from se_monai.cli import main
from se_monai.data import load_icbm152
from se_monai.metrics import label_dice


def run_cli(*args: str, process: bool = False) -> subprocess.CompletedProcess:
    """``se-monai ARGS``: in this process (torch and MONAI are imported once for the whole suite), or with
    ``process=True`` as its own ``python -m se_monai.cli`` process, as a user runs it."""
    if process:
        command = [sys.executable, "-m", "se_monai.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)
    out, err, code = io.StringIO(), io.StringIO(), 0
    # as in a new process, no logging handler is set up (an earlier test's bundle run configured one on its stdout)
    handlers, logging.root.handlers = logging.root.handlers, []
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            logging.root.handlers = handlers
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _nifti(path: Path, shape, dtype=np.float32) -> Path:
    nib.save(nib.Nifti1Image(np.random.rand(*shape).astype(dtype), np.eye(4)), str(path))
    return path


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    good = _nifti(tmp / "good.nii.gz", (8, 8, 8))
    text = tmp / "notes.nii.gz"
    text.write_text("this is not an image\n")
    txt = tmp / "image.txt"
    txt.write_text("hello")
    empty = tmp / "empty.nii.gz"
    empty.write_bytes(b"")
    truncated = tmp / "truncated.nii.gz"
    truncated.write_bytes(gzip.compress(gzip.decompress(good.read_bytes())[:400]))
    misnamed = tmp / "download.nii"  # a browser or a copy dropped the .gz
    misnamed.write_bytes(good.read_bytes())
    return {
        "missing": (tmp / "missing.nii.gz", "no such file"),
        "not a NIfTI (content)": (text, "not a readable NIfTI"),
        "not an image (suffix)": (txt, "unknown image format (expected .nii, .nii.gz, .nrrd"),
        "empty": (empty, "empty file"),
        "corrupt": (truncated, "corrupt or truncated"),
        "gzip named .nii": (misnamed, "gzip-compressed, named .nii: rename it to end in .nii.gz"),
        "2-D": (_nifti(tmp / "slice.nii.gz", (8, 8)), "expected a 3-D volume"),
        "5-D": (_nifti(tmp / "five.nii.gz", (4, 4, 4, 1, 2)), "expected a 3-D volume"),
        "channels": (_nifti(tmp / "two_channels.nii.gz", (8, 8, 8, 2)), "has 2 channels"),
        "folder": (tmp, "no DICOM series in the folder"),  # a folder is read as a DICOM series
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "not a NIfTI (content)",
        "not an image (suffix)",
        "empty",
        "corrupt",
        "gzip named .nii",
        "2-D",
        "5-D",
        "channels",
        "folder",
    ],
)
def test_bad_input_one_line_exit_2_no_output(tmp_path, case):
    path, message = _bad_inputs(tmp_path)[case]
    before = digest(path) if path.is_file() else None
    out = tmp_path / "out" / "seg.nii.gz"
    out.parent.mkdir()
    result = run_cli("segment", str(path), str(out), process=case == "corrupt")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("se-monai: error: ") and str(path) in lines[0] and message in lines[0]
    assert "Traceback" not in result.stderr
    assert list(out.parent.iterdir()) == []
    if before is not None:
        assert digest(path) == before


@pytest.mark.parametrize(
    "output,message",
    [
        ("good.nii.gz", "would overwrite the input"),
        ("seg.png", "must end in .nii"),
        ("nofolder/seg.nii.gz", "does not exist"),
    ],
)
def test_bad_output_path(tmp_path, output, message):
    good = _nifti(tmp_path / "good.nii.gz", (8, 8, 8))
    before = digest(good)
    result = run_cli("segment", str(good), str(tmp_path / output))
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert digest(good) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.nii.gz"]


def test_prepare_data_rejects_bad_count(tmp_path):
    result = run_cli("prepare-data", str(tmp_path / "d"), "--num_subjects", "0")
    assert result.returncode == 2 and "num_subjects" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("kind", ["ras", "lps", "aniso"])
def test_segment_keeps_shape_affine_and_finds_tissue(tmp_path, kind):
    crops = write_crops(tmp_path / "images")
    source = crops[kind]
    before = digest(source)
    out = tmp_path / ("seg.nii" if kind == "lps" else "seg.nii.gz")
    if kind == "lps":  # as a user runs it, in a process of its own, with output to files (not a terminal)
        result = run_cli("segment", str(source), str(out), process=True)
        # the result and nothing else: no engine log, no progress bar (not a terminal), no library warning; a crop is
        # a partial field of view, which the plausibility check may flag in one line of our own
        assert result.stdout.splitlines() == [f"segmentation written to {out}"], result.stdout
        warnings = result.stderr.splitlines()
        flagged = [w for w in warnings if w.startswith(f"{source}: implausible segmentation")]
        assert len(warnings) <= 1 and flagged == warnings, warnings
    else:
        result = run_cli("segment", str(source), str(out), "--progress", "False")
    assert result.returncode == 0, result.stderr[-2000:]
    seg, image = nib.load(str(out)), nib.load(str(source))
    assert seg.shape == image.shape
    np.testing.assert_allclose(seg.affine, image.affine, atol=1e-4)
    values = np.asarray(seg.dataobj)
    assert seg.get_data_dtype() == np.uint8 and set(np.unique(values)) <= {0, 1, 2, 3}
    assert digest(source) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".se-monai")] == []
    if kind in ("ras", "lps"):
        labels = np.asarray(nib.load(str(crops["labels"])).dataobj)
        if kind == "lps":
            values = values[::-1, ::-1]
        dice = label_dice(values, labels, {"gm": 1, "wm": 2})
        assert dice["gm"] > 0.7 and dice["wm"] > 0.7, dice


def test_demo_on_real_t1_scores_the_template_labels(icbm_t1_demo):
    """`se-monai demo` from the installed wheel: the shipped model on the real ICBM152 T1 (held out from its training
    data) against the template's own labels, reported, not a target (they draw the template's thick cortex; 0.904 /
    0.904 measured with bundle 1.2.0); the floor catches a broken model or pipeline. Its stdout is the results only."""
    scores, printed = icbm_t1_demo["scores"], icbm_t1_demo["printed"].splitlines()
    seg = nib.load(str(icbm_t1_demo["segmentation"]))
    assert seg.shape == (197, 233, 189)
    assert set(np.unique(np.asarray(seg.dataobj))) == {0, 1, 2, 3}
    assert printed[0] == "segmentation written to " + str(Path("demo") / "icbm152_t1_seg.nii.gz"), printed
    assert len(printed) == 3 and set(scores) == {"grey matter", "white matter"}, printed
    assert scores["grey matter"] >= 0.83 and scores["white matter"] >= 0.83, scores
    # a skull-stripped input's zero voxels are outside the brain: inference labels them "other" (MaskIntensityd)
    t1 = load_icbm152()[0]
    assert int((np.asarray(seg.dataobj)[t1 == 0] > 0).sum()) == 0


def test_verbose_restores_the_engine_logs(tmp_path):
    crops = write_crops(tmp_path / "images")
    out = tmp_path / "seg.nii.gz"
    result = run_cli("segment", str(crops["ras"]), str(out), "--verbose", process=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == f"segmentation written to {out}"
    assert any("SupervisedEvaluator - INFO - Engine run finished" in line for line in lines[:-1]), lines


def test_train_rejects_a_folder_without_dataset_json(tmp_path):
    result = run_cli("train", "--dataset_dir", str(tmp_path))
    assert result.returncode == 2 and "no dataset.json" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bundle_without_model_is_a_clear_error(tmp_path):
    import shutil

    from se_monai.workflows import default_bundle_dir

    bundle = tmp_path / "bundle"
    shutil.copytree(default_bundle_dir() / "configs", bundle / "configs")
    image = _nifti(tmp_path / "image.nii.gz", (8, 8, 8))
    result = run_cli("segment", str(image), str(tmp_path / "seg.nii.gz"), "--bundle_dir", str(bundle))
    assert result.returncode == 2 and "no trained model" in result.stderr
    assert not (tmp_path / "seg.nii.gz").exists()


def test_help_lists_every_command_with_a_summary(capsys):
    from se_monai.cli import commands

    for argv in ([], ["--help"], ["-h"]):
        main(argv)
        lines = capsys.readouterr().out.splitlines()
        listed = {line.split()[0]: line for line in lines if line.startswith("  ")}
        assert list(listed) == [name.replace("_", "-") for name in commands.__all__]
        for name, line in listed.items():
            summary = getattr(commands, name.replace("-", "_")).__doc__.strip().splitlines()[0]
            assert line.endswith(summary) and len(summary) > 20


def test_help_and_version_answer_without_loading_torch():
    code = "import sys; from se_monai.cli import main; main(['--version']); main([]); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    from se_monai import __version__

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"se-monai {__version__}\n") and "export-onnx" in done.stdout
    assert done.stdout.strip().endswith("False")


@pytest.mark.parametrize(
    "argv,closest",
    [
        (["segmnt", "a.nii.gz", "b.nii.gz"], "did you mean 'segment'?"),
        (["prepare_dat"], "did you mean 'prepare-data'?"),
    ],
)
def test_unknown_command_is_one_line_naming_the_closest(argv, closest):
    done = run_cli(*argv, process=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [f"se-monai: error: unknown command '{argv[0]}'; {closest} (se-monai --help describes them)"]


def test_command_help_shows_its_arguments():
    done = run_cli("segment", "--help", process=True)
    text = done.stdout + done.stderr  # python-fire writes help to stderr when it is not a terminal
    assert done.returncode == 0 and "sw_batch_size" in text and "Segment an image (NIfTI, NRRD" in text
    assert run_cli("prepare_data", "--help").returncode == 0  # the Python name works too
