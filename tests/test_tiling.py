"""Tiled inference equals whole-image inference when the overlap covers the receptive field."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax.inference.upscalers import CLASSICAL_OVERLAP
from genres_jax.models import sr_registry
from genres_jax.ops import tiling
from genres_jax.ops.imresize import imresize


@pytest.mark.parametrize(
    ("length", "tile", "overlap"), [(100, 32, 5), (33, 32, 5), (7, 32, 3), (64, 16, 0)]
)
def test_spans_cover_once_with_windows_inside(length, tile, overlap):
    window, spans = tiling.spans(length, tile, overlap)
    covered = np.zeros(length, int)
    for s in spans:
        assert s.w0 >= 0 and s.w0 + window <= length  # Windows stay inside the image...
        assert s.w0 <= s.c0 < s.c1 <= s.w0 + window  # ...and contain their core,
        # with `overlap` pixels of context wherever the window edge is not the image edge.
        assert s.c0 - s.w0 >= overlap or s.w0 == 0
        assert s.w0 + window - s.c1 >= overlap or s.w0 + window == length
        covered[s.c0 : s.c1] += 1
    assert (covered == 1).all()


SMALL = {
    "edsr_m": dict(features=8, num_blocks=2),
    "espcn": dict(features=(8, 4)),
    "fsrcnn": dict(d=8, s=4, m=2),
    "fsrcnn_res": dict(d=8, s=4, m=1, residual="bicubic"),
    "srvgg": dict(num_feat=8, num_conv=3),
    "span_28": dict(features=6, num_blocks=2),
}


def _small_model(name: str, scale: int):
    from genres_jax.tasks import sr

    model = sr_registry.get_sr_model(name.removesuffix("_res"), scale, **SMALL[name])
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)))["params"]
    # Larger weights than the default init so that every layer visibly mixes its neighbourhood.
    params = jax.tree.map(lambda p: p * 3.0, params)
    return sr.inference_form(model, params)  # SPAN is tiled in its folded form, as served.


@pytest.mark.parametrize(
    ("name", "scale"),
    [
        ("edsr_m", 2),
        ("edsr_m", 3),
        ("espcn", 2),
        ("fsrcnn", 3),
        ("fsrcnn_res", 4),
        ("srvgg", 4),
        ("span_28", 2),
    ],
)
def test_tiled_model_equals_whole_image(name, scale):
    model, params = _small_model(name, scale)
    predict = jax.jit(lambda x: model.apply({"params": params}, x))
    image = np.random.default_rng(0).random((45, 38, 3)).astype(np.float32)
    whole = np.asarray(predict(image[None]))[0]
    radius = model.receptive_radius
    tiled = tiling.tiled_apply(predict, image, scale=scale, tile=16, overlap=radius, batch_size=3)
    assert tiled.shape == whole.shape
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5 * max(1.0, np.abs(whole).max()))
    # Too little context shows at the seams: the equality above is not automatic.
    short = tiling.tiled_apply(predict, image, scale=scale, tile=16, overlap=1, batch_size=3)
    assert np.abs(short - whole).max() > 1e-3


def test_tiled_bicubic_equals_whole_image():
    image = np.random.default_rng(1).random((50, 41, 1)).astype(np.float32)
    fn = jax.jit(lambda x: imresize(x, scale=4))
    whole = np.asarray(fn(image[None]))[0]
    tiled = tiling.tiled_apply(fn, image, scale=4, tile=12, overlap=CLASSICAL_OVERLAP)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)


def test_window_count():
    assert tiling.num_windows(100, 50, 32, 4) == 4 * 2
