"""The training loop shared by every task: config -> data -> jitted steps -> checkpoints/metrics.

Straight-line on purpose; each banner is one stage. The loop runs the same code on 1 device,
N devices and N hosts: the state is replicated over a 1-D ``data`` mesh and every batch is split
over it. Metrics reach the host every ``log_every`` steps only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from genres_jax import checkpointing, sharding, sr_eval, summaries, tasks
from genres_jax.data import inputs, pipeline, sources


class ConfigError(ValueError):
    """A config value that cannot work; raised before anything is compiled."""


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Checks shared by every task; the task's own checks follow in `tasks.validate`."""
    for key in ("batch_size", "total_steps", "log_every", "checkpoint_every", "keep_checkpoints"):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    for key in ("eval_every", "seed"):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{key} must be a non-negative integer, got {value!r}")
    init_from = config.get("init_from", "")
    if init_from and not os.path.isdir(os.path.join(init_from, "best")):
        raise ConfigError(
            f"init_from={init_from!r} is not a workdir with best weights ({init_from}/best)"
        )
    n = jax.device_count()
    if config.batch_size % n:
        raise ConfigError(
            f"batch_size={config.batch_size} is not divisible by the {n} devices; "
            f"use a multiple of {n}"
        )
    if config.eval_batch_size <= 0 or config.eval_batch_size % n:
        raise ConfigError(f"eval_batch_size must be a positive multiple of the device count ({n})")
    try:
        inputs.validate(config)
        tasks.validate(config)
    except ValueError as e:
        raise ConfigError(str(e)) from None


# Metrics shown next to the progress bar, when a task reports them.
_PROGRESS_KEYS = ("loss", "d_loss", "g_loss", "elbo")


def _mean_metrics(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
    stacked = jax.device_get(pending)
    return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


def _write_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    path = os.path.join(workdir, "config.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    os.replace(tmp, path)


def evaluate(state, eval_step, source, operations, config, rng, mesh) -> dict[str, float]:
    """Runs ``eval_step`` over one pass of ``source``; returns sums / count per metric."""
    totals = None
    for host_batch in pipeline.eval_batches(
        source,
        batch_size=sharding.per_process(config.eval_batch_size),
        operations=operations,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        max_records=config.get("eval_max_records", 0),
    ):
        batch = sharding.host_batch_to_global(host_batch, mesh)
        sums = eval_step(state, batch, rng)
        totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = jax.device_get(totals)
    count = max(float(totals.pop("count")), 1.0)
    return {k: float(v) / count for k, v in totals.items()}


def _init_from(task, state, workdir: str, state_sh, verbose: bool):
    """Fine-tuning start: every parameter of ``workdir``'s best weights that fits is loaded."""
    if task.with_params is None:
        raise ConfigError("init_from is not supported by this task")
    pretrained, step = checkpointing.load_params(os.path.join(workdir, "best"))
    params, taken = tasks.base.merge_matching(task.inference_params(state), pretrained)
    state = jax.device_put(task.with_params(state, params), state_sh)
    if verbose:
        total = len(jax.tree.leaves(params))
        print(
            f"Initialised {len(taken)} of {total} parameter arrays from {workdir} (step {step})",
            file=sys.stderr,
        )
    return state


def validate_sr(task, state, predict, source, config, writer, step: int) -> dict[str, float]:
    """Whole-image SR validation (tiled, so one compilation serves every image size).

    Writes a bicubic | model | HR panel per image (the first ``panels`` images) and returns the
    mean PSNR/SSIM on RGB and Y.
    """
    cfg = config.sr_eval
    overlap = cfg.overlap if cfg.overlap >= 0 else task.receptive_radius
    upscale = sr_eval.model_upscaler(
        lambda lr: predict(state, lr),
        scale=config.scale,
        tile=cfg.tile,
        overlap=overlap,
        batch_size=cfg.batch_size,
    )
    panels = {}

    def keep_panel(name, sr, pair):
        if len(panels) < cfg.panels:
            panels[f"val_{len(panels)}"] = sr_eval.comparison_panel(
                pair["lr"], sr, pair["hr"], scale=config.scale, size=cfg.panel_size
            )[None]

    n = len(source) if not cfg.max_images else min(cfg.max_images, len(source))
    result = sr_eval.evaluate_pairs(
        upscale,
        (source[i] for i in range(n)),
        crop_border=cfg.crop_border if cfg.crop_border >= 0 else config.scale,
        on_image=keep_panel,
    )
    writer.write_images(step, panels)
    return result["mean"]


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str, *, stop_at: int | None = None
) -> dict[str, Any]:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint if there is one.

    ``stop_at`` ends this run after that step with a checkpoint, as a preemption would; the
    schedule still follows ``config.total_steps``. Returns the final step, the last train and
    eval metrics and the state (for scripts and tests).
    """
    # ---------------------------------------------------------------- Checks that cost nothing.
    validate_config(config)
    try:
        sources.check_available(config.dataset)
    except sources.DatasetError as e:
        raise ConfigError(str(e)) from None
    is_chief = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)
    if is_chief:
        _write_config(config, workdir)

    # ------------------------------------------------------------------------------- Data.
    mesh = sharding.make_mesh()
    ds = config.dataset
    train_source, operations = inputs.train_inputs(config)
    loader = pipeline.train_loader(
        train_source,
        batch_size=sharding.per_process(config.batch_size),
        seed=config.seed,
        operations=operations,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        worker_count=ds.worker_count,
        read_threads=ds.read_threads,
    )
    train_iter = iter(loader)
    example = pipeline.example_batch(train_source, operations, config.batch_size)
    image_shape = tuple(example["image" if "image" in example else "lr"].shape[1:])
    task = tasks.make(config, image_shape)
    eval_source = eval_operations = None
    if config.eval_every and (task.eval_step is not None or task.predict is not None):
        eval_source, eval_operations = inputs.eval_inputs(config)

    # ---------------------------------------------------------------- State, fresh or restored.
    repl = sharding.replicated(mesh)
    batch_sh = sharding.batch_sharding(mesh)
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    manager = checkpointing.make_manager(
        os.path.join(workdir, "checkpoints"),
        save_every=config.checkpoint_every,
        keep=config.keep_checkpoints,
    )
    with jax.set_mesh(mesh):
        abstract_state = jax.eval_shape(task.init, init_rng, example)
        state_sh = jax.tree.map(lambda _: repl, abstract_state)
        latest = manager.latest_step()
        if latest is None:
            state = jax.jit(task.init, out_shardings=state_sh)(init_rng, example)
            train_rng = jax.device_put(train_rng, repl)
            if config.get("init_from"):
                state = _init_from(task, state, config.init_from, state_sh, is_chief)
        else:
            target = jax.tree.map(
                lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), abstract_state
            )
            rng_target = jax.ShapeDtypeStruct(train_rng.shape, train_rng.dtype, sharding=repl)
            state, train_rng = checkpointing.restore(
                manager, latest, target, rng_target, train_iter
            )
            if is_chief:
                print(f"Resumed from step {latest} in {workdir}", file=sys.stderr)

        # ------------------------------------------------------------------- Jitted steps.
        train_step = jax.jit(
            task.train_step,
            in_shardings=(state_sh, batch_sh, repl),
            out_shardings=(state_sh, repl),
            donate_argnums=0,
        )
        eval_step = None
        if task.eval_step is not None:
            eval_step = jax.jit(
                task.eval_step, in_shardings=(state_sh, batch_sh, repl), out_shardings=repl
            )
        sample = None
        if task.sample_images is not None:
            sample = jax.jit(task.sample_images, in_shardings=(state_sh, repl), out_shardings=repl)
        predict = None
        best = None
        if task.predict is not None:
            predict = jax.jit(task.predict, in_shardings=(state_sh, repl), out_shardings=repl)
            if is_chief:
                best = checkpointing.make_best_manager(os.path.join(workdir, "best"), "psnr_y")
        eval_rng = jax.random.fold_in(train_rng, 0x7FFFFFFF)
        sample_rng = jax.random.fold_in(train_rng, 0x7FFFFFFE)

        # ------------------------------------------------------------------------ The loop.
        writer = summaries.MetricWriter(workdir, enabled=is_chief)
        step = int(jax.device_get(state.step))
        pending: list[dict[str, jax.Array]] = []
        last_train: dict[str, float] = {}
        last_eval: dict[str, float] = {}
        bar = tqdm(
            total=config.total_steps,
            initial=step,
            unit="step",
            dynamic_ncols=True,
            disable=not is_chief or not config.get("progress_bar", True),
        )
        end = config.total_steps if stop_at is None else min(stop_at, config.total_steps)
        clock, clock_step = time.perf_counter(), step
        while step < end:
            batch = sharding.host_batch_to_global(next(train_iter), mesh)
            state, metrics = train_step(state, batch, train_rng)
            pending.append(metrics)
            step += 1
            bar.update(1)
            final = step == end
            if step % config.log_every == 0 or final:
                last_train = _mean_metrics(pending)  # Waits for the device: time it after.
                now = time.perf_counter()
                last_train["steps_per_sec"] = (step - clock_step) / max(now - clock, 1e-9)
                clock, clock_step = now, step
                pending = []
                writer.write_scalars(step, last_train, "train")
                shown = [k for k in _PROGRESS_KEYS if k in last_train] or list(last_train)[:3]
                bar.set_postfix({k: f"{last_train[k]:.4g}" for k in shown})
            last = step == config.total_steps
            if config.eval_every and (step % config.eval_every == 0 or last):
                if eval_source is not None and predict is not None:
                    last_eval = validate_sr(task, state, predict, eval_source, config, writer, step)
                    writer.write_scalars(step, last_eval, "eval")
                    if best is not None:
                        params = jax.device_get(task.inference_params(state))
                        checkpointing.save_params(best, step, params, last_eval)
                elif eval_source is not None:
                    last_eval = evaluate(
                        state, eval_step, eval_source, eval_operations, config, eval_rng, mesh
                    )
                    writer.write_scalars(step, last_eval, "eval")
                if sample is not None:
                    writer.write_images(step, jax.device_get(sample(state, sample_rng)))
                writer.flush()
            checkpointing.save(manager, step, state, train_rng, train_iter, force=final)
        bar.close()
        if step > 0 and manager.latest_step() != step:
            checkpointing.save(manager, step, state, train_rng, train_iter, force=True)
        manager.wait_until_finished()
        manager.close()
        if best is not None:
            best.wait_until_finished()
            best.close()
        writer.close()

    if is_chief:
        print(
            f"{'Done' if step == config.total_steps else 'Stopped'}: step {step} of "
            f"{config.total_steps} in {workdir}\n"
            f"  metrics:     {writer.jsonl_path}\n"
            f"  samples:     {writer.samples_dir}\n"
            f"  checkpoints: {os.path.join(workdir, 'checkpoints')}\n"
            f"  TensorBoard: tensorboard --logdir {os.path.join(workdir, 'tensorboard')}",
            file=sys.stderr,
        )
    if last_eval and is_chief:
        print(json.dumps({"step": step, **last_eval}), file=sys.stderr)
    return {"step": step, "train": last_train, "eval": last_eval, "state": state}
