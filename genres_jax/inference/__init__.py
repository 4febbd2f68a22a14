"""The Python API for experiments in scripts and notebooks; the commands are built on it.

    from genres_jax import inference
    up = inference.load_upscaler("weights/edsr_x2")       # or inference.classical("bicubic", 2)
    hr = up(lr)            # (H, W[, C]) uint8/uint16/float numpy or JAX array in, same kind out
    gen = inference.load_generator("runs/dcgan_fashion_mnist")
    images = gen(jax.random.key(0), 64)                    # EMA weights, (64, H, W, C) in [0, 1]

`Upscaler` tiles large images (``tile`` LR pixels, exact with the default overlap) and
``load_upscaler(..., self_ensemble=True)`` gives EDSR's x8 "+" inference. `Generator`
samples a GAN's EMA generator or a VAE's prior, optionally through an upscaler
(``gen.cascade(...)``). ``export_upscaler(workdir, path)`` writes an SR model as one
``jax.export`` program; ``load_exported(path)`` runs it as an `Upscaler` without the model code.
"""

from genres_jax.inference.exported import export_upscaler, load_exported
from genres_jax.inference.generators import Generator, load_generator
from genres_jax.inference.upscalers import Upscaler, classical, load_upscaler

__all__ = [
    "Generator",
    "Upscaler",
    "classical",
    "export_upscaler",
    "load_exported",
    "load_generator",
    "load_upscaler",
]
