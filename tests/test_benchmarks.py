"""The benchmark scripts run on a CPU with tiny sizes and report sound, positive figures.

Speed itself is not tested (figures belong in benchmark runs); what is checked is that every
field is there and positive, that FLOPs agree with an independent count of the convolutions,
and that the rates are right for a fake clock whose every reading advances by a known step.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import jax
import pytest
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
harness = importlib.import_module("harness")
throughput = importlib.import_module("throughput")
input_pipeline = importlib.import_module("input_pipeline")
inference = importlib.import_module("inference")
compare_torch = importlib.import_module("compare_torch")

TINY_EDSR = "model.overrides={'features': 8, 'num_blocks': 1}"


class FakeClock:
    """Stands in for the ``time`` module: each ``perf_counter()`` reading is ``dt`` later."""

    def __init__(self, dt: float):
        self.dt, self.now = dt, 1000.0

    def perf_counter(self) -> float:
        self.now += self.dt
        return self.now


def _positive(result: dict, *keys: str) -> None:
    for key in keys:
        value = result[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert value > 0, (key, value)


def _edsr_forward_flops(features: int, blocks: int, patch: int, scale: int) -> int:
    """2 * multiply-adds of EDSR's 3x3 convolutions on one RGB patch (scale 2 or 3)."""
    lr_macs = 9 * (3 * features + (2 * blocks + 1) * features**2 + features * features * scale**2)
    hr_macs = 9 * features * 3
    return 2 * (patch**2 * lr_macs + (patch * scale) ** 2 * hr_macs)


def test_time_windows_divides_each_window_by_its_calls(monkeypatch):
    monkeypatch.setattr(harness, "time", FakeClock(0.25))
    calls = []
    times = harness.time_windows(lambda: calls.append(1), steps=5, windows=2)
    # Windows of 3 and 2 calls, each measured between two readings 0.25 s apart.
    assert times == [0.25 / 3, 0.25 / 2] and len(calls) == 5


def test_throughput_fields_and_flops(tmp_path, monkeypatch):
    out = tmp_path / "t.json"
    argv = ["--config", os.path.join(REPO, "configs/edsr_x2.py"), "--batch-size", "4"]
    argv += ["--lr-patch", "16", "--steps", "3", "--warmup", "1", "--windows", "3"]
    # One step per window, each window 0.5 s on the fake clock: 8 images/s at batch 4.
    monkeypatch.setattr(harness, "time", FakeClock(0.5))
    result = throughput.main([*argv, "--set", TINY_EDSR, "--output", str(out)])
    assert json.loads(out.read_text()) == result
    assert result["window_step_ms"] == [500.0, 500.0, 500.0]
    assert result["median_step_ms"] == 500.0 and result["images_per_s"] == 8.0
    _positive(result, "compile_s", "xla_flops_per_step_per_device", "achieved_tflops_per_device")
    assert result["device_kind"] == jax.devices()[0].device_kind
    assert result["jax_version"] == jax.__version__ and result["flax_version"]
    # A CPU has no peak in the table, so no MFU.
    assert result["peak_tflops_per_device"] is None and result["mfu"] is None
    assert result["finite_loss"] and result["compute_dtype"] == "float32"
    # A train step costs about three forward passes (forward, input and weight gradients).
    forward = 4 * _edsr_forward_flops(8, 1, 16, 2)
    assert 2.5 * forward < result["xla_flops_per_step_per_device"] < 3.5 * forward


def test_benchmark_configs_match_the_reference_shapes():
    for case, (path, batch, patch) in compare_torch.CASES.items():
        config = harness.load_config(os.path.join(REPO, path), [f"batch_size={batch}"])
        shape = throughput.image_shape(config)
        if patch is None:
            assert shape == (64, 64, 3), case
            assert config.model.features == 64 and config.model.latent_dim == 100
        else:
            config.dataset.lr_patch_size = patch
            assert throughput.image_shape(config) == (patch, patch, 3), case
    with pytest.raises(ValueError, match="unknown config key"):
        harness.load_config(os.path.join(REPO, "configs/edsr_x2.py"), ["batch_sise=3"])


def test_input_pipeline_fields(sr_data_dir, fmnist_data_dir, monkeypatch):
    # The timed loop reads the clock twice: 3 batches in 2 s.
    monkeypatch.setattr(input_pipeline, "time", FakeClock(2.0))
    sr = input_pipeline.main(
        ["--config", os.path.join(REPO, "configs/edsr_x2.py"), "--batch-size", "4"]
        + ["--batches", "3", "--warmup", "1", "--set", f"dataset.data_dir={sr_data_dir}"]
        + ["--set", "dataset.name=sr_photos_local"]
    )["results"][0]
    images = input_pipeline.main(
        ["--config", os.path.join(REPO, "configs/dcgan_fashion_mnist.py"), "--batch-size", "8"]
        + ["--batches", "3", "--warmup", "1", "--set", f"dataset.data_dir={fmnist_data_dir}"]
    )["results"][0]
    assert sr["batch_shapes"] == {"lr": [4, 64, 64, 3], "hr": [4, 128, 128, 3]}
    assert images["batch_shapes"]["image"] == [8, 28, 28, 1]
    assert sr["seconds"] == images["seconds"] == 2.0
    assert sr["batches_per_s"] == images["batches_per_s"] == 1.5
    assert (sr["images_per_s"], images["images_per_s"]) == (6.0, 12.0)
    # 3 batches of uint8 LR 4x64x64x3 and HR 4x128x128x3 (737,280 bytes) in 2 s.
    assert sr["megabytes_per_s"] == pytest.approx(0.36864)


def test_inference_fields(monkeypatch):
    # Each timed image is read between two clock readings 0.5 s apart.
    monkeypatch.setattr(inference, "time", FakeClock(0.5))
    result = inference.main(
        ["--config", os.path.join(REPO, "configs/edsr_x2.py"), "--height", "24", "--width", "40"]
        + ["--tile", "8", "--batch-size", "4", "--repeats", "1", "--set", TINY_EDSR]
    )["results"][0]
    assert "random" in result["weights"]
    assert result["input_hw"] == [24, 40] and result["scale"] == 2
    for mode in ("whole", "tiled"):
        entry = result[mode]
        # 960 input pixels and 3,840 output pixels in 0.5 s.
        assert entry["seconds_per_image"] == pytest.approx(0.5)
        assert entry["input_megapixels_per_s"] == pytest.approx(0.00192)
        assert entry["output_megapixels_per_s"] == pytest.approx(0.00768)
    # Cores of 8 pixels: 3 rows by 5 columns of windows.
    assert result["tiled"]["windows"] == 15


def test_peak_lookup_rules():
    peak = harness.peak_tflops
    # Device kinds as JAX reports them find their row whatever the case and the suffix.
    for kind in ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "TPU v4", "TPU v5 lite"):
        assert peak(kind, "bfloat16") is not None
        assert peak(kind.upper(), "bfloat16") == peak(kind.lower(), "bfloat16")
    # The first row found in the kind wins: "H100 PCIe" is unknown although it holds "H100",
    # and "TPU v5 lite" is not the v5p row although it holds "TPU v5".
    assert peak("NVIDIA H100 PCIe", "bfloat16") is None
    assert peak("TPU v5 lite", "bfloat16") < peak("TPU v5p", "bfloat16")
    # GPUs: float32 (no TF32) far below bfloat16; TPUs run float32 matmuls as bf16 passes.
    assert peak("NVIDIA H100 80GB HBM3", "float32") < peak("NVIDIA H100 80GB HBM3", "bfloat16") / 10
    assert peak("TPU v4", "float32") == peak("TPU v4", "bfloat16")
    for kind in ("cpu", "NVIDIA GeForce RTX 4090"):
        assert peak(kind, "bfloat16") is None and peak(kind, "float32") is None


def test_comparison_rows_pick_the_best_form_and_divide():
    torch = [
        {"case": "dcgan64_bs128", "amp": False, "compile": False, "img_s": 100.0},
        {"case": "dcgan64_bs128", "amp": False, "compile": True, "img_s": 80.0},
        {"case": "dcgan64_bs128", "amp": True, "compile": True, "img_s": 150.0},
    ]
    ours = [
        {"case": "dcgan64_bs128", "precision": "float32", "images_per_s": 120.0},
        {"case": "dcgan64_bs128", "precision": "bfloat16", "images_per_s": 300.0},
    ]
    rows = {r["case"]: r for r in compare_torch.comparison_rows(torch, ours)}
    row = rows["dcgan64_bs128"]
    assert row["torch_float32"] == 100.0 and row["torch_float32_form"] == "eager fp32"
    assert row["ratio_float32"] == pytest.approx(1.2)
    assert row["ratio_bfloat16"] == pytest.approx(2.0)
    assert row["ratio_best"] == pytest.approx(300.0 / 150.0)
    assert rows["edsr_l_x2_bs16_lr48"]["ratio_best"] is None  # Neither side ran it.
    table = compare_torch.format_table(list(rows.values()))
    assert len(table.splitlines()) == 2 + len(compare_torch.CASES)
    expected = "| dcgan64_bs128 | 100 (eager fp32) | 120 | 1.20x | 150 (compile bf16) | 300 | 2.00x"
    assert expected in table


def test_cpu_comparison_takes_the_median_round_of_each_side(monkeypatch):
    # torch_cpu.py needs PyTorch, which the project never installs: its cases are read as text.
    with open(os.path.join(REPO, "benchmarks", "torch_cpu.py")) as f:
        torch_source = f.read()
    for case, (config, *_rest) in compare_torch.CPU_CASES.items():
        assert f'"{case}":' in torch_source and os.path.isfile(os.path.join(REPO, config))
    # Round r of a form takes base * (1, 3, 2)[r] ms: the median is the base times 2.
    base = {"torch": 10.0, "shipped": 20.0, "shared": 15.0, "shared unguarded": 8.0}
    calls = []

    def fake_run(cmd, out):
        rnd = int(out.rsplit("_", 1)[1].split(".")[0])
        factor = (1, 3, 2)[rnd]
        if "torch_cpu.py" in cmd[1]:
            calls.append("torch")
            return [{"ms_per_step": base["torch"] * factor}]
        form = next(
            f for f, extra in compare_torch.CPU_CASES["dcgan28_bs64"][5].items() if extra == cmd[8:]
        )
        calls.append(form)
        return {"median_step_ms": base[form] * factor}

    monkeypatch.setattr(compare_torch, "_run_json", fake_run)
    args = compare_torch.parse_args(["--device", "cpu", "--cpu-cases", "dcgan28_bs64"])
    rows = {r["ours_form"]: r for r in compare_torch.cpu_rows(args, "/nonexistent")}
    assert calls[:4] == ["torch", "shipped", "shared", "shared unguarded"]  # Alternating.
    assert len(calls) == 12
    assert rows["shipped"]["torch_ms"] == 20.0 and rows["shipped"]["ours_ms"] == 40.0
    assert rows["shared unguarded"]["ratio"] == pytest.approx(10.0 / 8.0)
    table = compare_torch.format_cpu_table(list(rows.values()))
    assert "| dcgan28_bs64 | shared | 20.0 | 30.0 | 0.67x |" in table


def test_inference_flops_match_the_closed_form_and_the_split_adds_up():
    # ESPCN x2 on a 20x24 LR image: 5x5 3->64, 3x3 64->32, 3x3 32->12 convolutions, SAME
    # padding, whose taps on the zero border are no work: k*n - (k//2)(k//2 + 1) per axis.
    result = inference.main(
        ["--config", os.path.join(REPO, "configs/espcn.py:x2"), "--height", "20", "--width"]
        + ["24", "--tile", "8", "--repeats", "1", "--split"]
    )["results"][0]

    def taps(k, n):
        return k * n - (k // 2) * (k // 2 + 1)

    layers = [(5, 3, 64), (3, 64, 32), (3, 32, 12)]
    macs = sum(ci * co * taps(k, 20) * taps(k, 24) for k, ci, co in layers)
    expected = 2 * macs / (40 * 48 / 1e6) / 1e9
    assert result["gflops_per_output_megapixel"] == pytest.approx(expected, rel=0.01)
    # The timed parts (tiling is what is left of upscale_pixels, so not checked on its own).
    split = result["upscale_split_seconds"]
    for part in ("read", "to_device", "model", "to_host", "write"):
        assert 0 < split[part] < split["total"], part


def test_pareto_table_gains_and_plot(tmp_path):
    pareto = importlib.import_module("pareto")
    evals = tmp_path / "eval"
    evals.mkdir()

    def write(name, model, scale, val, test):
        for split, y in (("validation", val), ("test", test)):
            doc = {"model": model, "scale": scale, "mean": {"psnr_y": y, "ssim_y": 0.9}}
            (evals / f"{name}_{split}.json").write_text(json.dumps(doc))

    write("bicubic_x2", "bicubic", 2, 37.0, 30.0)
    write("fsrcnn_x2", "fsrcnn", 2, 38.5, 31.25)
    speed = tmp_path / "speed.json"
    result = {"model": "fsrcnn", "scale": 2, "parameters": 24683}
    result |= {"gflops_per_output_megapixel": 13.7, "tiled": {"output_megapixels_per_s": 2.5}}
    speed.write_text(json.dumps({"results": [result]}))
    text = pareto.main(
        ["--eval-dir", str(evals), "--inference", str(speed)] + ["--out", str(tmp_path / "p.png")]
    )
    lines = text.splitlines()
    assert lines[2].startswith("| bicubic_x2 | x2 | - |")
    assert lines[3] == (
        "| fsrcnn_x2 | x2 | 24,683 | 13.7 | 2.50 | 38.50 dB / 0.9000 (+1.50) "
        "| 31.25 dB / 0.9000 (+1.25) |"
    )
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
