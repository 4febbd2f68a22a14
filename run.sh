#!/usr/bin/env bash
# The default job: install what it needs, then train a DCGAN on offline Fashion-MNIST
# (about 3.5 minutes on 2 CPU cores once installed) and print where its samples and metrics are.
# Extra arguments go to train.py, e.g. ./run.sh --config.total_steps=500
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
# Offline data from Debian: Fashion-MNIST, and the photographs of the Lomiri wallpapers (the
# super-resolution training set).
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
  || [ ! -f /usr/share/backgrounds/Bridge_by_Sander_Klootwijk.jpg ] \
  || [ ! -f /usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg ]; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq dataset-fashion-mnist lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
fi
python3 -m pip install -q -r requirements.txt
python3 train.py --config configs/dcgan_fashion_mnist.py \
  --workdir "${WORKDIR:-runs/dcgan_fashion_mnist}" "$@"
