#!/usr/bin/env bash
# The GPU check in one command, for a lent machine with an NVIDIA GPU (Python 3.12 with a CUDA torch, no network).
#
#   make cuda-wheels                  # here, once: .cuda-wheels/wheels.tar.xz (the packages that machine lacks)
#   bash .ci/cuda_check.sh            # there, from the repository root, with .cuda-wheels carried along
#
# It installs the wheels into a fresh folder (pip install --no-index --no-deps --target), runs the CUDA tests
# (pytest -m cuda: every SE layer and SEUNet against the reference formulation, a training step and sliding-window
# labels against the CPU's, float16 and bfloat16 autocast, TorchScript, a one-process NCCL torchrun training), then
# `se-monai bench --device cuda --amp` (float32 and autocast rows), and writes $OUT/cuda_report.txt and
# $OUT/cuda_report.json (default OUT: out/cuda-check). Without a GPU the CUDA tests skip and the bench is left out,
# so the script can be tried on any machine: PYTHON=.venv/bin/python bash .ci/cuda_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-out/cuda-check}
mkdir -p "$OUT"
WORK=$(mktemp -d)
if [ ! -f .cuda-wheels/wheels.tar.xz ]; then
    echo "cuda_check: no .cuda-wheels/wheels.tar.xz: run 'make cuda-wheels' where there is a network, and carry it" >&2
    exit 2
fi
tar -xJf .cuda-wheels/wheels.tar.xz -C "$WORK" || exit 2
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
    "$WORK"/whl/*.whl || exit 2
export PYTHONPATH="$WORK/site:$PWD" SE_MONAI_CACHE="$WORK/cache" PYTHONUNBUFFERED=1

"$PYTHON" - > "$OUT/environment.json" <<'PY'
import json, platform, torch
cuda = torch.cuda.is_available()
print(json.dumps({
    "python": platform.python_version(),
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "cudnn": torch.backends.cudnn.version() if cuda else None,
    "gpu": torch.cuda.get_device_name() if cuda else None,
}))
PY
timeout 300 "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider --junitxml "$OUT/cuda_tests.xml" tests \
    > "$OUT/cuda_tests.txt" 2>&1
echo "pytest -m cuda: exit $?" >> "$OUT/cuda_tests.txt"
if "$PYTHON" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    timeout 200 "$PYTHON" -m se_monai.cli bench --device cuda --amp --json > "$OUT/bench.json" 2> "$OUT/bench.log"
    echo "bench: exit $?" >> "$OUT/bench.log"
fi

"$PYTHON" - "$OUT" <<'PY'
import json, pathlib, sys, xml.etree.ElementTree as ET
from se_monai.apps.bench import format_table

out = pathlib.Path(sys.argv[1])
report = {"environment": json.loads((out / "environment.json").read_text())}
suite = ET.parse(out / "cuda_tests.xml").getroot().find("testsuite") if (out / "cuda_tests.xml").exists() else None
if suite is not None:
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    failed = [f"{case.get('classname')}.{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    report["tests"] = {**counts, "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
                       "failed": failed}
bench = out / "bench.json"
if bench.exists() and bench.stat().st_size:
    try:
        report["bench"] = json.loads(bench.read_text())
    except json.JSONDecodeError:
        report["bench"] = None
(out / "cuda_report.json").write_text(json.dumps(report, indent=2) + "\n")
lines = [f"{key}: {value}" for key, value in report["environment"].items()]
if "tests" in report:
    t = report["tests"]
    lines += ["", f"pytest -m cuda: {t['passed']} passed, {len(t['failed'])} failed, {t['skipped']} skipped"]
    lines += [f"  FAILED {name}" for name in t["failed"]]
lines += ["", format_table(report["bench"]) if report.get("bench") else "bench: not run (no CUDA device) or failed"]
(out / "cuda_report.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
