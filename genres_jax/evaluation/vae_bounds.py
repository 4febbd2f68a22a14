"""The VAE's likelihood bounds on a workdir's test split.

`vae_likelihood`: the importance-weighted bound with ``iw_samples`` samples (Burda et al. 2016)
and the ELBO (analytic KL, one sample), in nats per image and in bits per dimension
(nats / (H W C ln 2), on the [0, 1] pixel scale the model is trained on). ``iw_nll`` = -bound is
an upper bound on the test negative log-likelihood.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from genres_jax.data import pipeline, sources
from genres_jax.evaluation import generative_metrics
from genres_jax.train import sharding


def _vae_bounds(params, x, key, *, model, likelihood, log_scale, iw_samples, chunk):
    """Per-image (IW bound with ``iw_samples`` samples, ELBO), both in nats."""
    from genres_jax.tasks import vae

    elbo, _, _ = vae.elbo_terms(
        params,
        x,
        jax.random.fold_in(key, 0),
        model=model,
        likelihood=likelihood,
        log_scale=log_scale,
    )
    mean, logvar = model.apply({"params": params}, x, method=model.encode)

    def log_weight_terms(k):
        # ``chunk`` samples per image at a time bounds memory at chunk x batch decoded images.
        # Noise drawn image-major, so an image's draws do not depend on the batch's size (the
        # padding that fits a batch to the device count leaves real rows' samples unchanged).
        noise = jnp.swapaxes(jax.random.normal(k, (mean.shape[0], chunk, mean.shape[-1])), 0, 1)
        z = mean + jnp.exp(0.5 * logvar) * noise
        decoded = model.apply({"params": params}, z.reshape(-1, z.shape[-1]), method=model.decode)
        repeated = jnp.broadcast_to(x, (chunk, *x.shape)).reshape(-1, *x.shape[1:])
        log_px = vae._log_likelihood(decoded, repeated, likelihood, log_scale).reshape(chunk, -1)
        log_pz = generative_metrics.log_standard_normal(z)
        log_q = generative_metrics.log_normal_diag(z, mean, logvar)
        return log_px, log_pz, log_q

    keys = jax.random.split(jax.random.fold_in(key, 1), iw_samples // chunk)
    terms = jax.lax.map(log_weight_terms, keys)  # Each (iw_samples // chunk, chunk, B).
    terms = [t.reshape(iw_samples, -1) for t in terms]
    return generative_metrics.importance_weighted_bound(*terms), elbo


def vae_likelihood(
    config: ml_collections.ConfigDict,
    params: Any,
    image_shape: tuple[int, int, int],
    *,
    iw_samples: int,
    max_records: int,
    batch_size: int,
    key: jax.Array,
    mesh,
    chunk: int = 16,
) -> dict[str, float]:
    """Mean IW bound and ELBO over ``dataset.eval_split`` (nats per image, bits per dim)."""
    from genres_jax.tasks import vae

    if iw_samples < 1:
        raise ValueError(f"iw_samples must be >= 1, got {iw_samples}")
    chunk = max(d for d in range(1, min(chunk, iw_samples) + 1) if iw_samples % d == 0)
    # Likelihood bounds in float32 whatever the training precision: bf16 logits would move the
    # log-likelihood by more than the differences the bound is used to compare.
    model = vae.VAE_MODELS[config.model.name](config.model, image_shape, jnp.float32)
    bounds = jax.jit(
        lambda p, x, k: _vae_bounds(
            p,
            x.astype(jnp.float32) / 255.0,
            k,
            model=model,
            likelihood=config.vae.likelihood,
            log_scale=float(config.vae.gaussian_log_scale),
            iw_samples=iw_samples,
            chunk=chunk,
        )
    )
    ds = config.dataset
    source = sources.load(ds, ds.eval_split)
    ops = [pipeline.ImageRecord(image_size=ds.image_size, center_crop=ds.center_crop)]
    iw_all, elbo_all = [], []
    with jax.set_mesh(mesh):
        batches = sharding.global_eval_batches(
            source,
            batch_size=batch_size,
            operations=ops,
            mesh=mesh,
            max_records=max_records,
            keys=("image", "mask"),
        )
        for i, batch in enumerate(batches):
            iw, elbo = bounds(params, batch["image"], jax.random.fold_in(key, i))
            valid = sharding.gather_to_host(batch["mask"]) > 0
            iw_all.append(sharding.gather_to_host(iw)[valid])
            elbo_all.append(sharding.gather_to_host(elbo)[valid])
    iw_mean = float(np.mean(np.concatenate(iw_all), dtype=np.float64))
    elbo_mean = float(np.mean(np.concatenate(elbo_all), dtype=np.float64))
    to_bits = math.prod(image_shape) * math.log(2.0)
    return {
        "elbo": elbo_mean,
        "elbo_bits_per_dim": -elbo_mean / to_bits,
        "iw_bound": iw_mean,
        "iw_nll": -iw_mean,
        "iw_bits_per_dim": -iw_mean / to_bits,
        "iw_samples": float(iw_samples),
        "iw_num_images": float(sum(len(v) for v in iw_all)),
    }
