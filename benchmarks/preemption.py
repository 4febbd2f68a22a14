"""Seconds from SIGTERM to exit, by phase, for the shipped configs on this machine.

    python benchmarks/preemption.py [--configs edsr_x2 dcgan_fashion_mnist ...]
        [--phases start step evaluation save] [--set KEY=VALUE ...] [--workroot DIR] [--json FILE]

Each config runs through ``python train.py`` with its own batch sizes, model and evaluation
settings (only step counts and intervals are overridden) in a fresh workdir, and gets one
SIGTERM in one phase:

- ``start``: as soon as the run has written its config.json (it is then restoring, reading its
  first batch and compiling its train step);
- ``step``: just after the first train step was logged (``log_every=1``): in a train step;
- ``evaluation``: 0.5 s into the evaluation of step 2 (``eval_every=2``) - the GAN/VAE FID,
  KID, precision/recall (and likelihood bounds), the classifier's test pass or the whole-image
  SR validation, and the sample grids;
- ``save``: while an asynchronous checkpoint save is being written (``checkpoint_every=1``).

Printed per run: exit code, seconds from the signal to the exit, the newest checkpoint against
the last completed step, and whether an evaluation was given up (no record of it was written).
The default data folders are used (prepared on first use); ``dcgan_64`` (CelebA, downloaded
on first use) is left out unless named.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import harness  # noqa: F401  (puts the repository on the path)

from genres_jax.train import summaries

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("start", "step", "evaluation", "save")
# Shipped configs whose data is downloaded on first use (CelebA): left out of the default list.
NEEDS_DOWNLOAD = ("dcgan_64",)
SETTINGS = {
    "start": ["--config.log_every=1", "--config.eval_every=0"],
    "step": ["--config.log_every=1", "--config.eval_every=0"],
    "evaluation": ["--config.log_every=2", "--config.eval_every=2"],
    "save": ["--config.log_every=1", "--config.eval_every=0", "--config.checkpoint_every=1"],
}


def _records(workdir: str) -> list[dict]:
    return summaries.read_records(os.path.join(workdir, "metrics.jsonl"))


def _steps(workdir: str) -> list[int]:
    folder = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(folder):
        return []
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def _ready(phase: str, workdir: str) -> bool:
    if phase == "start":
        return os.path.isfile(os.path.join(workdir, "config.json"))
    if phase == "step":
        return any(r["kind"] == "train" for r in _records(workdir))
    if phase == "evaluation":
        return any(r["kind"] == "train" and r["step"] == 2 for r in _records(workdir))
    return bool(glob.glob(os.path.join(workdir, "checkpoints", "*orbax-checkpoint-tmp*")))


def run_one(config: str, phase: str, workdir: str, timeout: float = 1800.0, overrides=()) -> dict:
    cmd = [
        sys.executable,
        os.path.join(REPO, "train.py"),
        f"--config={os.path.join(REPO, 'configs', config + '.py')}",
        f"--workdir={workdir}",
        "--config.total_steps=1000000",
        "--config.progress_bar=false",
        *SETTINGS[phase],
        *(f"--config.{o}" for o in overrides),
    ]
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + timeout
    while not _ready(phase, workdir):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            err = proc.communicate()[1]
            return {"config": config, "phase": phase, "error": err.strip()[-300:]}
        time.sleep(0.02)
    if phase == "evaluation":
        time.sleep(0.5)
    sent = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=timeout)[1]
    seconds = time.perf_counter() - sent
    records = _records(workdir)
    trained = [r["step"] for r in records if r["kind"] == "train"]
    steps = _steps(workdir)
    row = {
        "config": config,
        "phase": phase,
        "exit_code": proc.returncode,
        "seconds": round(seconds, 2),
        "checkpoint": steps[-1] if steps else None,
        "last_logged_step": trained[-1] if trained else None,
        "last_line": err.strip().splitlines()[-1] if err.strip() else "",
        "stderr_tail": err.strip().splitlines()[-40:] if proc.returncode else [],
    }
    if phase == "evaluation":
        row["evaluation_given_up"] = not any(
            r["kind"] == "eval" and r["step"] == 2 for r in records
        )
    return row


def main() -> int:
    configs = sorted(
        os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
    )
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    offline = [c for c in configs if c not in NEEDS_DOWNLOAD]
    parser.add_argument("--configs", nargs="+", default=offline, choices=configs)
    parser.add_argument("--phases", nargs="+", default=list(PHASES), choices=PHASES)
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every run, e.g. loss.perceptual_weight=0 (no VGG weights)",
    )
    parser.add_argument("--workroot", help="where the workdirs go (default: a temporary folder)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    root = args.workroot or tempfile.mkdtemp(prefix="preemption_")
    rows = []
    print("| config | phase | exit | seconds | checkpoint / last step | evaluation given up |")
    print("|---|---|---|---|---|---|")
    for config in args.configs:
        for phase in args.phases:
            workdir = os.path.join(root, f"{config}-{phase}")
            row = run_one(config, phase, workdir, overrides=args.set)
            rows.append(row)
            if "error" in row:
                print(f"| {config} | {phase} | - | - | did not reach the phase: {row['error']} | |")
            else:
                given_up = {True: "yes", False: "no (it ended first)"}.get(
                    row.get("evaluation_given_up"), ""
                )
                print(
                    f"| {config} | {phase} | {row['exit_code']} | {row['seconds']:.1f} | "
                    f"{row['checkpoint']} / {row['last_logged_step']} | {given_up} |",
                    flush=True,
                )
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
