"""``genres_jax.import_weights``: published RRDBNet state dicts -> workdirs the SR tools load.

The reference is BasicSR's RRDBNet forward pass written here in float64 NumPy, in torch's NCHW
layout, straight from its definition: 3x3 convs with zero padding 1, LeakyReLU(0.2), dense
blocks whose fifth conv is scaled by 0.2 and added, RRDBs scaled by 0.2 and added, nearest x2
upsampling twice, and for x2 / x1 a pixel unshuffle by 2 / 4 (input sizes padded by reflection
to a multiple of it and the output cropped back, as Real-ESRGAN's inference does).
"""

from __future__ import annotations

import json
import os
import re

import jax
import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from genres_jax import evaluate, import_weights, upscale
from genres_jax.data import sr_pairs
from genres_jax.inference import upscalers
from genres_jax.models.rrdbnet import RRDBNet
from genres_jax.tasks import base, gan_sr_parts
from genres_jax.train import checkpointing, workdirs

FEATURES, GROWTH = 8, 4


# --- the reference: BasicSR's RRDBNet in float64 NCHW -----------------------------------------


def _conv3x3(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """torch Conv2d(k=3, padding=1): out[o] = b[o] + sum_c,dy,dx w[o,c,dy,dx] x_pad[c,y+dy,x+dx]."""
    h, w = x.shape[2:]
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((x.shape[0], weight.shape[0], h, w))
    for dy in range(3):
        for dx in range(3):
            window = padded[:, :, dy : dy + h, dx : dx + w]
            out += np.einsum("oc,nchw->nohw", weight[:, :, dy, dx], window)
    return out + bias[None, :, None, None]


def _lrelu(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, 0.2 * x)


def _unshuffle_nchw(x: np.ndarray, r: int) -> np.ndarray:
    """torch pixel_unshuffle: out[n, c*r*r + i*r + j, y, x] = in[n, c, y*r + i, x*r + j]."""
    n, c, h, w = x.shape
    out = np.empty((n, c * r * r, h // r, w // r))
    for ch in range(c):
        for i in range(r):
            for j in range(r):
                out[:, ch * r * r + i * r + j] = x[:, ch, i::r, j::r]
    return out


def reference_forward(state: dict, lr_nhwc: np.ndarray, scale: int) -> np.ndarray:
    """BasicSR RRDBNet on (N, h, w, 3) floats; returns (N, h*scale, w*scale, 3) float64."""
    sd = {k: np.asarray(v, np.float64) for k, v in state.items()}

    def conv(name, x):
        return _conv3x3(x, sd[f"{name}.weight"], sd[f"{name}.bias"])

    x = np.asarray(lr_nhwc, np.float64).transpose(0, 3, 1, 2)
    h, w = x.shape[2:]
    r = 4 // scale
    if r > 1:
        x = np.pad(x, ((0, 0), (0, 0), (0, -h % r), (0, -w % r)), mode="reflect")
        x = _unshuffle_nchw(x, r)
    feat = conv("conv_first", x)
    trunk = feat
    num_blocks = len({k.split(".")[1] for k in sd if k.startswith("body.")})
    for i in range(num_blocks):
        out = trunk
        for k in (1, 2, 3):
            xs = [out]
            for j in (1, 2, 3, 4):
                xs.append(_lrelu(conv(f"body.{i}.rdb{k}.conv{j}", np.concatenate(xs, 1))))
            out = conv(f"body.{i}.rdb{k}.conv5", np.concatenate(xs, 1)) * 0.2 + out
        trunk = out * 0.2 + trunk
    feat = feat + conv("conv_body", trunk)
    for name in ("conv_up1", "conv_up2"):
        feat = _lrelu(conv(name, feat.repeat(2, axis=2).repeat(2, axis=3)))
    out = conv("conv_last", _lrelu(conv("conv_hr", feat)))
    return out[:, :, : h * scale, : w * scale].transpose(0, 2, 3, 1)


def basicsr_state(seed: int, scale: int, num_blocks: int, growth: int = GROWTH) -> dict:
    """A random BasicSR-layout state dict (torch's default uniform(+-1/sqrt(fan_in)) init)."""
    rng = np.random.default_rng(seed)
    state = {}

    def conv(name, cin, cout):
        bound = 1.0 / np.sqrt(cin * 9)
        state[f"{name}.weight"] = rng.uniform(-bound, bound, (cout, cin, 3, 3)).astype(np.float32)
        state[f"{name}.bias"] = rng.uniform(-bound, bound, (cout,)).astype(np.float32)

    conv("conv_first", 3 * (4 // scale) ** 2, FEATURES)
    for i in range(num_blocks):
        for k in (1, 2, 3):
            for j in (1, 2, 3, 4, 5):
                cout = FEATURES if j == 5 else growth
                conv(f"body.{i}.rdb{k}.conv{j}", FEATURES + (j - 1) * growth, cout)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, FEATURES, FEATURES)
    conv("conv_last", FEATURES, 3)
    # Outputs around mid-grey, so the 8-bit images of the CLI tests are not all clipped.
    state["conv_last.weight"] *= 0.3
    state["conv_last.bias"] += 0.5
    return state


def _lr(seed: int = 0, h: int = 10, w: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (1, h, w, 3)).astype(np.float32)


def _leaves(tree) -> dict[str, np.ndarray]:
    flat = jax.tree_util.tree_leaves_with_path(tree)
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}


# --- conversion -------------------------------------------------------------------------------


@pytest.mark.parametrize(("scale", "num_blocks"), [(4, 2), (2, 1), (1, 1)])
def test_converted_rrdbnet_matches_reference_forward(scale, num_blocks):
    state = basicsr_state(scale, scale, num_blocks)
    params, overrides, inferred = import_weights.import_rrdbnet(state)
    assert inferred == scale
    assert overrides == {"features": FEATURES, "growth": GROWTH, "num_blocks": num_blocks}
    lr = _lr(scale)
    got = np.asarray(RRDBNet(scale=scale, **overrides).apply({"params": params}, lr))
    want = reference_forward(state, lr, scale)
    assert got.shape == (1, 10 * scale, 12 * scale, 3)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # The tolerance is tight enough to see a plausible bug: kh and kw swapped in one kernel.
    swapped = jax.tree.map(lambda x: x, params)
    swapped["conv_first"]["kernel"] = params["conv_first"]["kernel"].transpose(1, 0, 2, 3)
    bad = np.asarray(RRDBNet(scale=scale, **overrides).apply({"params": swapped}, lr))
    assert np.abs(bad - want).max() > 1e-3


def test_kernels_are_transposed_torch_weights():
    state = basicsr_state(0, 4, 1)
    params, _, _ = import_weights.import_rrdbnet(state)
    w = state["body.0.rdb3.conv2.weight"]  # (out, in, kh, kw) = (4, 12, 3, 3)
    kernel = params["rrdb_0"]["rdb_2"]["conv_1"]["kernel"]
    for o, c, dy, dx in [(0, 0, 0, 0), (3, 11, 2, 1), (1, 7, 0, 2)]:
        assert kernel[dy, dx, c, o] == w[o, c, dy, dx]
    np.testing.assert_array_equal(params["conv_up_1"]["bias"], state["conv_up2.bias"])


def _renamed(state: dict, rules: list[tuple[str, str]]) -> dict:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key, n = re.subn(pattern, repl, key)
            if n:
                break
        out[key] = value
    return out


def test_esrgan_layouts_give_the_basicsr_parameters():
    state = basicsr_state(1, 4, 2)
    want = _leaves(import_weights.import_rrdbnet(state)[0])
    esrgan = _renamed(
        state,
        [
            (r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2."),
            (r"^conv_body\.", "trunk_conv."),
            (r"^conv_up(\d)\.", r"upconv\1."),
            (r"^conv_hr\.", "HRconv."),
        ],
    )
    legacy = _renamed(
        state,
        [
            (r"^body\.(\d+)\.rdb(\d)\.(conv\d)\.", r"model.1.sub.\1.RDB\2.\3.0."),
            (r"^conv_first\.", "model.0."),
            (r"^conv_body\.", "model.1.sub.2."),  # After the 2 RRDBs.
            (r"^conv_up1\.", "model.3."),
            (r"^conv_up2\.", "model.6."),
            (r"^conv_hr\.", "model.8."),
            (r"^conv_last\.", "model.10."),
        ],
    )
    assert "model.1.sub.1.RDB3.conv5.0.weight" in legacy and "HRconv.bias" in esrgan
    for layout, renamed in (("esrgan", esrgan), ("esrgan_legacy", legacy)):
        imported = import_weights.convert_rrdbnet(renamed)
        assert imported.layout == layout and imported.scale == 4
        got = _leaves(imported.params)
        assert got.keys() == want.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_wrappers_and_prefixes_are_unwrapped():
    ema, plain = basicsr_state(2, 4, 1), basicsr_state(3, 4, 1)
    cases = [
        ({"params_ema": ema, "params": plain}, ema, "params_ema"),
        ({"params": plain}, plain, "params"),
        ({**{f"params.{k}": v for k, v in plain.items()}}, plain, "params"),
        (
            {
                **{f"params_ema.{k}": v for k, v in ema.items()},
                **{f"params.{k}": v for k, v in plain.items()},
            },
            ema,
            "params_ema",
        ),
        ({f"module.{k}": v for k, v in plain.items()}, plain, ""),
        (ema, ema, ""),
    ]
    for wrapped, source, wrapper in cases:
        imported = import_weights.convert_rrdbnet(wrapped)
        assert imported.wrapper == wrapper
        np.testing.assert_array_equal(
            imported.params["conv_first"]["kernel"],
            source["conv_first.weight"].transpose(2, 3, 1, 0),
        )


def test_scale_is_inferred_from_conv_first_and_checked():
    for scale, channels in ((4, 3), (2, 12), (1, 48)):
        state = basicsr_state(0, scale, 1)
        assert state["conv_first.weight"].shape[1] == channels
        assert import_weights.import_rrdbnet(state)[2] == scale
        assert import_weights.import_rrdbnet(state, scale=scale)[2] == scale
    with pytest.raises(ValueError, match=r"scale mismatch: the weights upscale x4.*not x2"):
        import_weights.import_rrdbnet(basicsr_state(0, 4, 1), scale=2)
    odd = basicsr_state(0, 4, 1)
    odd["conv_first.weight"] = np.zeros((FEATURES, 27, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"conv_first.weight has 27 input channels"):
        import_weights.import_rrdbnet(odd)


def _drop(key):
    return lambda s: {k: v for k, v in s.items() if k != key}


def _set(key, value):
    return lambda s: {**s, key: value}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_drop("body.0.rdb2.conv3.bias"), r"missing key 'body.0.rdb2.conv3.bias'"),
        (_drop("conv_hr.weight"), r"missing key 'conv_hr.weight'"),
        (_set("conv_hr.weight", np.zeros((8, 8, 3), np.float32)), r"'conv_hr.weight' has shape"),
        (_set("conv_last.weight", np.zeros((1, 8, 3, 3), np.float32)), r"'conv_last.weight'"),
        (_set("body.0.rdb1.conv5.weight", np.zeros((8, 24, 5, 5))), r"'body.0.rdb1.conv5.weight"),
        (_set("conv_up1.bias", np.zeros(8, np.int32)), r"'conv_up1.bias' has dtype int32"),
        (_set("conv_up1.bias", np.full(8, np.nan, np.float32)), r"'conv_up1.bias' holds NaN"),
        (_set("body.0.rdb1.conv6.weight", np.zeros(1)), r"unexpected keys.*rdb1.conv6.weight"),
        (
            lambda s: {k.replace("body.1.", "body.2."): v for k, v in s.items()},
            r"unexpected keys.*'body.2.rdb1.conv1",
        ),
        (
            lambda s: {k.replace("body.", "trunk."): v for k, v in s.items()},
            r"unknown layout.*basicsr: conv_first.weight, body.0.rdb1.conv1.weight",
        ),
        (lambda s: {}, r"not a state dict"),
        (lambda s: [1, 2], r"not a state dict"),
        (lambda s: {1: np.zeros(3)}, r"not a state dict"),
    ],
)
def test_bad_state_dicts_name_the_problem(mutate, message):
    with pytest.raises(ValueError, match=message):
        import_weights.import_rrdbnet(mutate(basicsr_state(0, 4, 2)))


def test_legacy_layouts_are_x4_only():
    state = _renamed(
        basicsr_state(0, 2, 1), [(r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2.")]
    )
    with pytest.raises(ValueError, match=r"12 input channels; the esrgan layout takes 3 \(x4\)"):
        import_weights.import_rrdbnet(state)


# --- the command and the tools that read its workdir ------------------------------------------


def _main(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    rc = import_weights.main([str(a) for a in args])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize(("scale", "fmt"), [(4, "safetensors"), (2, "npz")])
def test_cli_workdir_works_with_the_sr_tools(tmp_path, capsys, scale, fmt):
    state = basicsr_state(10 + scale, scale, 1)
    path = tmp_path / f"weights.{fmt}"
    if fmt == "npz":
        np.savez(path, **state)
    else:
        save_file(state, str(path))
    out = tmp_path / "runs" / "imported"  # Parent folders are created.
    rc, err = _main(capsys, "rrdbnet", path, out, "--scale", scale)
    assert rc == 0, err
    assert f"RRDBNet x{scale}" in err and "basicsr layout" in err
    assert sorted(os.listdir(tmp_path / "runs")) == ["imported"]  # No temporary folder left.

    config = workdirs.load_config(str(out))
    assert config.task == "gan_sr" and config.scale == scale and config.model.name == "rrdbnet"
    assert dict(config.model.overrides) == {"features": 8, "growth": 4, "num_blocks": 1}
    assert config.loss.perceptual_weight == 0 and config.degradation.kind == "realesrgan"
    gan_sr_parts.validate(config)  # A complete gan_sr config that needs no VGG19 file.

    predict, got_scale, radius, info = upscalers.workdir_predictor(str(out))
    assert got_scale == scale and info["weights"] == "best"
    assert radius == RRDBNet(scale=scale, features=8, growth=4, num_blocks=1).receptive_radius
    lr = _lr(3)
    want = reference_forward(state, lr, scale)
    np.testing.assert_allclose(np.asarray(predict(lr)), want, atol=1e-5, rtol=0)

    # Fine-tuning start (--config.init_from): every parameter of a fresh model is taken.
    pretrained, step = checkpointing.load_params(os.path.join(out, "best"))
    assert step == 0
    model = RRDBNet(scale=scale, features=8, growth=4, num_blocks=1)
    fresh = model.init(jax.random.key(0), lr)["params"]
    merged, taken = base.merge_matching(fresh, pretrained)
    assert len(taken) == len(_leaves(fresh)) == 2 * (6 + 15)

    # upscale: a PNG in, the reference's 8-bit image out.
    png = tmp_path / "lr.png"
    lr8 = (np.random.default_rng(4).uniform(0, 1, (10, 12, 3)) * 255).round().astype(np.uint8)
    Image.fromarray(lr8).save(png)
    assert upscale.main([str(png), str(tmp_path / "sr.png"), "--workdir", str(out)]) == 0
    sr8 = np.asarray(Image.open(tmp_path / "sr.png"), np.int16)
    ref8 = np.round(np.clip(reference_forward(state, lr8[None] / 255.0, scale)[0], 0, 1) * 255)
    assert sr8.shape == (10 * scale, 12 * scale, 3)
    assert np.abs(sr8 - ref8).max() <= 1 and np.mean(sr8 == ref8) > 0.99


def test_cli_workdir_evaluates(tmp_path, capsys):
    state = basicsr_state(20, 4, 1)
    np.savez(tmp_path / "w.npz", **{f"params_ema.{k}": v for k, v in state.items()})
    assert _main(capsys, "rrdbnet", tmp_path / "w.npz", tmp_path / "wd")[0] == 0
    hr = np.random.default_rng(5).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    (tmp_path / "hr").mkdir()
    Image.fromarray(hr).save(tmp_path / "hr" / "a.png")
    capsys.readouterr()
    assert evaluate.main(["--workdir", str(tmp_path / "wd"), "--hr-dir", str(tmp_path / "hr")]) == 0
    result = json.loads(capsys.readouterr().out)
    # PSNR (RGB, 4-pixel border crop) of the reference's 8-bit output on the bicubic LR.
    lr = sr_pairs.bicubic_lr(hr, 4)
    sr = np.round(np.clip(reference_forward(state, lr[None] / 255.0, 4)[0], 0, 1) * 255)
    mse = np.mean((sr - hr)[4:-4, 4:-4] ** 2)
    assert result["scale"] == 4
    assert abs(result["mean"]["psnr_rgb"] - 10 * np.log10(255.0**2 / mse)) < 0.05


def test_cli_errors_are_one_line_and_touch_nothing(tmp_path, capsys):
    good = tmp_path / "good.npz"
    np.savez(good, **basicsr_state(0, 4, 1))
    missing_key = tmp_path / "missing.npz"
    np.savez(missing_key, **_drop("body.0.rdb3.conv4.weight")(basicsr_state(0, 4, 1)))
    (tmp_path / "model.pth").write_bytes(b"\x80\x02 not read")
    (tmp_path / "text.safetensors").write_text("not a safetensors file")
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:300])
    np.savez(tmp_path / "nested.npz", params_ema=np.array({"a": 1}, dtype=object))
    np.savez(tmp_path / "other.npz", **{"layer.weight": np.zeros((2, 2), np.float32)})
    out = tmp_path / "out"
    cases = [
        (["rrdbnet", tmp_path / "absent.npz", out], "absent.npz: no such file"),
        (["rrdbnet", tmp_path / "model.pth", out], "params_ema"),
        (["rrdbnet", tmp_path / "text.safetensors", out], "not a state dict"),
        (["rrdbnet", tmp_path / "cut.npz", out], "not a state dict"),
        (["rrdbnet", tmp_path / "nested.npz", out], "not a state dict"),
        (["rrdbnet", tmp_path / "other.npz", out], "unknown layout"),
        (["rrdbnet", missing_key, out], "missing key 'body.0.rdb3.conv4.weight'"),
        (["rrdbnet", good, out, "--scale", "2"], "scale mismatch"),
        (["rrdbnet", good, out, "--scale", "3"], "--scale must be 1, 2 or 4"),
        (["edsr", good, out], "missing key 'head.0.weight': these are not EDSR weights"),
        (["vdsr", good, out], "unknown model 'vdsr'; valid: rrdbnet, srvgg, edsr, span"),
    ]
    for args, message in cases:
        rc, err = _main(capsys, *args)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert message in lines[0], (message, err)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["good.npz", "missing.npz", "model.pth", "text.safetensors", "cut.npz", "nested.npz"]
        + ["other.npz"]
    )


def test_existing_workdir_needs_overwrite(tmp_path, capsys):
    x4, x2 = tmp_path / "x4.npz", tmp_path / "x2.npz"
    np.savez(x4, **basicsr_state(0, 4, 1))
    np.savez(x2, **basicsr_state(0, 2, 1))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):  # Not a workdir: never replaced.
        rc, err = _main(capsys, "rrdbnet", x4, mine, *extra)
        assert rc == 2 and err.startswith("error: ")
        assert os.listdir(mine) == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    assert _main(capsys, "rrdbnet", x4, tmp_path / "file", "--overwrite")[0] == 2
    assert (tmp_path / "file").read_text() == "x"

    wd = tmp_path / "wd"
    assert _main(capsys, "rrdbnet", x4, wd)[0] == 0
    before = (wd / "config.json").read_text()
    rc, err = _main(capsys, "rrdbnet", x2, wd)
    assert rc == 2 and "exists; pass --overwrite" in err
    assert (wd / "config.json").read_text() == before
    assert _main(capsys, "rrdbnet", x2, wd, "--overwrite")[0] == 0
    assert workdirs.load_config(str(wd)).scale == 2
    params, _, _ = workdirs.load_inference_params(str(wd))
    assert params["conv_first"]["kernel"].shape == (3, 3, 12, FEATURES)
    assert sorted(os.listdir(tmp_path)) == ["file", "mine", "wd", "x2.npz", "x4.npz"]
