"""The training loop shared by every task: config -> data -> jitted steps -> checkpoints/metrics.

Straight-line on purpose; each banner is one stage. The loop runs the same code on 1 device,
N devices and N hosts: every batch is split over the ``(data, model)`` mesh and the state is
replicated, or with ``mesh.model`` > 1 sharded over ``model`` (`genres_jax.train.sharding`). Metrics
reach the host every ``log_every`` steps only. A run resumes from the newest complete checkpoint
in its workdir, skips non-finite steps (`genres_jax.train.nonfinite`) and on SIGTERM or SIGINT stops
after the current step with a checkpoint.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from genres_jax import tasks
from genres_jax.cli import memory, outputs
from genres_jax.data import inputs, pipeline, sources
from genres_jax.evaluation import sample_quality, sr_protocol
from genres_jax.train import (
    checkpointing,
    config_checks,
    nonfinite,
    periodic_eval,
    preemption,
    resume,
    sharding,
    summaries,
    timing,
    workdir_lock,
)
from genres_jax.train.config_checks import ConfigError, validate_config

__all__ = ["ConfigError", "train_and_evaluate", "validate_config"]

# Metrics shown next to the progress bar, when a task reports them.
_PROGRESS_KEYS = ("loss", "d_loss", "g_loss", "elbo")


# Train steps dispatched ahead of the one the host waits for.
_IN_FLIGHT = 2


def _mean_metrics(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
    stacked = jax.device_get(pending)
    return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


def _any_process(flag: bool) -> bool:
    """True on every process if it is True on any (a collective: call it at the same step)."""
    if jax.process_count() == 1:
        return flag
    return bool(np.any(multihost_utils.process_allgather(np.array(flag))))


def _settle() -> None:
    """After work was given up: its loops' iterators (and their reader threads) are closed and
    the device work it queued ends now, not while the interpreter shuts down."""
    gc.collect()
    jax.block_until_ready(jax.live_arrays())


def _fitting_step(train_step, state, counters, batch, rng, config):
    """On a CPU, the compiled train step, refused before it runs if it cannot fit in memory.

    There an allocation beyond the machine's memory is not an error but the kernel's
    out-of-memory kill, with no message. XLA's own account of the compiled step (its
    temporaries and outputs, per device) is checked against the free memory first; the
    compiled step then serves the loop, so it is compiled once as before. Accelerators report
    running out of their memory themselves.
    """
    if jax.default_backend() != "cpu":
        return train_step
    compiled = train_step.lower(state, counters, batch, rng).compile()
    stats = compiled.memory_analysis()
    if stats is not None:
        per_device = stats.temp_size_in_bytes + stats.output_size_in_bytes
        per_device -= stats.alias_size_in_bytes
        memory.check_fits(
            max(per_device, 0) * jax.local_device_count(),
            f"one train step at batch_size={config.batch_size}",
            "lower --config.batch_size",
        )
    return compiled


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    stop_at: int | None = None,
    allow_config_change: bool = False,
) -> dict[str, Any]:
    """Trains ``config`` in ``workdir``, resuming from its latest checkpoint if there is one.

    ``stop_at`` ends this run after that step with a checkpoint, as a preemption would; the
    schedule still follows ``config.total_steps``. ``allow_config_change`` resumes a workdir
    written by a different config. Returns the final step, how the run ended, the last train
    and eval metrics and the state (for scripts and tests).

    The run holds the workdir's writer lock (`genres_jax.train.workdir_lock`) from its first
    write to its end. SIGTERM/SIGINT before the first step, or during an evaluation or sample
    grid, gives that work up at once; in a train step or a save, it ends after it. Either way
    the last completed step is checkpointed and the run ends normally (`preemption`).
    """
    lock = workdir_lock.WorkdirLock(workdir, jax.process_index())
    signals = preemption.PreemptionHandler(abandon=jax.process_count() == 1)
    try:
        with signals:
            return _train(config, workdir, lock, signals, stop_at, allow_config_change)
    except preemption.Abandoned:
        signals.given_up()
        if jax.process_index() == 0:
            print(
                "Stopped by signal before the first step of this run; its newest checkpoint "
                "is unchanged.",
                file=sys.stderr,
            )
        return {"step": None, "ended": "preempted", "skipped_steps": 0, "train": {}, "eval": {}}
    finally:
        lock.release()


def _train(config, workdir, lock, signals, stop_at, allow_config_change) -> dict[str, Any]:
    # Until the first step, a signal gives the start up (nothing is lost but the start itself).
    prelude = contextlib.ExitStack()
    prelude.enter_context(signals.abandonable())
    # ---------------------------------------------------------------- Checks that cost nothing.
    validate_config(config)
    signals.grace_s = float(config.get("preemption_grace_s", 0.0))
    try:
        sources.check_available(config.dataset)
    except sources.DatasetError as e:
        raise ConfigError(str(e)) from None
    is_chief = jax.process_index() == 0
    outputs.check_folder(workdir, flag="--workdir")
    changed = config_checks.check_workdir_config(
        config, workdir, allow_change=allow_config_change, dry_run=True
    )
    if os.path.isdir(workdir):  # A second trainer stops here, before any data or compilation.
        lock.acquire()

    # ------------------------------------------------------------------------------- Data.
    mesh = sharding.make_mesh(config.mesh.model)
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
    one = pipeline.example_batch(train_source, operations, 1)  # After cropping: a patch.
    memory.check_fits(
        3 * config.batch_size * sum(v.nbytes for v in jax.tree.leaves(one)),
        f"batch_size={config.batch_size} (three host copies of a batch)",
        "lower --config.batch_size",
    )
    train_iter = iter(loader)
    example = pipeline.example_batch(train_source, operations, config.batch_size)
    image_key = next(k for k in ("image", "lr", "hr") if k in example)
    image_shape = tuple(example[image_key].shape[1:])
    task = tasks.make(config, image_shape)
    eval_source = eval_operations = None
    if config.eval_every and (task.eval_step is not None or task.predict is not None):
        eval_source, eval_operations = inputs.eval_inputs(config)
    # The config passed every check and the data opened: only now is the workdir written.
    os.makedirs(workdir, exist_ok=True)
    lock.acquire()
    config_checks.check_workdir_config(config, workdir, allow_change=allow_config_change)
    if changed and is_chief:
        config_checks.write_config(config, workdir)

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
        state_sh = sharding.state_shardings(abstract_state, mesh)
        latest = manager.latest_step()
        if latest is None:
            state = jax.jit(task.init, out_shardings=state_sh)(init_rng, example)
            train_rng = sharding.replicate(train_rng, mesh)
            if config.get("init_from"):
                state = periodic_eval.init_from(task, state, config.init_from, state_sh, is_chief)
        else:
            state, train_rng, latest = resume.restore_newest_readable(
                manager, abstract_state, state_sh, train_rng, repl, train_iter, workdir, is_chief
            )
            if is_chief:
                print(f"Resumed from step {latest} in {workdir}", file=sys.stderr)

        # ------------------------------------------------------------------- Jitted steps.
        counters_sh = {"bad_run": repl, "bad_total": repl}
        train_step = jax.jit(
            nonfinite.guard_step(task.train_step),
            in_shardings=(state_sh, counters_sh, batch_sh, repl),
            out_shardings=(state_sh, counters_sh, repl),
            donate_argnums=(0, 1),
        )
        counters = sharding.replicate(nonfinite.new_counters(), mesh)
        # The first batch is read before the step is compiled: a data error is named first.
        first_batch = None
        end = config.total_steps if stop_at is None else min(stop_at, config.total_steps)
        if int(jax.device_get(state.step)) < end:
            first_batch = sharding.host_batch_to_global(next(train_iter), mesh)
            train_step = _fitting_step(train_step, state, counters, first_batch, train_rng, config)
        eval_step = sample = predict = best = None
        if task.eval_step is not None:
            eval_step = jax.jit(
                task.eval_step, in_shardings=(state_sh, batch_sh, repl), out_shardings=repl
            )
        if task.sample_images is not None:
            sample = jax.jit(task.sample_images, in_shardings=(state_sh, repl), out_shardings=repl)
        generative = None
        if (
            eval_step is not None
            and tasks.supports(config.task, "sample_quality")
            and config.get("generative_eval")
        ):
            generative = sample_quality.TrainingEvaluator(config, workdir, image_shape, mesh)
        train_examples = lpips = None
        if task.train_examples is not None:
            train_examples = jax.jit(
                task.train_examples, in_shardings=(state_sh, batch_sh, repl), out_shardings=repl
            )
        if task.predict is not None:
            predict = sharding.split_over_batch(task.predict, state_sh, mesh)
            if config.sr_eval.get("lpips_weights"):
                lpips = sr_protocol.lpips_scorer(config.sr_eval.lpips_weights)
            if is_chief:
                metric = sr_protocol.best_metric(config)
                best = checkpointing.make_best_manager(
                    os.path.join(workdir, "best"),
                    metric,
                    higher_is_better=sr_protocol.BEST_METRICS.get(metric, True),
                )
                checkpointing.drop_steps_after(best, latest or 0)
        eval_rng = jax.random.fold_in(train_rng, 0x7FFFFFFF)
        sample_rng = jax.random.fold_in(train_rng, 0x7FFFFFFE)

        # ------------------------------------------------------------------------ The loop.
        step = int(jax.device_get(state.step))
        writer = summaries.MetricWriter(workdir, enabled=is_chief, resume_step=step)
        pending: list[dict[str, jax.Array]] = []
        last_train: dict[str, float] = {}
        last_eval: dict[str, float] = {}
        ended = "done"
        skipped_total = 0
        bar = tqdm(
            total=config.total_steps,
            initial=step,
            unit="step",
            dynamic_ncols=True,
            disable=not is_chief or not config.get("progress_bar", True),
        )
        timer = timing.LoopTimer(step)

        def evaluation(step: int, batch) -> dict[str, float]:
            """Evaluates ``state`` and draws its grids; nothing reaches metrics.jsonl until all
            is done, so a signal (`preemption.Abandoned`) leaves no half-written evaluation."""
            result: dict[str, float] = {}
            images: dict[str, Any] = {}
            with timer.evaluation(state) as eval_seconds, signals.abandonable():
                if eval_source is not None and predict is not None:
                    result = periodic_eval.validate_sr(
                        task, state, predict, eval_source, config, writer, step, lpips
                    )
                elif eval_source is not None:
                    result = periodic_eval.evaluate(
                        state, eval_step, eval_source, eval_operations, config, eval_rng, mesh
                    )
                    if generative is not None:  # The eval step's own ELBO etc. win.
                        result = {**generative(state), **result}
                if sample is not None:
                    images.update(jax.device_get(sample(state, sample_rng)))
                if train_examples is not None and batch is not None:
                    images.update(jax.device_get(train_examples(state, batch, sample_rng)))
            if eval_source is not None:
                writer.write_scalars(step, {**result, "eval_seconds": eval_seconds[0]}, "eval")
            if eval_source is not None and best is not None:
                params = jax.device_get(task.inference_params(state))
                checkpointing.save_params(best, step, params, result)
            writer.write_images(step, images)
            writer.flush()
            return result

        def evaluation_or_none(step: int, batch) -> dict[str, float] | None:
            """`evaluation`, or None when a signal gave it up."""
            try:
                return evaluation(step, batch)
            except preemption.Abandoned:
                signals.given_up()
            _settle()  # Out of the except block: its traceback no longer holds the work.
            return None

        def evaluates_at(step: int) -> bool:
            return bool(config.eval_every) and (
                step % config.eval_every == 0 or step == config.total_steps
            )

        # A run stopped during the evaluation of its checkpointed step evaluates it now.
        missing = (
            latest is not None
            and eval_source is not None
            and evaluates_at(step)
            and not resume.evaluated(writer.jsonl_path, step)
        )
        prelude.close()
        if _any_process(missing):
            if first_batch is None and train_examples is not None:
                first_batch = sharding.host_batch_to_global(next(train_iter), mesh)
            result = evaluation_or_none(step, first_batch)
            if result is None:
                ended = "preempted"
            else:
                last_eval = result
        if signals.requested is not None:
            ended = "preempted"

        while step < end and ended == "done":
            if first_batch is not None:
                batch, first_batch = first_batch, None
            else:
                batch = sharding.host_batch_to_global(next(train_iter), mesh)
            state, counters, metrics = train_step(state, counters, batch, train_rng)
            pending.append(metrics)
            if len(pending) > _IN_FLIGHT:
                # At most this many steps queued: the progress bar shows steps done, not
                # steps dispatched, and never waits a whole logging window at a log step.
                jax.block_until_ready(pending[-_IN_FLIGHT - 1])
            step += 1
            bar.update(1)
            logging_step = step % config.log_every == 0 or step == end
            if logging_step:
                last_train = _mean_metrics(pending)  # Waits for the device: time it after.
                last_train["steps_per_sec"] = timer.window(step)  # Evaluation left out.
                pending = []
                writer.write_scalars(step, last_train, "train")
                shown = [k for k in _PROGRESS_KEYS if k in last_train] or list(last_train)[:3]
                bar.set_postfix({k: f"{last_train[k]:.4g}" for k in shown})
                bad = jax.device_get(counters)
                skipped_total = int(bad["bad_total"])
                if (
                    config.nonfinite_policy == "stop"
                    and bad["bad_run"] >= config.nonfinite_max_consecutive
                ):
                    ended = "nonfinite"
            if evaluates_at(step):
                result = evaluation_or_none(step, batch)
                if result is None:
                    ended = "preempted"
                else:
                    last_eval = result
            # Multi-host: every process must agree to stop at the same step, so signals
            # are compared across processes at logging steps only.
            signalled = signals.requested is not None
            if (jax.process_count() == 1 or logging_step) and _any_process(signalled):
                ended = "preempted"
            stopping = ended != "done" or step == end
            with resume.saving(manager, step):
                checkpointing.save(manager, step, state, train_rng, train_iter, force=stopping)
        # Still under the handler: a second signal during the last save exits at once.
        bar.close()
        with resume.saving(manager, step):
            if step > 0 and manager.latest_step() != step:
                checkpointing.save(manager, step, state, train_rng, train_iter, force=True)
            manager.wait_until_finished()
        manager.close()
        if best is not None:
            best.wait_until_finished()
            best.close()
        writer.close()

    speed = timer.summary(step)
    if is_chief:
        checkpoint = os.path.join(workdir, "checkpoints", str(step))
        if ended == "preempted":
            print(f"Stopped by signal at step {step}; checkpoint: {checkpoint}", file=sys.stderr)
        elif ended == "nonfinite":
            print(
                f"Stopped at step {step}: {config.nonfinite_max_consecutive} or more steps in a "
                f"row had non-finite values ({skipped_total} skipped in all); the checkpoint "
                f"{checkpoint} holds the last good state.",
                file=sys.stderr,
            )
        else:
            if skipped_total:
                print(f"{skipped_total} steps with non-finite values skipped", file=sys.stderr)
            print(
                f"{'Done' if step == config.total_steps else 'Stopped'}: step {step} of "
                f"{config.total_steps} in {workdir}\n"
                f"  metrics:     {writer.jsonl_path}\n"
                f"  samples:     {writer.samples_dir}\n"
                f"  checkpoints: {os.path.join(workdir, 'checkpoints')}\n"
                f"  TensorBoard: tensorboard --logdir {os.path.join(workdir, 'tensorboard')}",
                file=sys.stderr,
            )
            if speed["steps"]:
                print(f"  speed:       {timing.describe(speed)}", file=sys.stderr)
        if last_eval:
            print(json.dumps({"step": step, **last_eval}), file=sys.stderr)
    return {
        "step": step,
        "ended": ended,
        "skipped_steps": skipped_total,
        "train": last_train,
        "eval": last_eval,
        "timing": speed,
        "state": state,
    }
