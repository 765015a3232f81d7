#!/usr/bin/env bash
# Install Dassl 0.6.3 (https://github.com/KaiyangZhou/Dassl.pytorch, not on PyPI) into the active
# Python environment, as the Dassl trainers and their tests need it:
#
#   bash scripts/install_dassl.sh          # clone the repository at the pinned commit, install it
#   bash scripts/install_dassl.sh WHEEL    # a wheel built from that commit (or a folder holding
#                                          # dassl-*.whl): machines without GitHub, CI
#
# Dassl's metadata pins development tools and old packages that do not install on Python 3.11 with
# current PyTorch (flake8==3.7.9, yapf==0.29.0, isort==4.3.21, tb-nightly, wilds==1.2.2), so Dassl
# is installed without its dependencies, then the packages it imports at run time. Its setup.py
# imports numpy (installed with torch): hence --no-build-isolation.
set -euo pipefail
COMMIT=c61a1b570ac6333bd50fb5ae06aea59002fb20bb  # version 0.6.3, the last one
REPOSITORY=https://github.com/KaiyangZhou/Dassl.pytorch
PYTHON=${DPL_PYTHON:-python}
RUNTIME_DEPS=(yacs gdown tabulate tensorboard scipy scikit-learn pandas tqdm ftfy regex future)

if [ $# -gt 0 ]; then
    source=$1
    if [ -d "$source" ]; then
        wheels=("$source"/dassl-*.whl)
        source=${wheels[0]}
    fi
    if [ ! -f "$source" ]; then
        echo "install_dassl.sh: no Dassl wheel at $1: give a dassl-*.whl file or a folder holding one" >&2
        exit 1
    fi
else
    workdir=$(mktemp -d)
    trap 'rm -rf "$workdir"' EXIT
    git clone --quiet "$REPOSITORY" "$workdir/Dassl.pytorch"
    git -C "$workdir/Dassl.pytorch" checkout --quiet "$COMMIT"
    source=$workdir/Dassl.pytorch
fi

"$PYTHON" -m pip install --no-deps --no-build-isolation "$source"
"$PYTHON" -m pip install "${RUNTIME_DEPS[@]}"
"$PYTHON" -m pip install --no-deps wilds  # imported by Dassl's dataset registry
"$PYTHON" -c "import dassl; print('Dassl', dassl.__version__, 'is installed')"
