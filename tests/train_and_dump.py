"""Trains a tiny config in a fresh process and saves the final state's leaves to an .npz.

Used by tests that need a process with its own device setup (XLA_FLAGS must be set before JAX
starts): ``python tests/train_and_dump.py CONFIG DATA_DIR WORKDIR OUT.npz [key=value ...]``;
``stop_at=N`` ends the run after step N.
"""

from __future__ import annotations

import ast
import sys

import jax
import numpy as np
from conftest import load_config, tiny

from genres_jax.train import trainer


def main(argv: list[str]) -> None:
    name, data_dir, workdir, out, *pairs = argv
    overrides = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    stop_at = overrides.pop("stop_at", None)
    config = tiny(load_config(name), data_dir, **overrides)
    result = trainer.train_and_evaluate(config, workdir, stop_at=stop_at)
    leaves = jax.tree.leaves(jax.device_get(result["state"]))
    np.savez(out, *leaves, devices=jax.device_count())


if __name__ == "__main__":
    main(sys.argv[1:])
