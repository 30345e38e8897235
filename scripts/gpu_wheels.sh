#!/usr/bin/env bash
# Download, into .whl/, the wheels that the GPU check needs beyond a CUDA machine's own PyTorch image
# (bitsandbytes, the pinned transformers/peft, Hydra), at the versions pinned in requirements.lock,
# for CPython 3.12 on x86-64 Linux. The folder is then carried to the GPU machine with the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DEST=${DEST:-.whl}
PACKAGES=(bitsandbytes transformers peft hydra-core omegaconf)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64)

pinned() {  # the `name==version` line of requirements.lock, or a clear error
    grep -i -E "^$1==" requirements.lock || { echo "gpu_wheels: $1 is not pinned in requirements.lock" >&2; exit 1; }
}

rm -rf "$DEST" && mkdir -p "$DEST"
for package in "${PACKAGES[@]}"; do
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        "${PLATFORMS[@]/#/--platform=}" -d "$DEST" "$(pinned "$package")"
done
# antlr4 (Hydra's parser runtime) is published as a source archive only: build its pure-Python wheel here.
"$PYTHON" -m pip wheel --quiet --no-deps -w "$DEST" "$(pinned antlr4-python3-runtime)"
du -sh "$DEST"
ls "$DEST"
