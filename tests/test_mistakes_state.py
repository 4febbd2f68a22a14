"""A refused run leaves nothing that traps the user: no workdir is written before the config has
passed every check and the data has opened, so the corrected command runs; non-finite values
are refused in configs and never written as bare ``NaN`` into ``metrics.jsonl``."""

from __future__ import annotations

import json
import os

import pytest
from conftest import REPO
from hypothesis import given, settings
from hypothesis import strategies as st
from mistakes import FUZZ, command, one_line, refused_in_processes, run_all, snapshot

CONFIG = "--config=" + os.path.join(REPO, "configs", "gan_mlp_fashion_mnist.py")


def test_a_refused_run_writes_nothing_and_the_corrected_command_runs(tmp_path, fmnist_data_dir):
    workdir = f"--workdir={tmp_path / 'w'}"
    cases = {
        "unknown dataset": command("train", CONFIG, workdir, "--config.dataset.name=nosuchds"),
        "not a finite number": command(
            "train", CONFIG, workdir, "--config.g_optimizer.learning_rate=inf"
        ),
        "invalid literal": command("train", CONFIG, workdir, "--config.total_steps=abc"),
    }
    refused_in_processes(tmp_path, cases)
    assert not os.path.exists(tmp_path / "w")
    tiny = ["--config.total_steps=1", "--config.batch_size=8", "--config.progress_bar=False"]
    tiny += ["--config.eval_every=0", f"--config.dataset.data_dir={fmnist_data_dir}"]
    ((code, _, err),) = run_all([command("train", CONFIG, workdir, *tiny)])
    assert code == 0, err
    assert os.path.isfile(tmp_path / "w" / "config.json")


def test_metrics_stay_json_when_a_value_is_not_finite(tmp_path):
    from genres_jax.train import summaries

    writer = summaries.MetricWriter(str(tmp_path))
    writer.write_scalars(1, {"loss": float("nan"), "g": float("inf"), "ok": 1.5})
    with open(tmp_path / "metrics.jsonl") as f:
        record = json.loads(f.read(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert record == {"step": 1, "kind": "train", "loss": None, "g": None, "ok": 1.5}


# Overrides no value of which can run: whole-number keys, then real-number keys.
TRAIN_INT_KEYS = ["batch_size", "total_steps", "log_every", "checkpoint_every", "keep_checkpoints"]
TRAIN_INT_KEYS += ["eval_batch_size"]
TRAIN_BAD_INTS = ["0", "-1", "abc", "1.5", "nan", "inf", ""]
TRAIN_FLOAT_KEYS = ["g_optimizer.learning_rate", "d_optimizer.learning_rate", "gan.ema_decay"]
TRAIN_BAD_FLOATS = ["nan", "inf", "-inf", "1e400", "abc", ""]


@settings(FUZZ, max_examples=int(os.environ.get("GENRES_TRAIN_MISTAKE_EXAMPLES", "6")))
@given(
    override=st.one_of(
        st.tuples(st.sampled_from(TRAIN_INT_KEYS), st.sampled_from(TRAIN_BAD_INTS)),
        st.tuples(st.sampled_from(TRAIN_FLOAT_KEYS), st.sampled_from(TRAIN_BAD_FLOATS)),
    ),
    workdir=st.sampled_from(["new", "a_file", "under_a_file", "empty"]),
)
def test_train_py_fuzzed_overrides_and_workdirs_end_in_one_line(
    tmp_path_factory, override, workdir
):
    folder = tmp_path_factory.mktemp("train_mistake")
    (folder / "a_file").write_text("mine")
    path = {"new": folder / "w", "a_file": folder / "a_file", "empty": ""}.get(
        workdir, folder / "a_file" / "w"
    )
    key, value = override
    before = snapshot(folder)
    ((code, _, err),) = run_all(
        [command("train", CONFIG, f"--workdir={path}", f"--config.{key}={value}")]
    )
    line = one_line(err, code)
    assert snapshot(folder) == before, line
    assert sorted(os.listdir(folder)) == ["a_file"], line
