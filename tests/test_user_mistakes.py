"""User mistakes end in one ``error:`` line (exit 2) and leave the file system as it was.

Each case runs a real command's ``main`` and checks: the exit code, exactly one stderr line that
starts with ``error:``, no traceback, and no file created or changed. Numeric flags are fuzzed
with hypothesis (0, negative, NaN, infinities, huge values, junk).
"""

from __future__ import annotations

import os
import struct
import subprocess
import zlib

import numpy as np
import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from genres_jax import UserError, upscale
from genres_jax.cli import outputs

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _snapshot(folder) -> dict[str, bytes]:
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def _one_error_line(capsys, code: int, expected: int = 2) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    assert "Traceback" not in err
    return lines[0]


def _png_claiming(path, width: int, height: int, rows: int = 1) -> None:
    """A valid PNG stream whose header claims width x height but whose data holds ``rows``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress((b"\x00" + b"\x07" * (3 * width)) * rows)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data))
        f.write(chunk(b"IEND", b""))


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    return tmp_path


def _refused(capsys, folder, argv) -> str:
    before = _snapshot(folder)
    line = _one_error_line(capsys, upscale.main([str(a) for a in argv]))
    assert _snapshot(folder) == before
    return line


def test_a_header_claiming_10_gigapixels_is_refused_before_decoding(capsys, folder):
    _png_claiming(folder / "bomb.png", 100_000, 100_000)
    line = _refused(
        capsys, folder, [folder / "bomb.png", folder / "o.png", "--method", "bicubic", "--scale", 2]
    )
    assert "bomb.png" in line and "decompression bomb" in line


def test_a_png_whose_data_ends_early_is_refused_as_truncated(capsys, folder):
    _png_claiming(folder / "short.png", 300, 200, rows=1)
    args = [folder / "short.png", folder / "o.png", "--method", "bicubic", "--scale", 2]
    assert "truncated PNG" in _refused(capsys, folder, args)
    # A complete PNG of the same kind passes, so the check measures the data, not the header.
    _png_claiming(folder / "full.png", 30, 20, rows=20)
    assert upscale.main([str(folder / "full.png"), str(folder / "o.png"), *map(str, args[2:])]) == 0


@pytest.mark.parametrize(
    "extra",
    [
        ["--method", "bicubic", "--scale", "1e9"],
        ["--workdir", "weights/edsr_x2", "--outscale", "1e5"],
    ],
    ids=["classical", "model-outscale"],
)
def test_outputs_larger_than_memory_are_refused_before_running(capsys, folder, extra):
    extra = [os.path.join(REPO, e) if e.startswith("weights/") else e for e in extra]
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


def _read_only_folder(tmp_path):
    """A folder no one can write in, also as root (a read-only mount), or None if impossible."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        return target
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(target)], capture_output=True
    )
    return target if done.returncode == 0 else None


def test_an_output_in_a_read_only_folder_is_refused_before_work(capsys, folder):
    target = _read_only_folder(folder)
    if target is None:
        pytest.skip("running as root where mount is not permitted: no folder is read-only")
    try:
        argv = [folder / "in.png", target / "o.png", "--method", "bicubic", "--scale", "2"]
        assert "cannot write in" in _refused(capsys, folder, argv)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(target)], check=True)


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


def test_exif_orientation_is_applied_on_reading(capsys, folder):
    yy, xx = np.mgrid[0:40, 0:24]
    upright = np.stack([yy * 6, xx * 10, np.zeros_like(xx)], -1).astype(np.uint8)  # 40 x 24
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise to be shown upright,
    # so store the upright image turned 90 degrees counter-clockwise.
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(folder / "phone.jpg", quality=98, exif=exif)
    assert np.asarray(ImageOps.exif_transpose(Image.open(folder / "phone.jpg"))).shape[:2] == (
        40,
        24,
    )
    code = upscale.main(
        [str(folder / "phone.jpg"), str(folder / "o.png"), "--method", "nearest", "--scale", "1"]
    )
    assert code == 0, capsys.readouterr().err
    out = np.asarray(Image.open(folder / "o.png")).astype(float)
    assert out.shape == upright.shape
    assert np.abs(out - upright).mean() < 3.0  # JPEG at quality 98.


def test_a_16_bit_input_written_as_jpeg_says_8_bit(capsys, folder):
    import png

    data = (np.arange(16 * 16 * 3).reshape(16, 16 * 3) * 50).astype(np.uint16)
    with open(folder / "deep.png", "wb") as f:
        png.Writer(16, 16, bitdepth=16, greyscale=False).write(f, data)
    args = [str(folder / "deep.png"), str(folder / "o.jpg"), "--method", "bicubic", "--scale", "2"]
    assert upscale.main(args) == 0
    err = capsys.readouterr().err
    assert "8-bit from a 16-bit input" in err
    assert Image.open(folder / "o.jpg").mode == "RGB"


def test_ctrl_c_ends_in_one_line_with_exit_130_and_no_output(capsys, folder, monkeypatch):
    from genres_jax.inference import upscalers

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(upscalers.Upscaler, "upscale_pixels", interrupted)
    argv = [folder / "in.png", folder / "o.png", "--method", "bicubic", "--scale", "2"]
    before = _snapshot(folder)
    line = _one_error_line(capsys, upscale.main([str(a) for a in argv]), expected=130)
    assert "interrupted" in line
    assert _snapshot(folder) == before


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


def _photo(path, size: int) -> None:
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)


def test_two_upscale_processes_racing_for_one_output_leave_one_winner(tmp_path):
    _photo(tmp_path / "in.png", 600)
    argv = [
        "python3",
        "-m",
        "genres_jax.upscale",
        str(tmp_path / "in.png"),
        str(tmp_path / "o.png"),
    ]
    argv += ["--method", "bicubic", "--scale", "3"]
    racers = [subprocess.Popen(argv, cwd=REPO, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in racers]
    assert sorted(code for code, _ in results) == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    lines = [line for line in loser.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), loser
    assert "exists" in lines[0] or "created by someone else" in lines[0], loser
    assert sorted(os.listdir(tmp_path)) == ["in.png", "o.png"]  # No temporary file is left.
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (1800, 1800)


def test_ctrl_c_in_a_real_process_ends_in_one_line_and_leaves_no_output(tmp_path):
    import signal
    import sys
    import time

    _photo(tmp_path / "in.png", 1000)
    # The command module is imported first and says so: the signal then lands in the work.
    program = (
        "import sys; from genres_jax import upscale; print('ready', flush=True); "
        "sys.exit(upscale.main(sys.argv[1:]))"
    )
    argv = [sys.executable, "-c", program, str(tmp_path / "in.png"), str(tmp_path / "o.png")]
    argv += ["--method", "lanczos3", "--scale", "4"]
    process = subprocess.Popen(
        argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    code = process.wait(timeout=300)
    err = process.stderr.read()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 130, err
    assert len(lines) == 1 and lines[0].startswith("error:") and "interrupted" in lines[0], err
    assert sorted(os.listdir(tmp_path)) == ["in.png"]


def _train(*args: str) -> subprocess.CompletedProcess:
    config = os.path.join(REPO, "configs", "gan_mlp_fashion_mnist.py")
    return subprocess.run(
        ["python3", os.path.join(REPO, "train.py"), f"--config={config}", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _train_refused(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    return lines[0]


def test_train_refuses_bad_workdirs_and_values_without_writing(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    cases = {
        "is a file, not a folder": ["--workdir", str(a_file)],
        "not a finite number": [
            "--workdir",
            str(tmp_path / "w"),
            "--config.g_optimizer.learning_rate=inf",
        ],
        "of memory": ["--workdir", str(tmp_path / "w"), "--config.batch_size=100000000"],
        "invalid literal": ["--workdir", str(tmp_path / "w"), "--config.total_steps=abc"],
        "unknown dataset": ["--workdir", str(tmp_path / "w"), "--config.dataset.name=nosuchds"],
    }
    for expected, args in cases.items():
        assert expected in _train_refused(_train(*args)), expected
        assert sorted(os.listdir(tmp_path)) == ["a_file"], expected  # No workdir was made.
    assert a_file.read_text() == "mine"
    no_get_config = tmp_path / "cfg.py"
    no_get_config.write_text("x = 1\n")
    done = subprocess.run(
        ["python3", os.path.join(REPO, "train.py"), f"--config={no_get_config}", "--workdir=w"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert "has no get_config() function" in _train_refused(done)


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
    before = _snapshot(folder)
    line = _train_refused(_train(f"--workdir={path}", f"--config.{key}={value}"))
    assert _snapshot(folder) == before, line
    assert sorted(os.listdir(folder)) == ["a_file"], line


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


def test_metrics_stay_json_when_a_value_is_not_finite(tmp_path):
    import json

    from genres_jax.train import summaries

    writer = summaries.MetricWriter(str(tmp_path))
    writer.write_scalars(1, {"loss": float("nan"), "g": float("inf"), "ok": 1.5})
    with open(tmp_path / "metrics.jsonl") as f:
        record = json.loads(f.read(), parse_constant=lambda c: pytest.fail(f"bare {c}"))
    assert record == {"step": 1, "kind": "train", "loss": None, "g": None, "ok": 1.5}


def test_every_output_location_is_checked_before_the_work(capsys, tmp_path):
    from genres_jax import evaluate, features, report, sample

    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1, "kind": "eval", "psnr_y": 30.0}\n')
    edsr = os.path.join(REPO, "weights", "edsr_x2")
    missing = str(tmp_path / "missing" / "x")
    cases = [
        (sample.main, ["--workdir", edsr, "--out", missing + ".png"], "does not exist"),
        (sample.main, ["--workdir", edsr, "--out", "s.png", "--out-dir", str(a_file)], "is a file"),
        (evaluate.main, ["--method", "bicubic", "--scale", "2", "--output", missing], "not exist"),
        (
            evaluate.main,
            ["--method", "bicubic", "--scale", "2", "--output", str(tmp_path)],
            "folder",
        ),
        (report.main, [str(run_dir), "--out", str(a_file)], "is a file"),
        (
            report.main,
            [str(run_dir), "--out", str(tmp_path / "r"), "--keys", "nosuchkey"],
            "no run",
        ),
        (
            features.main,
            ["convert-inception", str(a_file), str(tmp_path / "x.npz")],
            "not a readable",
        ),
        (evaluate.main, ["--method", "bicubic", "--scale", "nan"], "an integer is needed"),
        (sample.main, ["--workdir", edsr, "--out", "s.png", "--num", "-4"], "--num"),
    ]
    before = _snapshot(tmp_path)
    for command, argv, expected in cases:
        assert expected in _one_error_line(capsys, command(argv)), argv
        assert _snapshot(tmp_path) == before, argv


def test_report_never_replaces_a_report_without_overwrite_and_warns_of_cut_lines(capsys, tmp_path):
    from genres_jax import report

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = ['{"step": 1, "kind": "eval", "psnr_y": 30.0}', '{"step": 2, "kind": "eval", "psnr_y"']
    (run_dir / "metrics.jsonl").write_text("\n".join(lines))
    out = tmp_path / "r"
    assert report.main([str(run_dir), "--out", str(out)]) == 0
    assert "skipped 1 line" in capsys.readouterr().err
    (out / "report.md").write_text("my notes")
    assert "exists" in _one_error_line(capsys, report.main([str(run_dir), "--out", str(out)]))
    assert (out / "report.md").read_text() == "my notes"
    assert report.main([str(run_dir), "--out", str(out), "--overwrite"]) == 0
    assert "psnr_y" in (out / "report.md").read_text()


# ------------------------------------------------- Every command, bad paths and bad numbers.


def _bad_path(folder, kind: str) -> str:
    """A path of ``kind`` that no command can use where it wants an existing (or new) path."""
    return {
        "missing": str(folder / "missing" / "thing"),
        "a_junk_file": str(folder / "junk.txt"),
        "a_folder": str(folder / "adir"),
        "under_a_file": str(folder / "junk.txt" / "inside"),
        "too_long": str(folder / ("n" * 300)),
        "empty": "",
        "dash": "-",  # Standard input/output by convention: refused, never a file named "-".
    }[kind]


# Each command's argv with {in} (an input path), {out} (an output path) and {n} (a value for its
# numeric flag ``flag``); the other arguments are as a user would type them.
COMMANDS = {
    "upscale": ("{in} {out} --method bicubic --scale {n}", "--scale"),
    "sample": ("--workdir {in} --out {out} --num {n}", "--num"),
    "sample-batch": ("--workdir {in} --out {out} --batch-size {n}", "--batch-size"),
    "evaluate": ("--workdir {in} --output {out} --max-images {n}", "--max-images"),
    "evaluate-hr": ("--method bicubic --hr-dir {in} --output {out} --scale {n}", "--scale"),
    "report": ("{in} --out {out} --keys psnr", None),
    "features-convert": ("convert-inception {in} {out}", None),
    "features-export": ("export-classifier {in} {out}", None),
    "import_weights": ("rrdbnet {in} {out} --scale {n}", "--scale"),
}
# What each numeric flag accepts: a whole number >= 1 or >= 0, or a finite number > 0.
FLAG_TYPES = {"upscale": "float>0", "evaluate": "int>=0"}
FLAG_TYPES.update({k: "int>=1" for k in COMMANDS if k not in FLAG_TYPES})


def _accepted(kind: str, text: str) -> bool:
    if kind == "float>0":
        return text in ("2", "1.5", "9" * 30)  # 1e400 overflows to infinity.
    return text in ("2", "9" * 30) or (kind == "int>=0" and text == "0")


PATH_KINDS = ["missing", "a_junk_file", "a_folder", "under_a_file", "too_long", "empty", "dash"]
BAD_NUMBERS = ["0", "-1", "nan", "inf", "-inf", "1e400", "abc", "", "1.5", "9" * 30]


def _command_main(name: str):
    from genres_jax import evaluate, features, import_weights, report, sample

    module = {"upscale": upscale, "sample": sample, "evaluate": evaluate, "report": report}
    module.update({"features": features, "import_weights": import_weights})
    return module[name.split("-")[0]].main


@settings(FUZZ, max_examples=int(os.environ.get("GENRES_MISTAKE_EXAMPLES", "150")))
@given(
    command=st.sampled_from(sorted(COMMANDS)),
    source=st.sampled_from(PATH_KINDS),
    target=st.sampled_from(PATH_KINDS + ["new"]),
    number=st.sampled_from(BAD_NUMBERS + ["2"]),
)
def test_every_command_ends_bad_paths_and_numbers_in_one_line(
    capsys, tmp_path_factory, command, source, target, number
):
    folder = tmp_path_factory.mktemp("mistake")
    (folder / "junk.txt").write_text("not an image, a workdir or a weights file\n")
    (folder / "adir").mkdir()
    (folder / "adir" / "note.txt").write_text("kept\n")
    template, flag = COMMANDS[command]
    out = str(folder / "new_output") if target == "new" else _bad_path(folder, target)
    if command in ("report", "features-export") and target == "new":
        out = str(folder / "new_folder")
    values = {"in": _bad_path(folder, source), "out": out, "n": number}
    argv = [part.format(**values) for part in template.split(" ")]
    before = _snapshot(folder)
    capsys.readouterr()
    line = _one_error_line(capsys, _command_main(command)(argv))
    assert _snapshot(folder) == before
    assert sorted(os.listdir(folder)) == ["adir", "junk.txt"]  # Nothing new, nothing removed.
    assert not os.path.lexists("-")
    if {"empty", "dash"} & {source, target}:
        # Refused when parsed, before any numeric check.
        assert "an empty path" in line or "standard input/output" in line, line
    elif flag and not _accepted(FLAG_TYPES[command], number):
        # A numeric mistake is caught when the flags are parsed: the message names the flag.
        assert flag in line, line


@pytest.mark.parametrize("scale", ["1000", "9" * 30])
def test_a_scale_larger_than_the_photos_names_the_photo(capsys, sr_data_dir, scale):
    # The dataset's photos at x1000 are smaller than one LR pixel (a crash in the resizer before).
    argv = ["--method", "bicubic", "--scale", scale, "--data-dir", sr_data_dir]
    line = _one_error_line(capsys, _command_main("evaluate")(argv + ["--max-images", "1"]))
    assert line.endswith(f"smaller than one LR pixel at x{int(scale)}"), line
