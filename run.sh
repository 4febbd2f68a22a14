#!/usr/bin/env bash
# The default job: install what it needs, then train a DCGAN on offline Fashion-MNIST
# (about 3.5 minutes on 2 CPU cores once installed) and print where its samples and metrics are.
# Extra arguments go to train.py, e.g. ./run.sh --config.total_steps=500
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
python3 -m pip install -q -r requirements.txt
python3 train.py --config configs/dcgan_fashion_mnist.py \
  --workdir "${WORKDIR:-runs/dcgan_fashion_mnist}" "$@"
