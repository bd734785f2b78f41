"""The bundle inside MONAI Label: a real ``monailabel start_server`` with the monaibundle sample app serves
inference on a NIfTI study. Runs in MONAI Label's own environment: ``make test-monailabel`` (docs/monailabel.md)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import write_crops

from se_monai.data import load_icbm152, tissue_labels
from se_monai.metrics import label_dice
from se_monai.workflows import default_bundle_dir

pytestmark = pytest.mark.monailabel

monailabel = pytest.importorskip("monailabel")
requests = pytest.importorskip("requests")

BUNDLE_NAME = "se_monai_brain_tissue"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _monailabel_command() -> list[str]:
    return [str(Path(sys.executable).with_name("monailabel"))]


def _env(**extra: str) -> dict[str, str]:
    """The environment with this interpreter's bin folder first: the ``monailabel`` script runs ``python``."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A MONAI Label server with the monaibundle app, the se-monai bundle as a local bundle, three studies (two of
    them labelled, for training)."""
    root = tmp_path_factory.mktemp("monailabel")
    app = root / "apps" / "monaibundle"
    done = subprocess.run(
        [*_monailabel_command(), "apps", "--download", "--name", "monaibundle", "--output", str(root / "apps")],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    assert done.returncode == 0 and (app / "main.py").is_file(), done.stdout + done.stderr
    bundle = default_bundle_dir()
    shutil.copytree(bundle, app / "model" / BUNDLE_NAME, ignore=shutil.ignore_patterns("eval", "logs", "__pycache__"))
    studies = root / "studies"
    crops = write_crops(root / "crops")
    (studies / "labels" / "final").mkdir(parents=True)
    shutil.copy(crops["ras"], studies / "t1_crop.nii.gz")
    # two labelled studies (the crop and a copy of it) for the train task, one for training, one for validation
    shutil.copy(crops["ras"], studies / "t1_crop_b.nii.gz")
    for name in ("t1_crop_b", "t1_crop_c"):
        shutil.copy(crops["labels"], studies / "labels" / "final" / f"{name}.nii.gz")
    shutil.copy(crops["ras"], studies / "t1_crop_c.nii.gz")
    port = _free_port()
    with open(root / "server.log", "w") as log:
        process = subprocess.Popen(
            [
                *_monailabel_command(),
                "start_server",
                "--app",
                str(app),
                "--studies",
                str(studies),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--conf",
                "models",
                BUNDLE_NAME,
                "--conf",
                "zoo_source",
                "github",
                "--conf",
                "sam2",
                "false",
                "--conf",
                "skip_trainers",
                "false",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=root,
            env=_env(MONAI_LABEL_DATASTORE_AUTO_RELOAD="false", OMP_NUM_THREADS="2"),
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while True:
                if process.poll() is not None:
                    pytest.fail("monailabel exited:\n" + (root / "server.log").read_text()[-4000:])
                try:
                    if requests.get(f"{url}/info/", timeout=5).status_code == 200:
                        break
                except requests.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("monailabel did not answer in 300 s:\n" + (root / "server.log").read_text()[-4000:])
                time.sleep(2)
            yield {"url": url, "root": root, "study": studies / "t1_crop.nii.gz", "bundle": app / "model" / BUNDLE_NAME}
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def test_server_lists_the_bundle(server):
    import requests

    info = requests.get(f"{server['url']}/info/", timeout=30).json()
    model = info["models"][BUNDLE_NAME]
    assert model["type"] == "segmentation" and model["dimension"] == 3
    # MONAI Label lists the names of the bundle's channel_def in lower case
    assert model["labels"] == {"other": 0, "grey matter": 1, "white matter": 2, "csf": 3}
    datastore = requests.get(f"{server['url']}/datastore/?output=all", timeout=30).json()
    assert "t1_crop" in datastore["objects"]


def test_infer_returns_the_label_volume(server):
    import requests

    start = time.perf_counter()
    response = requests.post(
        f"{server['url']}/infer/{BUNDLE_NAME}", params={"image": "t1_crop", "output": "image"}, timeout=600
    )
    seconds = time.perf_counter() - start
    assert response.status_code == 200, response.text[:2000]
    result = server["root"] / "result.nii.gz"
    result.write_bytes(response.content)
    label = nib.load(str(result))
    study = nib.load(str(server["study"]))
    assert label.shape == study.shape  # MONAI Label restores the study's grid
    np.testing.assert_allclose(label.affine, study.affine, atol=1e-4)
    values = np.asarray(label.dataobj).round().astype(np.int64)
    assert set(np.unique(values)) == {0, 1, 2, 3}
    # the crop's reference labels from the template's probability maps: the served segmentation is a real one
    from helpers import BLOCK

    _, gm, wm, _ = load_icbm152()
    reference = tissue_labels(gm[BLOCK], wm[BLOCK])
    dice = label_dice(values, reference, {"grey matter": 1, "white matter": 2})
    assert dice["grey matter"] > 0.75 and dice["white matter"] > 0.8, dice
    print(f"infer: {seconds:.1f} s, Dice {dice}")


def _infer(server) -> np.ndarray:
    import requests

    response = requests.post(
        f"{server['url']}/infer/{BUNDLE_NAME}", params={"image": "t1_crop", "output": "image"}, timeout=600
    )
    assert response.status_code == 200, response.text[:2000]
    result = server["root"] / "result.nii.gz"
    result.write_bytes(response.content)
    return np.asarray(nib.load(str(result)).dataobj).round().astype(np.int64)


def test_train_then_infer_uses_the_new_weights(server):
    """POST /train with one epoch (below the bundle's validation interval) writes new weights, which infer then uses;
    the se-monai bundle the app was copied from is not touched."""
    import hashlib

    import requests

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    model = server["bundle"] / "models" / "model.pt"
    before, shipped = digest(model), digest(default_bundle_dir() / "models" / "model.pt")
    labels_before = _infer(server)
    params = {"max_epochs": 1, "val_split": 0.5, "device": "cpu", "multi_gpu": False}
    response = requests.post(
        f"{server['url']}/train/{BUNDLE_NAME}", params={"run_sync": True}, json=params, timeout=900
    )
    assert response.status_code == 200, response.text[:2000]
    assert digest(model) != before and (server["bundle"] / "models" / "model_final.pt").is_file()
    assert digest(default_bundle_dir() / "models" / "model.pt") == shipped
    labels_after = _infer(server)
    assert labels_after.shape == labels_before.shape and set(np.unique(labels_after)) <= {0, 1, 2, 3}
    assert (labels_after != labels_before).any()  # the retrained weights segment differently
