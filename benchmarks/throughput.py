"""Train-step throughput of a config: median step time, images/s and model FLOPs utilisation.

    python benchmarks/throughput.py --config configs/edsr_x2.py --batch-size 16 --lr-patch 48 \
        [--precision auto|float32|bfloat16] [--steps 50] [--warmup 10] [--output FILE]

The step is the one the trainer runs: the task's ``train_step`` (`genres_jax.tasks`) wrapped by
`genres_jax.train.nonfinite.guard_step`, jitted with the trainer's shardings and state donation on
its mesh (``--set mesh.model=N`` for FSDP-style sharding). Batches are synthetic uint8 arrays placed
on the devices once, so no data loading is measured. After ``--warmup`` steps, ``--steps``
steps are timed in ``--windows`` windows (one device sync per window); the median window gives
the step time.

FLOPs are XLA's cost analysis of the compiled step, which counts a multiply-add as 2 FLOPs and
describes one device's program; MFU = those FLOPs / step time / the device's dense peak rate in
the compute dtype (`harness.PEAK_TFLOPS`; null on CPUs and unknown devices). On GPUs XLA may run
float32 convolutions as TF32, so a float32 MFU against the float32 peak can exceed 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import harness
import jax
import numpy as np

from genres_jax import tasks
from genres_jax.train import config_checks, nonfinite, precision, sharding

# (H, W, C) of the image datasets as stored; dataset.image_size replaces H and W when set.
DATASET_IMAGE_SHAPES = {
    "fashion_mnist_local": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
    "celeb_a": (218, 178, 3),
}


def image_shape(config, override: str | None = None) -> tuple[int, int, int]:
    """(H, W, C) of one training image (images) or one LR patch (SR pairs) of ``config``."""
    if override:
        shape = tuple(int(v) for v in override.split(","))
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"--image-shape must be H,W,C with positive sizes, got {override!r}")
        return shape
    ds = config.dataset
    if ds.get("kind", "images") == "sr_pairs":
        channels = int(dict(config.model.get("overrides", {})).get("channels", 3))
        return (ds.lr_patch_size, ds.lr_patch_size, channels)
    if ds.name not in DATASET_IMAGE_SHAPES:
        known = ", ".join(sorted(DATASET_IMAGE_SHAPES))
        raise ValueError(
            f"image shape of dataset {ds.name!r} unknown (known: {known}); pass --image-shape H,W,C"
        )
    h, w, c = DATASET_IMAGE_SHAPES[ds.name]
    if ds.get("image_size"):
        h = w = ds.image_size
    return (h, w, c)


def synthetic_batch(config, shape: tuple[int, int, int], batch_size: int) -> dict[str, np.ndarray]:
    """A random batch with the keys, shapes and dtypes the task's pipeline yields."""
    rng = np.random.default_rng(config.seed)
    if config.dataset.get("kind", "images") == "sr_pairs":
        h, w, c = shape
        s = config.scale
        return {
            "lr": rng.integers(0, 256, (batch_size, h, w, c), dtype=np.uint8),
            "hr": rng.integers(0, 256, (batch_size, h * s, w * s, c), dtype=np.uint8),
        }
    batch = {"image": rng.integers(0, 256, (batch_size, *shape), dtype=np.uint8)}
    if config.task == "classifier":
        batch["label"] = rng.integers(0, config.model.num_classes, (batch_size,)).astype(np.int32)
    return batch


def _analysis(stage) -> dict[str, Any]:
    analysis = stage.cost_analysis()
    if isinstance(analysis, list | tuple):  # Older JAX: one dict per program.
        analysis = analysis[0] if analysis else {}
    return analysis or {}


def _flops(lowered, compiled) -> tuple[float | None, float | None]:
    """(model FLOPs, bytes accessed) of one step, from XLA's cost analysis.

    FLOPs come from the lowered (backend-independent) program: on GPU the compiled program's
    convolutions are library calls that its cost analysis counts as zero FLOPs, which would
    make MFU meaningless. Bytes accessed come from the compiled program.
    """
    flops = _analysis(lowered).get("flops") or _analysis(compiled).get("flops")
    moved = _analysis(compiled).get("bytes accessed")
    return (float(flops) if flops else None), (float(moved) if moved else None)


def measure(
    config,
    *,
    steps: int,
    warmup: int,
    windows: int,
    shape_override: str | None = None,
    guarded: bool = True,
) -> dict[str, Any]:
    """Compiles and times the train step of ``config``; returns the figures as a dict."""
    # Nothing is evaluated here: keep an eval batch the device count divides from failing checks.
    n = jax.device_count()
    config.eval_batch_size = -(-config.eval_batch_size // n) * n
    config_checks.validate_config(config)
    shape = image_shape(config, shape_override)
    host_batch = synthetic_batch(config, shape, config.batch_size)
    task = tasks.make(config, shape)
    mesh = sharding.make_mesh(config.mesh.model)
    with jax.set_mesh(mesh):
        repl = sharding.replicated(mesh)
        init_rng, rng = jax.random.split(jax.random.PRNGKey(config.seed))
        abstract = jax.eval_shape(task.init, init_rng, host_batch)
        state_sh = sharding.state_shardings(abstract, mesh)
        state = jax.jit(task.init, out_shardings=state_sh)(init_rng, host_batch)
        batch = sharding.host_batch_to_global(host_batch, mesh)
        batch_sh = sharding.batch_sharding(mesh)
        rng = sharding.replicate(rng, mesh)
        if guarded:
            counters_sh = {"bad_run": repl, "bad_total": repl}
            jitted = jax.jit(
                nonfinite.guard_step(task.train_step),
                in_shardings=(state_sh, counters_sh, batch_sh, repl),
                out_shardings=(state_sh, counters_sh, repl),
                donate_argnums=(0, 1),
            )
            carry = [state, sharding.replicate(nonfinite.new_counters(), mesh)]
        else:
            jitted = jax.jit(
                task.train_step,
                in_shardings=(state_sh, batch_sh, repl),
                out_shardings=(state_sh, repl),
                donate_argnums=(0,),
            )
            carry = [state]
        start = time.perf_counter()
        lowered = jitted.lower(*carry, batch, rng)
        compiled = lowered.compile()
        compile_s = time.perf_counter() - start

        def one_step():
            *new_carry, metrics = compiled(*carry, batch, rng)
            carry[:] = new_carry
            return carry[0], metrics

        for _ in range(warmup):
            out = one_step()
        if warmup:
            jax.block_until_ready(out)
        step_s = harness.time_windows(one_step, steps=steps, windows=windows)
        final_metrics = jax.device_get(one_step()[1])

    flops, moved = _flops(lowered, compiled)
    dtype = precision.compute_dtype(config).name
    facts = harness.device_facts()
    median_s = harness.median(step_s)
    peak = harness.peak_tflops(facts["device_kind"], dtype)
    achieved = flops / median_s / 1e12 if flops else None
    result = {
        "benchmark": "throughput",
        "task": config.task,
        "model": config.model.name,
        "batch_size": config.batch_size,
        "image_shape": list(shape),
        "precision": config.precision,
        "compute_dtype": dtype,
        "mesh": dict(mesh.shape),
        "guarded_step": guarded,
        "data": "synthetic batch resident on the devices",
        "compile_s": compile_s,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "window_step_ms": [t * 1e3 for t in step_s],
        "median_step_ms": median_s * 1e3,
        "images_per_s": config.batch_size / median_s,
        "xla_flops_per_step_per_device": flops,
        "xla_bytes_accessed_per_step_per_device": moved,
        "achieved_tflops_per_device": achieved,
        "peak_tflops_per_device": peak,
        "mfu": achieved / peak if achieved and peak else None,
        "finite_loss": bool(all(np.isfinite(v) for v in final_metrics.values())),
        **facts,
    }
    if config.dataset.get("kind") == "sr_pairs":
        result["scale"] = config.scale
        result["lr_patch"] = config.dataset.lr_patch_size
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a config file, e.g. configs/edsr_x2.py")
    p.add_argument("--batch-size", type=int, help="global batch (default: the config's)")
    p.add_argument("--lr-patch", type=int, help="SR: LR patch size (default: the config's)")
    p.add_argument("--precision", choices=precision.PRECISIONS, help="default: the config's")
    p.add_argument("--steps", type=int, default=50, help="timed steps")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps after compilation")
    p.add_argument("--windows", type=int, default=5, help="timing windows (median is reported)")
    p.add_argument("--image-shape", help="H,W,C of a training image, for unlisted datasets")
    p.add_argument("--unguarded", action="store_true", help="time the bare task step")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--output", help="write the JSON here too")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.windows < 1:
        p.error("--steps and --windows must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    overrides = list(args.set)
    if args.batch_size is not None:
        overrides.append(f"batch_size={args.batch_size}")
    if args.lr_patch is not None:
        overrides.append(f"dataset.lr_patch_size={args.lr_patch}")
    if args.precision is not None:
        overrides.append(f"precision={args.precision}")
    try:
        config = harness.load_config(args.config, overrides)
        result = measure(
            config,
            steps=args.steps,
            warmup=args.warmup,
            windows=args.windows,
            shape_override=args.image_shape,
            guarded=not args.unguarded,
        )
    except ValueError as e:  # ConfigError included: one line, no traceback.
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    result["config"] = args.config
    harness.emit(result, args.output)
    return result


if __name__ == "__main__":
    main()
