"""``python -m genres_jax.report``: the table and the curves follow the metrics.jsonl files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from genres_jax import report


def _write_run(path, records, config=None, broken_tail=False):
    path.mkdir()
    with open(path / "metrics.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        if broken_tail:
            f.write('{"step": 999, "kind": "eval", "fid/x"')  # A crash mid-line.
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))


@pytest.fixture
def two_runs(tmp_path):
    rng = np.random.default_rng(0)
    fid_a = [80.0, 30.0, 45.0]
    loss_a = rng.uniform(0.1, 1.0, 6).tolist()
    records_a = [{"step": 10 * (i + 1), "kind": "train", "d_loss": v} for i, v in enumerate(loss_a)]
    records_a += [
        {"step": 20 * (i + 1), "kind": "eval", "fid/clf": v, "recall/clf": 0.1 * (i + 1)}
        for i, v in enumerate(fid_a)
    ]
    _write_run(
        tmp_path / "gan_a",
        records_a,
        {"task": "gan", "model": {"name": "mlp"}, "dataset": {"image_size": 14}},
        broken_tail=True,
    )
    records_b = [{"step": 50, "kind": "eval", "fid/clf": 12.5, "psnr_y": 31.0}]
    _write_run(tmp_path / "run_b", records_b, {"task": "sr", "model": {"name": "edsr_m"}})
    return tmp_path, fid_a, loss_a


def test_table_has_last_and_best_values_per_run(two_runs):
    root, fid_a, _ = two_runs
    result = report.build_report([str(root / "gan_a"), str(root / "run_b")])
    lines = result["table"].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {line.split("|")[1].strip(): line for line in lines[2:]}
    cells = {name: [c.strip() for c in row.strip("|").split("|")] for name, row in rows.items()}
    col = {name: i for i, name in enumerate(header)}
    a, b = cells["gan_a"], cells["run_b"]
    assert a[col["model"]] == "gan mlp 14x14" and b[col["model"]] == "sr edsr_m"
    # The broken last line (step 999) is skipped; the last complete eval is at step 60.
    assert a[col["step"]] == "60"
    assert float(a[col["fid/clf (last)"]]) == fid_a[-1]
    assert float(a[col["fid/clf (best↓)"]]) == min(fid_a)  # Lower FID is better.
    assert float(a[col["recall/clf (best↑)"]]) == pytest.approx(0.3)  # Higher recall is better.
    assert float(b[col["fid/clf (last)"]]) == 12.5 and a[col["psnr_y (last)"]] == ""
    assert float(b[col["psnr_y (best↑)"]]) == 31.0


def test_curves_are_written_per_metric_with_the_runs_data(two_runs):
    root, fid_a, loss_a = two_runs
    result = report.build_report([str(root / "gan_a"), str(root / "run_b")])
    steps, values = result["runs"]["gan_a"]["train"]["d_loss"]
    assert steps == [10, 20, 30, 40, 50, 60] and values == loss_a
    assert result["runs"]["gan_a"]["eval"]["fid/clf"] == ([20, 40, 60], fid_a)
    out = root / "out"
    assert report.main([str(root / "gan_a"), str(root / "run_b"), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [
        "eval_fid_clf.png",
        "eval_psnr_y.png",
        "eval_recall_clf.png",
        "train_d_loss.png",
    ]
    with Image.open(out / "eval_fid_clf.png") as im:
        assert im.size == (600, 400)
    text = (out / "report.md").read_text()
    assert "| gan_a |" in text and "![eval_fid_clf.png](eval_fid_clf.png)" in text


def test_missing_metrics_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err


def test_same_names_in_different_folders_stay_apart(tmp_path):
    for parent in ("x", "y"):
        (tmp_path / parent).mkdir()
        _write_run(tmp_path / parent / "run", [{"step": 1, "kind": "eval", "fid/c": 1.0}])
    result = report.build_report([str(tmp_path / "x" / "run"), str(tmp_path / "y" / "run")])
    assert len(result["runs"]) == 2


def test_a_curve_file_already_there_is_kept_without_overwrite(two_runs, capsys):
    tmp_path, _, _ = two_runs
    out = tmp_path / "report"
    out.mkdir()
    mine = out / "eval_fid_clf.png"
    mine.write_bytes(b"my figure")
    runs = [str(tmp_path / "gan_a"), str(tmp_path / "run_b")]
    assert report.main([*runs, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "skipped 1 line" in err[0]  # gan_a's cut last line, read before the refusal.
    assert len(err) == 2 and err[1].startswith("error:") and "eval_fid_clf.png" in err[1]
    assert sorted(os.listdir(out)) == ["eval_fid_clf.png"]  # Nothing else drawn or written.
    assert mine.read_bytes() == b"my figure"
    assert report.main([*runs, "--out", str(out), "--overwrite"]) == 0
    assert Image.open(mine).format == "PNG"
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
