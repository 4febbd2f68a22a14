"""Where the offline datasets' raw files live by default (no imports: configs read this)."""

# Fashion-MNIST idx files of the Debian package ``dataset-fashion-mnist``.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
