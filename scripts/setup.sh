#!/usr/bin/env bash
# Set up dualnet on a fresh machine: the Fashion-MNIST Debian package (IDX
# files in /usr/share/datasets/fashion-mnist) and the package itself with its
# test and plotting extras (this also builds the HBNN C kernel).
# Usage: bash scripts/setup.sh   (from the repository root; uses sudo when not root)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# dataset-fashion-mnist: the data; iproute2: `ip netns` for the two-host test.
packages="dataset-fashion-mnist iproute2"
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || ! command -v ip >/dev/null; then
  if ! as_root apt-get install -y -q $packages >/dev/null 2>&1; then
    as_root apt-get update -q >/dev/null
    as_root apt-get install -y -q $packages >/dev/null
  fi
fi

python3 -m pip install -q --disable-pip-version-check -e ".[dev]"
command -v pyenv >/dev/null && pyenv rehash || true      # put the `dualnet` command on PATH
python3 -c "import dualnet; print('dualnet', dualnet.__version__, 'installed')"
