"""Every shipped config, full size, for a few steps on N simulated devices: does each one run?

    python benchmarks/every_config.py --workdir /tmp/every_config [--devices 8] [--steps 2] \
        [--config configs/X.py ...] [--output FILE]

Each config runs as a user would start it, ``python train.py --config configs/X.py --workdir
W/X`` in a fresh process with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``, with only
its step counts overridden (``total_steps``, ``eval_every``, ``checkpoint_every`` and
``log_every`` all set to ``--steps``, so that one evaluation and one checkpoint happen), and
with the shipped batch sizes, model sizes and ``eval_batch_size``. Two inputs that cannot be
had offline are replaced, and the output says so: ``dcgan_64``'s CelebA (online on first use)
by the offline Fashion-MNIST, and the ImageNet VGG19 weights of the perceptual configs by
He-random weights of the same shapes (the question is whether the run works, not its quality).
Prints one JSON object: per config its exit status, wall time and the last line of its
evaluation (or of its error).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _random_vgg19(path: str) -> None:
    """torchvision's vgg19 ``features.*`` keys, He-normal weights, small positive biases."""
    sys.path.insert(0, ROOT)
    from genres_jax.models import vgg

    rng = np.random.default_rng(0)
    state = {}
    for index, cin, cout in vgg.VGG19_CONVS.values():
        std = math.sqrt(2.0 / (9 * cin))
        weight = rng.normal(size=(cout, cin, 3, 3)).astype(np.float32) * np.float32(std)
        state[f"features.{index}.weight"] = weight
        state[f"features.{index}.bias"] = np.full(cout, 0.01, np.float32)
    np.savez(path, **state)


def _overrides(name: str, steps: int, vgg_file: str) -> tuple[list[str], list[str]]:
    flags = [f"--config.{key}={steps}" for key in ("total_steps", "eval_every")]
    flags += [f"--config.{key}={steps}" for key in ("checkpoint_every", "log_every")]
    replaced = []
    with open(os.path.join(ROOT, "configs", f"{name}.py")) as f:
        text = f.read()
    if '"celeb_a"' in text:
        flags += ["--config.dataset.name=fashion_mnist_local", "--config.dataset.eval_split=test"]
        replaced.append("CelebA -> offline Fashion-MNIST")
    if "perceptual_weight" in text or "gan_sr_config" in text:
        flags.append(f"--config.loss.vgg_weights={vgg_file}")
        replaced.append("ImageNet VGG19 -> He-random VGG19")
    return flags, replaced


def _last_metrics(workdir: str) -> str:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    evals = [line for line in lines if '"kind": "eval' in line]
    return (evals or lines or [""])[-1].strip()[:400]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a new or empty folder for the runs")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--config", action="append", default=[], help="configs/X.py (all)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per config")
    parser.add_argument("--output", default="")
    args = parser.parse_args(argv)
    if os.path.isdir(args.workdir) and os.listdir(args.workdir):
        parser.error(f"--workdir {args.workdir} is not empty; give a new folder")
    os.makedirs(args.workdir, exist_ok=True)
    paths = args.config or sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
    names = [os.path.basename(p)[:-3] for p in paths]
    vgg_file = os.path.join(args.workdir, "random_vgg19_features.npz")
    _random_vgg19(vgg_file)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    results = {}
    for name in names:
        workdir = os.path.join(args.workdir, name)
        flags, replaced = _overrides(name, args.steps, vgg_file)
        cmd = [sys.executable, "train.py", "--config", f"configs/{name}.py", "--workdir", workdir]
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd + flags,
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=args.timeout,
            )
            code, err = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            code, err = "timeout", ""
        seconds = round(time.perf_counter() - start, 1)
        tail = (err.strip().splitlines() or [""])[-1][:400]
        results[name] = {
            "exit": code,
            "seconds": seconds,
            "replaced": replaced,
            "last": _last_metrics(workdir) if code == 0 else tail,
        }
        print(f"{name}: exit {code} in {seconds} s", file=sys.stderr, flush=True)
    out = {"devices": args.devices, "steps": args.steps, "configs": results}
    text = json.dumps(out, indent=1)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0 if all(r["exit"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
