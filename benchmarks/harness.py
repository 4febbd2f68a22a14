"""What the benchmark scripts share: config loading, device facts, peak FLOP rates, timing, JSON.

Benchmarks are scripts, not tests: ``python benchmarks/<name>.py --help``. Each prints one JSON
object and writes it to ``--output`` when given.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import jax  # noqa: E402
import ml_collections  # noqa: E402

# Dense peak rates per device in TFLOP/s, (bfloat16, float32), from the vendors' data sheets.
# Matched in order against ``device.device_kind``; the first entry found in it wins. H100 PCIe
# and NVL boards have lower peaks than the SXM figures and are left unknown (MFU null) rather
# than overstated. TPUs run float32 matmuls as bfloat16 passes, so one figure serves both.
PEAK_TFLOPS: tuple[tuple[str, tuple[float, float] | None], ...] = (
    ("H100 PCIe", None),
    ("H100 NVL", None),
    ("H100", (989.4, 67.0)),
    ("H200", (989.4, 67.0)),
    ("A100", (312.0, 19.5)),
    ("TPU v5 lite", (197.0, 197.0)),
    ("TPU v5e", (197.0, 197.0)),
    ("TPU v5p", (459.0, 459.0)),
    ("TPU v5", (459.0, 459.0)),
    ("TPU v4", (275.0, 275.0)),
)


def peak_tflops(device_kind: str, dtype_name: str) -> float | None:
    """Dense peak TFLOP/s of one device of ``device_kind`` in ``dtype_name``; None if unknown
    (every CPU, and accelerators not in `PEAK_TFLOPS`)."""
    for name, peaks in PEAK_TFLOPS:
        if name.lower() in device_kind.lower():
            if peaks is None:
                return None
            return peaks[0] if dtype_name == "bfloat16" else peaks[1]
    return None


def device_facts() -> dict[str, Any]:
    """The device and library versions a figure was measured with."""
    import flax
    import optax

    device = jax.devices()[0]
    return {
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
        "flax_version": flax.__version__,
        "optax_version": optax.__version__,
        "python_version": sys.version.split()[0],
    }


def parse_override(text: str) -> tuple[str, Any]:
    """``key.path=value`` with ``value`` a Python literal (a plain string otherwise)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not key=value")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def load_config(path: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """``get_config()`` of the config file at ``path`` with ``key=value`` overrides applied;
    ``file.py:arg`` passes ``arg`` (``configs/span.py:x4``), as ``train.py --config`` does.

    An unknown key is an error, as with ``train.py``'s ``--config.key=value``.
    """
    path, _, arg = path.partition(".py:")
    path = path if path.endswith(".py") or not arg else path + ".py"
    if not os.path.isfile(path):
        raise ValueError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location("benchmark_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    for text in overrides:
        key, value = parse_override(text)
        target = config
        *parents, leaf = key.split(".")
        try:
            for part in parents:
                target = target[part]
            if leaf not in target:
                raise KeyError(leaf)
        except (KeyError, TypeError):
            raise ValueError(f"unknown config key {key!r} in override {text!r}") from None
        target[leaf] = value
    return config


def time_windows(run: Callable[[], Any], *, steps: int, windows: int) -> list[float]:
    """Seconds per call of ``run`` in each of ``windows`` windows of about ``steps / windows``
    calls; ``run`` must return what to wait for. One wait per window, so the device queue stays
    full, as in a training loop."""
    windows = max(1, min(windows, steps))
    per_window = [steps // windows + (i < steps % windows) for i in range(windows)]
    times = []
    for count in per_window:
        start = time.perf_counter()
        out = None
        for _ in range(count):
            out = run()
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / count)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def emit(result: dict[str, Any], output: str | None) -> None:
    """Prints ``result`` as one JSON line and writes it (indented) to ``output`` if given."""
    print(json.dumps(result), flush=True)
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with open(output, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
