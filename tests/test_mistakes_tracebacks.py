"""Mistakes that once ended in a traceback (or a native abort) end in one ``error:`` line.

Huge images and outputs, paths that cannot be inputs or outputs, output locations checked
before the work, bad numbers, workdirs train.py cannot use, and Ctrl-C (exit 130). Each case
runs a command's ``main`` in this process; the last tests run the same cases through the real
commands in their own processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO
from hypothesis import given
from hypothesis import strategies as st
from mistakes import (
    EDSR_X2,
    FUZZ,
    command,
    one_error_line,
    one_line,
    photo,
    png_claiming,
    read_only_folder,
    refused_in_processes,
    release,
    snapshot,
)

from genres_jax import UserError, upscale


@pytest.fixture
def folder(tmp_path):
    photo(tmp_path / "in.png", 24, 20)
    return tmp_path


def _refused(capsys, folder, argv) -> str:
    before = snapshot(folder)
    line = one_error_line(capsys, upscale.main([str(a) for a in argv]))
    assert snapshot(folder) == before
    return line


def test_a_header_claiming_10_gigapixels_is_refused_before_decoding(capsys, folder):
    png_claiming(folder / "bomb.png", 100_000, 100_000)
    line = _refused(
        capsys, folder, [folder / "bomb.png", folder / "o.png", "--method", "bicubic", "--scale", 2]
    )
    assert "bomb.png" in line and "decompression bomb" in line


def test_a_png_whose_data_ends_early_is_refused_as_truncated(capsys, folder):
    png_claiming(folder / "short.png", 300, 200, rows=1)
    args = [folder / "short.png", folder / "o.png", "--method", "bicubic", "--scale", 2]
    assert "truncated PNG" in _refused(capsys, folder, args)
    # A complete PNG of the same kind passes, so the check measures the data, not the header.
    png_claiming(folder / "full.png", 30, 20, rows=20)
    assert upscale.main([str(folder / "full.png"), str(folder / "o.png"), *map(str, args[2:])]) == 0


@pytest.mark.parametrize(
    "extra",
    [["--method", "bicubic", "--scale", "1e9"], ["--workdir", EDSR_X2, "--outscale", "1e5"]],
    ids=["classical", "model-outscale"],
)
def test_outputs_larger_than_memory_are_refused_before_running(capsys, folder, extra):
    line = _refused(capsys, folder, [folder / "in.png", folder / "o.png", *extra])
    assert "of memory" in line and "are free" in line


def test_paths_that_cannot_be_outputs_or_inputs(capsys, folder):
    bicubic = ["--method", "bicubic", "--scale", "2"]
    cases = {
        "is a folder": [folder / "in.png", folder, *bicubic],
        "does not exist": [folder / "in.png", folder / "missing" / "o.png", *bicubic],
        "also an input": [folder / "in.png", folder / "in.png", *bicubic, "--overwrite"],
        "is a folder, not an image": [folder, folder / "o.png", *bicubic],
        "no such file": [folder / "nope.png", folder / "o.png", *bicubic],
    }
    for expected, argv in cases.items():
        assert expected in _refused(capsys, folder, argv), expected


def test_an_output_in_a_read_only_folder_is_refused_before_work(capsys, folder):
    target = read_only_folder(folder)
    if target is None:
        pytest.skip("running as root where mount is not permitted: no folder is read-only")
    try:
        argv = [folder / "in.png", target / "o.png", "--method", "bicubic", "--scale", "2"]
        assert "cannot write in" in _refused(capsys, folder, argv)
    finally:
        release(target)


@FUZZ
@given(
    flag=st.sampled_from(["--scale", "--tile", "--tile-overlap", "--batch-size"]),
    value=st.sampled_from(["0", "-1", "-3", "nan", "inf", "-inf", "abc", "1e400", "", "2.5x"]),
)
def test_bad_numeric_flags_end_in_one_line_naming_the_flag(capsys, folder, flag, value):
    if flag == "--tile-overlap" and value in ("0", "-1"):
        return  # Valid: no overlap, or the model's receptive radius.
    if flag == "--tile" and value == "0":
        return  # Valid: the whole image at once.
    argv = [folder / "in.png", folder / "o.png", "--method", "bicubic", "--scale", "2"]
    line = _refused(capsys, folder, [*argv, flag, value])
    assert flag in line


def test_every_output_location_is_checked_before_the_work(capsys, tmp_path):
    from genres_jax import evaluate, features, report, sample

    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "kind": "eval", "psnr_y": 30.0}\n')
    missing = str(tmp_path / "missing" / "x")
    bicubic = ["--method", "bicubic", "--scale", "2"]
    cases = [
        (sample.main, ["--workdir", EDSR_X2, "--out", missing + ".png"], "does not exist"),
        (sample.main, ["--workdir", EDSR_X2, "--out", "s.png", "--out-dir", a_file], "is a file"),
        (evaluate.main, [*bicubic, "--output", missing], "not exist"),
        (evaluate.main, [*bicubic, "--output", tmp_path], "folder"),
        (report.main, [run_dir, "--out", a_file], "is a file"),
        (report.main, [run_dir, "--out", tmp_path / "r", "--keys", "nosuchkey"], "no run"),
        (features.main, ["convert-inception", a_file, tmp_path / "x.npz"], "not a readable"),
        (evaluate.main, ["--method", "bicubic", "--scale", "nan"], "an integer is needed"),
        (sample.main, ["--workdir", EDSR_X2, "--out", "s.png", "--num", "-4"], "--num"),
    ]
    before = snapshot(tmp_path)
    for main, argv, expected in cases:
        assert expected in one_error_line(capsys, main([str(a) for a in argv])), argv
        assert snapshot(tmp_path) == before, argv


@pytest.mark.parametrize("scale", ["1000", "9" * 30])
def test_a_scale_larger_than_the_photos_names_the_photo(capsys, sr_data_dir, scale):
    from genres_jax import evaluate

    # The dataset's photos at x1000 are smaller than one LR pixel (a crash in the resizer before).
    argv = ["--method", "bicubic", "--scale", scale, "--data-dir", sr_data_dir]
    argv += ["--dataset", "sr_photos_local"]
    line = one_error_line(capsys, evaluate.main(argv + ["--max-images", "1"]))
    assert line.endswith(f"smaller than one LR pixel at x{int(scale)}"), line


def test_a_train_step_larger_than_memory_is_refused_before_it_runs(
    tmp_path, monkeypatch, fmnist_data_dir
):
    from conftest import load_config, tiny

    from genres_jax.cli import memory
    from genres_jax.train import trainer

    config = tiny(load_config("gan_mlp_fashion_mnist"), fmnist_data_dir)
    batch_bytes = config.batch_size * 28 * 28  # uint8 images
    # Room for the host copies of a batch, but not for the step's gradients and activations
    # (on a CPU a step that does not fit is an out-of-memory kill, with no message).
    monkeypatch.setattr(memory, "available_bytes", lambda: 4 * batch_bytes)
    with pytest.raises(UserError, match="one train step at batch_size=16 needs about") as e:
        trainer.train_and_evaluate(config, str(tmp_path / "w"))
    assert "lower --config.batch_size" in str(e.value)
    assert not os.listdir(tmp_path / "w" / "checkpoints")  # Refused before any step ran.


def test_ctrl_c_ends_in_one_line_with_exit_130_and_no_output(capsys, folder, monkeypatch):
    from genres_jax.inference import upscalers

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(upscalers.Upscaler, "upscale_pixels", interrupted)
    argv = [folder / "in.png", folder / "o.png", "--method", "bicubic", "--scale", "2"]
    before = snapshot(folder)
    line = one_error_line(capsys, upscale.main([str(a) for a in argv]), expected=130)
    assert "interrupted" in line
    assert snapshot(folder) == before


# ----------------------------------------------------- The same, through the real commands.


def test_the_real_commands_refuse_huge_images_outputs_and_bad_locations(tmp_path):
    photo(tmp_path / "in.png", 24, 20)
    png_claiming(tmp_path / "bomb.png", 100_000, 100_000)
    png_claiming(tmp_path / "short.png", 12_000, 12_000, rows=1)
    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"step": 1, "kind": "eval", "psnr": 1}\n')
    source, out, missing = tmp_path / "in.png", tmp_path / "o.png", tmp_path / "missing" / "o"
    bicubic = ["--method", "bicubic", "--scale", "2"]
    cases = {
        "decompression bomb": command("upscale", tmp_path / "bomb.png", out, *bicubic),
        "truncated PNG": command("upscale", tmp_path / "short.png", out, *bicubic),
        "of memory": command("upscale", source, out, "--method", "bicubic", "--scale", "1e9"),
        "are free": command("upscale", source, out, "--workdir", EDSR_X2, "--outscale", "1e5"),
        "is a folder, not an image": command("upscale", tmp_path, out, *bicubic),
        "does not exist": command("sample", "--workdir", EDSR_X2, "--out", f"{missing}.png"),
        "is a file": command(
            "sample", "--workdir", EDSR_X2, "--out", out, "--out-dir", tmp_path / "a_file"
        ),
        "not exist": command("evaluate", *bicubic, "--output", missing),
        "folder": command("evaluate", *bicubic, "--output", tmp_path),
        "a file": command("report", tmp_path / "run", "--out", tmp_path / "a_file"),
        "not a readable": command("features", "convert-inception", tmp_path / "a_file", out),
        "--scale": command("import_weights", "rrdbnet", tmp_path / "a_file", out, "--scale", "0"),
    }
    refused_in_processes(tmp_path, cases)


def test_train_refuses_bad_workdirs_and_values_without_writing(tmp_path):
    config = "--config=" + os.path.join(REPO, "configs", "gan_mlp_fashion_mnist.py")
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    new = f"--workdir={tmp_path / 'w'}"
    cases = {
        "is a file, not a folder": command("train", config, f"--workdir={a_file}"),
        "not a finite number": command(
            "train", config, new, "--config.d_optimizer.learning_rate=inf"
        ),
        "of memory": command("train", config, new, "--config.batch_size=100000000"),
        "a_file is a file": command("train", config, f"--workdir={a_file / 'w'}"),
    }
    target = read_only_folder(tmp_path)
    if target is not None:  # Else a root that cannot mount: the cases that need one are left out.
        cases["cannot write in"] = command("train", config, f"--workdir={target / 'w'}")
    try:
        refused_in_processes(tmp_path, cases)
    finally:
        if target is not None:
            release(target)
    assert a_file.read_text() == "mine"


def test_ctrl_c_in_a_real_process_ends_in_one_line_and_leaves_no_output(tmp_path):
    photo(tmp_path / "in.png", 1000, seed=1)
    # The command module is imported first and says so: the signal then lands in the work.
    program = (
        "import sys; from genres_jax import upscale; print('ready', flush=True); "
        "sys.exit(upscale.main(sys.argv[1:]))"
    )
    argv = [sys.executable, "-c", program, str(tmp_path / "in.png"), str(tmp_path / "o.png")]
    # An 8000x8000 result: seconds of work, so even a test process the machine leaves waiting
    # for a while still signals while it runs.
    argv += ["--method", "lanczos3", "--scale", "8"]
    process = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=300)
    line = one_line(process.stderr.read(), code, expected=130)
    assert "interrupted" in line
    assert sorted(os.listdir(tmp_path)) == ["in.png"]
