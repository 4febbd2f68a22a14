"""Converters for the published weights of SRVGGNetCompact, EDSR and SPAN (torch state dicts).

    srvgg  Real-ESRGAN's ``realesr-general-x4v3.pth`` / ``realesr-animevideov3.pth``:
           ``body.{2i}`` conv i (i = 0..num_conv), ``body.{2i+1}`` its PReLU (``weight`` of
           num_feat slopes), ``body.{2 num_conv + 2}`` the last conv to 3*r*r channels.
    edsr   the official EDSR-PyTorch ``EDSR_x2/x3/x4.pt`` and ``EDSR_baseline_x2/x3/x4.pt``:
           ``sub_mean``/``add_mean`` (1x1 mean shifts), ``head.0``, ``body.{i}.body.{0,2}``,
           ``body.{n}`` (the body conv), ``tail.0.{0[,2]}`` (upsampler), ``tail.1``. Those
           models take pixels in [0, 255]; a ReLU network is homogeneous apart from its biases,
           so dividing every conv bias by 255 gives the same network on [0, 1] pixels, and the
           mean shift's bias (-255 * mean) gives ``rgb_mean``. ``res_scale`` is not stored in the
           file: 0.1 for the 256-feature EDSR, 1 for the baseline, as published.
    span   the SPAN repository's ``spanx2/x4`` checkpoints: ``conv_1``, ``block_{1..6}.c{1,2,3}_r``
           and ``conv_2`` are Conv3XC modules (``sk``, ``conv.{0,1,2}``; ``eval_conv``, a
           folded copy, is accepted and rebuilt from the branches), ``conv_cat``,
           ``upsampler.0``. The branches are kept, so the workdir also fine-tunes.

Sizes come from the shapes; the scale from the last conv's output channels (3 * r * r).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from genres_jax.inference.weight_files import (
    Imported,
    WeightImportError,
    _array,
    _conv,
    unwrap_state_dict,
)


def _shape(state: Mapping[str, Any], key: str, what: str) -> tuple[int, ...]:
    if key not in state:
        found = ", ".join(sorted(state)[:5]) + (", ..." if len(state) > 5 else "")
        raise WeightImportError(
            f"missing key {key!r}: these are not {what} weights (keys: {found})"
        )
    return tuple(int(n) for n in np.shape(state[key]))


def _conv_outputs(state: Mapping[str, Any], key: str, what: str) -> int:
    """Output channels of the conv weight at ``key`` (a 4-d array, or a clear error)."""
    shape = _shape(state, key, what)
    if len(shape) != 4:
        raise WeightImportError(f"{key} has shape {shape}, expected a 4-d conv weight")
    return shape[0]


def _scale_of(channels: int, key: str) -> int:
    r = int(round((channels / 3) ** 0.5))
    if r < 1 or 3 * r * r != channels:
        raise WeightImportError(f"{key} has {channels} outputs, not 3 * scale**2")
    return r


def _check_scale(scale: int | None, inferred: int, key: str) -> None:
    if scale is not None and scale != inferred:
        raise WeightImportError(
            f"scale mismatch: the weights upscale x{inferred} (from {key}), not x{scale}"
        )


def _no_extra(state: Mapping[str, Any], used: set[str], what: str) -> None:
    extra = sorted(set(state) - used)
    if extra:
        shown = ", ".join(repr(k) for k in extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise WeightImportError(f"unexpected keys for {what}: {shown}")


def convert_srvgg(state: Mapping[str, Any], scale: int | None = None) -> Imported:
    """Real-ESRGAN's SRVGGNetCompact (PReLU) -> `genres_jax.models.efficient.SRVGGNetCompact`."""
    state, wrapper = unwrap_state_dict(state)
    first = _shape(state, "body.0.weight", "SRVGGNetCompact")
    if len(first) != 4 or first[1] != 3:
        raise WeightImportError(f"body.0.weight has shape {first}, expected (F, 3, 3, 3)")
    num_feat = first[0]
    convs = sorted(int(m[1]) for k in state if (m := re.fullmatch(r"body\.(\d+)\.weight", k)))
    last = convs[-1]
    if last % 2 or last < 2 or convs != list(range(last + 1)):
        raise WeightImportError(
            "body.* must be conv, PReLU, conv, PReLU, ..., conv (indices 0..2n+2 without gaps); "
            f"found body indices {convs[:8]}{'...' if len(convs) > 8 else ''}"
        )
    num_conv = last // 2 - 1
    out = _conv_outputs(state, f"body.{last}.weight", "SRVGGNetCompact")
    inferred = _scale_of(out, f"body.{last}.weight")
    _check_scale(scale, inferred, f"body.{last}.weight")
    params: dict[str, Any] = {}
    for i in range(num_conv + 1):
        params[f"conv_{i}"] = _conv(state, f"body.{2 * i}", 3 if i == 0 else num_feat, num_feat)
        params[f"prelu_{i}"] = {"alpha": _array(state, f"body.{2 * i + 1}.weight", (num_feat,))}
    params["conv_last"] = _conv(state, f"body.{last}", num_feat, out)
    used = {f"body.{2 * i}.{s}" for i in range(num_conv + 2) for s in ("weight", "bias")}
    used |= {f"body.{2 * i + 1}.weight" for i in range(num_conv + 1)}
    _no_extra(state, used, f"an SRVGGNetCompact with {num_conv} convs")
    overrides = {"num_feat": num_feat, "num_conv": num_conv}
    return Imported(params, overrides, inferred, "real-esrgan", wrapper, model="srvgg")


def convert_edsr(state: Mapping[str, Any], scale: int | None = None) -> Imported:
    """EDSR-PyTorch's EDSR / EDSR-baseline ([0, 255] pixels) -> `genres_jax.models.edsr.EDSR`."""
    state, wrapper = unwrap_state_dict(state)
    head = _shape(state, "head.0.weight", "EDSR")
    if len(head) != 4 or head[1] != 3:
        raise WeightImportError(f"head.0.weight has shape {head}, expected (F, 3, 3, 3)")
    f = head[0]
    n = 0
    while f"body.{n}.body.0.weight" in state:
        n += 1
    x4 = "tail.0.2.weight" in state
    up_out = _conv_outputs(state, "tail.0.0.weight", "EDSR")
    if x4:
        inferred = 4
        if up_out != 4 * f:
            raise WeightImportError(f"tail.0.0.weight has {up_out} outputs, expected {4 * f}")
    else:
        r2 = up_out // f
        inferred = int(round(r2**0.5))
        if inferred not in (2, 3) or inferred * inferred * f != up_out:
            raise WeightImportError(f"tail.0.0.weight has {up_out} outputs: not x2, x3 or x4")
    _check_scale(scale, inferred, "tail.0")

    def conv(name, cin, cout):
        c = _conv(state, name, cin, cout)
        return {"kernel": c["kernel"], "bias": c["bias"] / 255.0}

    params: dict[str, Any] = {"head": conv("head.0", 3, f)}
    for i in range(n):
        block = {"conv_0": conv(f"body.{i}.body.0", f, f), "conv_1": conv(f"body.{i}.body.2", f, f)}
        params[f"block_{i}"] = block
    params["body_conv"] = conv(f"body.{n}", f, f)
    ups = {"conv_0": conv("tail.0.0", f, up_out)}
    if x4:
        ups["conv_1"] = conv("tail.0.2", f, 4 * f)
    params["upsampler"] = ups
    params["tail"] = conv("tail.1", f, 3)

    means = []
    for name, sign in (("sub_mean", -1.0), ("add_mean", 1.0)):
        weight = _array(state, f"{name}.weight", (3, 3, 1, 1))[:, :, 0, 0]
        if not np.allclose(weight, np.eye(3), atol=1e-6):
            raise WeightImportError(f"{name}.weight is not the identity (rgb_std must be 1)")
        means.append(sign * _array(state, f"{name}.bias", (3,)) / 255.0)
    if not np.allclose(means[0], means[1], atol=1e-6):
        raise WeightImportError("sub_mean and add_mean shift by different means")
    used = {
        f"{m}.{s}"
        for m in ["head.0", "sub_mean", "add_mean", f"body.{n}", "tail.0.0", "tail.1"]
        + (["tail.0.2"] if x4 else [])
        + [f"body.{i}.body.{j}" for i in range(n) for j in (0, 2)]
        for s in ("weight", "bias")
    }
    _no_extra(state, used, f"an EDSR with {n} blocks")
    overrides = {
        "features": f,
        "num_blocks": n,
        "res_scale": 0.1 if f == 256 else 1.0,
        "rgb_mean": [round(float(v), 6) for v in means[0]],
    }
    return Imported(params, overrides, inferred, "edsr-pytorch", wrapper, model="edsr_m")


def _conv3xc(state, prefix: str, cin: int, cout: int, used: set[str]) -> dict[str, Any]:
    parts = {"expand": ("conv.0", cin, 2 * cin, 1), "conv": ("conv.1", 2 * cin, 2 * cout, 3)}
    parts |= {"reduce": ("conv.2", 2 * cout, cout, 1), "sk": ("sk", cin, cout, 1)}
    out = {}
    for ours, (theirs, i, o, k) in parts.items():
        out[ours] = _conv(state, f"{prefix}.{theirs}", i, o, k)
        used |= {f"{prefix}.{theirs}.weight", f"{prefix}.{theirs}.bias"}
    used |= {f"{prefix}.eval_conv.weight", f"{prefix}.eval_conv.bias"}
    return out


def convert_span(state: Mapping[str, Any], scale: int | None = None) -> Imported:
    """The SPAN repository's network (``img_range`` 255) -> `genres_jax.models.span.SPAN`."""
    state, wrapper = unwrap_state_dict(state)
    first = _shape(state, "conv_1.sk.weight", "SPAN")
    if len(first) != 4 or first[1] != 3:
        raise WeightImportError(f"conv_1.sk.weight has shape {first}, expected (F, 3, 1, 1)")
    f = first[0]
    blocks = 0
    while f"block_{blocks + 1}.c1_r.sk.weight" in state:
        blocks += 1
    if blocks < 2:
        raise WeightImportError(f"found {blocks} SPAB blocks (block_1.c1_r...), expected >= 2")
    out = _conv_outputs(state, "upsampler.0.weight", "SPAN")
    inferred = _scale_of(out, "upsampler.0.weight")
    _check_scale(scale, inferred, "upsampler.0.weight")
    used: set[str] = set()
    params: dict[str, Any] = {"conv_1": _conv3xc(state, "conv_1", 3, f, used)}
    for b in range(1, blocks + 1):
        params[f"block_{b}"] = {
            f"c{j}": _conv3xc(state, f"block_{b}.c{j}_r", f, f, used) for j in (1, 2, 3)
        }
    params["conv_2"] = _conv3xc(state, "conv_2", f, f, used)
    params["conv_cat"] = _conv(state, "conv_cat", 4 * f, f, 1)
    params["upsampler"] = _conv(state, "upsampler.0", f, out)
    used |= {f"{m}.{s}" for m in ("conv_cat", "upsampler.0") for s in ("weight", "bias")}
    _no_extra(state, used, f"a SPAN with {blocks} blocks")
    overrides = {"features": f, "num_blocks": blocks}
    return Imported(params, overrides, inferred, "span", wrapper, model="span")


CONVERTERS = {"srvgg": convert_srvgg, "edsr": convert_edsr, "span": convert_span}
