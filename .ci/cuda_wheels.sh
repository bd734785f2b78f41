#!/usr/bin/env bash
# make cuda-wheels: the wheels of .ci/cuda-wheels.txt for Python 3.12 on x86-64 Linux, packed into
# .cuda-wheels/wheels.tar.xz for a lent GPU machine, which has no network. Each wheel is rewritten uncompressed
# (the same files, so pip installs it as before) and the folder packed with xz, which compresses the libraries
# far better than a wheel's own deflate (SimpleITK: 53 MB as a wheel, 28 MB this way), so that the wheels travel
# with the working tree within the machine's 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
TARGET=.cuda-wheels
rm -rf "$TARGET" && mkdir -p "$TARGET/whl"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$TARGET/whl" -r .ci/cuda-wheels.txt
"$PYTHON" - "$TARGET/whl" <<'PY'
import pathlib
import sys
import zipfile

for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    stored = wheel.with_name(wheel.name + ".stored")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info)
            info.compress_type = zipfile.ZIP_STORED
            target.writestr(info, data)
    stored.replace(wheel)
PY
tar -C "$TARGET" -cf - whl | xz -9 -T0 > "$TARGET/wheels.tar.xz.partial"
mv "$TARGET/wheels.tar.xz.partial" "$TARGET/wheels.tar.xz"
rm -rf "$TARGET/whl"
ls -l "$TARGET/wheels.tar.xz"
