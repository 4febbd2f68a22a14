"""Converted SRVGGNetCompact, EDSR (EDSR-PyTorch, [0, 255] pixels) and SPAN weights against float64
NumPy forwards of the published architectures, on state dicts with the published key names and
shapes built here (the files themselves cannot be downloaded)."""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from genres_jax import import_weights, inference
from genres_jax.inference import published_weights as pw
from genres_jax.models.sr_registry import get_sr_model

RNG = np.random.default_rng(0)


def tconv(x, w, b):
    """torch Conv2d (stride 1, padding k//2) on one HWC float64 image, weight (Co, Ci, k, k)."""
    k = w.shape[2]
    p = k // 2
    xp = np.pad(x, ((p, p), (p, p), (0, 0)))
    h, wd = x.shape[:2]
    out = np.zeros((h, wd, w.shape[0]))
    for dy in range(k):
        for dx in range(k):
            out += xp[dy : dy + h, dx : dx + wd] @ w[:, :, dy, dx].T
    return out + b


def tconv_valid(x, w, b):
    k = w.shape[2]
    h, wd = x.shape[0] - k + 1, x.shape[1] - k + 1
    out = np.zeros((h, wd, w.shape[0]))
    for dy in range(k):
        for dx in range(k):
            out += x[dy : dy + h, dx : dx + wd] @ w[:, :, dy, dx].T
    return out + b


def shuffle(x, r):
    h, w, crr = x.shape
    c = crr // (r * r)
    return x.reshape(h, w, c, r, r).transpose(0, 3, 1, 4, 2).reshape(h * r, w * r, c)


def conv_entry(state, name, cin, cout, k=3, scale=0.2):
    state[f"{name}.weight"] = RNG.standard_normal((cout, cin, k, k)) * scale / np.sqrt(cin * k * k)
    state[f"{name}.bias"] = RNG.standard_normal(cout) * 0.05


def as32(state):
    return {k: np.asarray(v, np.float32) for k, v in state.items()}


def ours(imported, x):
    model = get_sr_model(imported.model, imported.scale, **imported.overrides)
    params = imported.params
    from genres_jax.tasks import sr

    model, params = sr.inference_form(model, params)
    return np.asarray(model.apply({"params": params}, jnp.asarray(x[None], jnp.float32)))[0]


# ---- SRVGGNetCompact ---------------------------------------------------------------------


def srvgg_state(num_feat, num_conv, scale):
    state = {}
    conv_entry(state, "body.0", 3, num_feat, scale=1.0)
    state["body.1.weight"] = RNG.uniform(0.0, 0.5, num_feat)
    for i in range(1, num_conv + 1):
        conv_entry(state, f"body.{2 * i}", num_feat, num_feat, scale=1.0)
        state[f"body.{2 * i + 1}.weight"] = RNG.uniform(0.0, 0.5, num_feat)
    conv_entry(state, f"body.{2 * num_conv + 2}", num_feat, 3 * scale * scale, scale=1.0)
    return state


def srvgg_reference(state, x, num_conv, scale):
    h = x
    for i in range(num_conv + 1):
        h = tconv(h, state[f"body.{2 * i}.weight"], state[f"body.{2 * i}.bias"])
        h = np.where(h >= 0, h, state[f"body.{2 * i + 1}.weight"] * h)
    last = 2 * num_conv + 2
    out = shuffle(tconv(h, state[f"body.{last}.weight"], state[f"body.{last}.bias"]), scale)
    return out + np.repeat(np.repeat(x, scale, 0), scale, 1)


@pytest.mark.parametrize(("num_conv", "scale"), [(2, 4), (3, 2)])
def test_srvgg_conversion_matches_the_published_forward(num_conv, scale):
    state = srvgg_state(6, num_conv, scale)
    imported = pw.convert_srvgg({"params": as32(state)})
    assert (imported.scale, imported.wrapper, imported.model) == (scale, "params", "srvgg")
    assert imported.overrides == {"num_feat": 6, "num_conv": num_conv}
    x = RNG.random((7, 9, 3))
    ref = srvgg_reference(state, x, num_conv, scale)
    np.testing.assert_allclose(ours(imported, x), ref, rtol=0, atol=1e-5)


# ---- EDSR (EDSR-PyTorch) -------------------------------------------------------------------

MEAN = np.array([0.4488, 0.4371, 0.4040])


def edsr_state(f, n, scale):
    state = {}
    for name, sign in (("sub_mean", -1), ("add_mean", 1)):
        state[f"{name}.weight"] = np.eye(3).reshape(3, 3, 1, 1)
        state[f"{name}.bias"] = sign * 255.0 * MEAN
    # Biases of a [0, 255] network are in pixel units: make them that large.
    conv_entry(state, "head.0", 3, f, scale=1.0)
    for i in range(n):
        conv_entry(state, f"body.{i}.body.0", f, f, scale=0.5)
        conv_entry(state, f"body.{i}.body.2", f, f, scale=0.5)
    conv_entry(state, f"body.{n}", f, f, scale=0.5)
    conv_entry(state, "tail.0.0", f, (4 if scale == 4 else scale * scale) * f)
    if scale == 4:
        conv_entry(state, "tail.0.2", f, 4 * f)
    conv_entry(state, "tail.1", f, 3)
    return {
        k: v * (255.0 if k.endswith(".bias") and "mean" not in k else 1.0) for k, v in state.items()
    }


def edsr_reference(state, x255, n, scale, res_scale):
    x = x255 - 255.0 * MEAN  # sub_mean (rgb_std 1)
    x = tconv(x, state["head.0.weight"], state["head.0.bias"])
    h = x
    for i in range(n):
        r = tconv(h, state[f"body.{i}.body.0.weight"], state[f"body.{i}.body.0.bias"])
        r = tconv(
            np.maximum(r, 0), state[f"body.{i}.body.2.weight"], state[f"body.{i}.body.2.bias"]
        )
        h = h + res_scale * r
    h = tconv(h, state[f"body.{n}.weight"], state[f"body.{n}.bias"]) + x
    if scale == 4:
        h = shuffle(tconv(h, state["tail.0.0.weight"], state["tail.0.0.bias"]), 2)
        h = shuffle(tconv(h, state["tail.0.2.weight"], state["tail.0.2.bias"]), 2)
    else:
        h = shuffle(tconv(h, state["tail.0.0.weight"], state["tail.0.0.bias"]), scale)
    return tconv(h, state["tail.1.weight"], state["tail.1.bias"]) + 255.0 * MEAN


@pytest.mark.parametrize(("features", "scale"), [(8, 2), (8, 3), (8, 4), (256, 2)])
def test_edsr_conversion_matches_the_published_forward_in_0_255(features, scale):
    n = 2 if features == 8 else 1
    state = edsr_state(features, n, scale)
    imported = pw.convert_edsr(as32(state))
    res_scale = 0.1 if features == 256 else 1.0
    assert imported.scale == scale
    assert imported.overrides["res_scale"] == res_scale
    np.testing.assert_allclose(imported.overrides["rgb_mean"], MEAN, atol=1e-6)
    x = RNG.random((6, 5, 3))
    ref = edsr_reference(state, 255.0 * x, n, scale, res_scale) / 255.0
    np.testing.assert_allclose(
        ours(imported, x), ref, rtol=0, atol=2e-5 * max(1, np.abs(ref).max())
    )


# ---- SPAN ----------------------------------------------------------------------------------


def conv3xc_state(state, prefix, cin, cout):
    conv_entry(state, f"{prefix}.sk", cin, cout, k=1)
    conv_entry(state, f"{prefix}.conv.0", cin, 2 * cin, k=1, scale=1.0)
    conv_entry(state, f"{prefix}.conv.1", 2 * cin, 2 * cout, k=3, scale=1.0)
    conv_entry(state, f"{prefix}.conv.2", 2 * cout, cout, k=1, scale=1.0)
    conv_entry(state, f"{prefix}.eval_conv", cin, cout)  # stale: rebuilt from the branches


def span_state(f, blocks, scale):
    state = {}
    conv3xc_state(state, "conv_1", 3, f)
    for b in range(1, blocks + 1):
        for j in (1, 2, 3):
            conv3xc_state(state, f"block_{b}.c{j}_r", f, f)
    conv3xc_state(state, "conv_2", f, f)
    conv_entry(state, "conv_cat", 4 * f, f, k=1)
    conv_entry(state, "upsampler.0", f, 3 * scale * scale)
    # The branches of a [0, 255]-scaled network: scale them down so activations stay O(1).
    return {k: v / 30.0 if k.startswith("conv_1") else v for k, v in state.items()}


def ref_conv3xc(state, prefix, x):
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    h = tconv_valid(p, state[f"{prefix}.conv.0.weight"], state[f"{prefix}.conv.0.bias"])
    h = tconv_valid(h, state[f"{prefix}.conv.1.weight"], state[f"{prefix}.conv.1.bias"])
    h = tconv_valid(h, state[f"{prefix}.conv.2.weight"], state[f"{prefix}.conv.2.bias"])
    return h + tconv_valid(x, state[f"{prefix}.sk.weight"], state[f"{prefix}.sk.bias"])


def span_reference(state, x, blocks, scale):
    silu = lambda v: v / (1 + np.exp(-v))  # noqa: E731
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    x = (x - MEAN) * 255.0
    feature = ref_conv3xc(state, "conv_1", x)
    h, first = feature, None
    for b in range(1, blocks + 1):
        out1 = ref_conv3xc(state, f"block_{b}.c1_r", h)
        out2 = ref_conv3xc(state, f"block_{b}.c2_r", silu(out1))
        out3 = ref_conv3xc(state, f"block_{b}.c3_r", silu(out2))
        h = (out3 + h) * (sigmoid(out3) - 0.5)
        first = h if b == 1 else first
    last = ref_conv3xc(state, "conv_2", h)
    cat = np.concatenate([feature, last, first, out1], axis=-1)
    fused = tconv(cat, state["conv_cat.weight"], state["conv_cat.bias"])
    return shuffle(tconv(fused, state["upsampler.0.weight"], state["upsampler.0.bias"]), scale)


@pytest.mark.parametrize("scale", [2, 4])
def test_span_conversion_matches_the_published_forward(scale):
    state = span_state(6, 2, scale)
    imported = pw.convert_span({"params_ema": as32(state)})
    assert imported.overrides == {"features": 6, "num_blocks": 2}
    assert imported.scale == scale
    x = RNG.random((7, 8, 3))
    ref = span_reference(state, x, 2, scale)
    np.testing.assert_allclose(
        ours(imported, x), ref, rtol=0, atol=1e-4 * max(1, np.abs(ref).max())
    )


# ---- errors and the command ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("convert", "state", "message"),
    [
        (pw.convert_srvgg, {"conv_first.weight": np.zeros((4, 3, 3, 3))}, "not SRVGGNetCompact"),
        (
            pw.convert_edsr,
            {"head.0.weight": np.zeros((4, 3, 3, 3))},
            "missing key 'tail.0.0.weight'",
        ),
        (pw.convert_span, {"conv_1.sk.weight": np.zeros((4, 3, 1, 1))}, "SPAB blocks"),
    ],
)
def test_wrong_state_dicts_name_the_problem(convert, state, message):
    with pytest.raises(pw.WeightImportError, match=message):
        convert(state)


def test_edsr_scale_mismatch_and_extra_keys():
    state = as32(edsr_state(8, 1, 2))
    with pytest.raises(pw.WeightImportError, match="scale mismatch"):
        pw.convert_edsr(state, scale=4)
    with pytest.raises(pw.WeightImportError, match="unexpected keys"):
        pw.convert_edsr({**state, "body.7.body.1.weight": np.zeros(3, np.float32)})


@pytest.mark.parametrize("model", ["srvgg", "edsr", "span"])
def test_cli_workdir_upscales_like_the_reference(model, tmp_path, capsys):
    state = {
        "srvgg": srvgg_state(6, 2, 4),
        "edsr": edsr_state(8, 1, 2),
        "span": span_state(6, 2, 2),
    }[model]
    path = tmp_path / "weights.npz"
    np.savez(path, **as32(state))
    out = tmp_path / "wd"
    assert import_weights.main([model, str(path), str(out)]) == 0
    assert "->" in capsys.readouterr().err
    with open(os.path.join(out, "config.json")) as f:
        assert json.load(f)["task"] == "sr"
    up = inference.load_upscaler(str(out))
    x = RNG.random((9, 7, 3)).astype(np.float32)
    reference = {
        "srvgg": lambda: srvgg_reference(state, x, 2, 4),
        "edsr": lambda: edsr_reference(state, 255.0 * x, 1, 2, 1.0) / 255.0,
        "span": lambda: span_reference(state, x, 2, 2),
    }[model]()
    got = np.asarray(up.predict(jnp.asarray(x[None])))[0]
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-4 * max(1, np.abs(reference).max()))
