"""No output is replaced without ``--overwrite``: outputs are created exclusively (the first
writer wins, a second is refused in one line) and reports are kept like any other output."""

from __future__ import annotations

import os

import pytest
from mistakes import command, one_error_line, one_line, photo, run_all, snapshot

from genres_jax import UserError
from genres_jax.cli import outputs


def test_of_two_writers_racing_for_one_output_exactly_one_wins(tmp_path):
    target = tmp_path / "out.txt"

    def slow_writer(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("second")
        # The other writer publishes first, while this one is still writing.
        outputs.write_text(str(target), "first", overwrite=False)

    with pytest.raises(UserError, match="created by someone else"):
        outputs.write_file(str(target), slow_writer, overwrite=False)
    assert target.read_text() == "first"
    assert sorted(os.listdir(tmp_path)) == ["out.txt"]  # No temporary file left behind.
    outputs.write_text(str(target), "third", overwrite=True)
    assert target.read_text() == "third"


def test_two_upscale_processes_racing_for_one_output_leave_one_winner(tmp_path):
    from PIL import Image

    photo(tmp_path / "in.png", 600, seed=1)
    argv = command("upscale", tmp_path / "in.png", tmp_path / "o.png", "--method", "bicubic")
    results = run_all([[*argv, "--scale", "3"]] * 2)
    assert sorted(code for code, _, _ in results) == [0, 2], results
    code, _, err = next(result for result in results if result[0] == 2)
    line = one_line(err, code)
    assert "exists" in line or "created by someone else" in line, line
    assert sorted(os.listdir(tmp_path)) == ["in.png", "o.png"]  # No temporary file is left.
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (1800, 1800)


def _run_dir(tmp_path, lines: list[str]):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run_dir


def test_report_never_replaces_a_report_without_overwrite(capsys, tmp_path):
    from genres_jax import report

    run_dir = _run_dir(tmp_path, ['{"step": 1, "kind": "eval", "psnr_y": 30.0}'])
    out = tmp_path / "r"
    assert report.main([str(run_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    (out / "report.md").write_text("my notes")
    assert "exists" in one_error_line(capsys, report.main([str(run_dir), "--out", str(out)]))
    assert (out / "report.md").read_text() == "my notes"
    assert report.main([str(run_dir), "--out", str(out), "--overwrite"]) == 0
    assert "psnr_y" in (out / "report.md").read_text()


def test_the_real_commands_keep_existing_outputs(tmp_path):
    photo(tmp_path / "in.png", 24, 20)
    (tmp_path / "o.png").write_bytes(b"mine")
    run_dir = _run_dir(tmp_path, ['{"step": 1, "kind": "eval", "psnr_y": 30.0}'])
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "report.md").write_text("my notes")
    (tmp_path / "e.json").write_text("{}")
    bicubic = ["--method", "bicubic", "--scale", "2"]
    argvs = [
        command("upscale", tmp_path / "in.png", tmp_path / "o.png", *bicubic),
        command("report", run_dir, "--out", tmp_path / "r"),
        command("evaluate", *bicubic, "--output", tmp_path / "e.json"),
    ]
    before = snapshot(tmp_path)
    for argv, (code, _, err) in zip(argvs, run_all(argvs), strict=True):
        assert "exists" in one_line(err, code), argv
    assert snapshot(tmp_path) == before
