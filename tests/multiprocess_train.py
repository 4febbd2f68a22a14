"""One process of a multi-process CPU training run (gloo collectives), for tests.

    python tests/multiprocess_train.py PROCESS_ID NUM_PROCESSES PORT DATA_DIR WORKDIR OUT.npz \
        [STOP_AT] [--emulate-shards N]

With NUM_PROCESSES > 1 the processes form one JAX runtime over localhost:PORT, each reading its
own shard of the data. ``--emulate-shards N`` (single process only) builds each global batch
from N shard loaders exactly as N processes would, for a reference run with the same batches.
Process 0 saves the final state's leaves to OUT.npz.
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from conftest import load_config, tiny

from genres_jax.data import pipeline
from genres_jax.train import trainer


class _ShardedAsOne:
    """The batches N processes would read, concatenated: one loader per shard, in order."""

    def __init__(self, loaders):
        self.iterators = [iter(loader) for loader in loaders]

    def __iter__(self):
        return self

    def __next__(self):
        parts = [next(it) for it in self.iterators]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def get_state(self) -> bytes:
        return json.dumps([it.get_state().decode() for it in self.iterators]).encode()

    def set_state(self, state: bytes) -> None:
        for it, s in zip(self.iterators, json.loads(state), strict=True):
            it.set_state(s.encode())


def _emulate_shards(n: int) -> None:
    original = pipeline.train_loader

    def loader(source, *, batch_size, process_index, process_count, **kwargs):
        del process_index, process_count
        shards = [
            original(source, batch_size=batch_size // n, process_index=i, process_count=n, **kwargs)
            for i in range(n)
        ]
        return _Iterable(_ShardedAsOne(shards))

    pipeline.train_loader = loader


class _Iterable:
    def __init__(self, iterator):
        self.iterator = iterator

    def __iter__(self):
        return self.iterator


def main(argv: list[str]) -> None:
    emulate = 0
    if "--emulate-shards" in argv:
        i = argv.index("--emulate-shards")
        emulate = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    pid, n, port, data_dir, workdir, out, *rest = argv
    pid, n = int(pid), int(n)
    stop_at = int(rest[0]) if rest else None
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if n > 1:
        jax.distributed.initialize(
            coordinator_address=f"localhost:{port}", num_processes=n, process_id=pid
        )
    if emulate:
        _emulate_shards(emulate)
    config = tiny(load_config("dcgan_fashion_mnist"), data_dir, eval_every=4, total_steps=4)
    for name in ("g_optimizer", "d_optimizer"):  # SGD: see tests/test_multidevice.py.
        config[name].name, config[name].learning_rate = "sgd", 0.05
    result = trainer.train_and_evaluate(config, workdir, stop_at=stop_at)
    leaves = jax.tree.leaves(jax.device_get(result["state"]))
    if pid == 0:
        np.savez(out, *leaves, eval=json.dumps(result["eval"]), step=result["step"])


if __name__ == "__main__":
    main(sys.argv[1:])
