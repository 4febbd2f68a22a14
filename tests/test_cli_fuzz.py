"""Malformed image files into the command-line tools: a valid output or a clear error, always.

Inputs are valid PNG/JPEG files (grey, RGB, RGBA, 16-bit) cut short, with bytes overwritten,
or with junk spliced in. Every run must end with exit code 0 and a readable output of the
right size, or exit code 2 and one ``error:`` line; a file already at the output path is never
damaged. GENRES_FUZZ_EXAMPLES sets the number of cases per tool (default 30).
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from genres_jax import evaluate, upscale

EXAMPLES = int(os.environ.get("GENRES_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _encoded(kind: str) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    if kind == "png16":
        data = rng.integers(0, 65536, (32, 28, 3), dtype=np.uint16)
        png.Writer(28, 32, bitdepth=16, greyscale=False).write(buf, data.reshape(32, 84))
        return buf.getvalue()
    mode, fmt = {
        "rgb_png": ("RGB", "png"),
        "grey_png": ("L", "png"),
        "rgba_png": ("RGBA", "png"),
        "rgb_jpg": ("RGB", "jpeg"),
        "grey_jpg": ("L", "jpeg"),
    }[kind]
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    data = rng.integers(0, 256, (32, 28, channels), dtype=np.uint8)
    Image.fromarray(data[..., 0] if channels == 1 else data, mode).save(buf, format=fmt)
    return buf.getvalue()


KINDS = ["rgb_png", "grey_png", "rgba_png", "rgb_jpg", "grey_jpg", "png16"]


@st.composite
def malformed(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(KINDS))
    data = bytearray(_encoded(kind))
    how = draw(st.sampled_from(["truncate", "overwrite", "splice", "garbage"]))
    if how == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "overwrite":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif how == "splice":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    else:
        data = bytearray(draw(st.binary(min_size=0, max_size=256)))
    return f"{kind}-{how}", bytes(data)


def _check_outcome(rc: int, err: str, out_path: str, before: bytes, expect_size=None) -> str:
    if rc == 0:
        if expect_size is not None:
            with Image.open(out_path) as im:
                im.load()
                assert im.size == expect_size(im)
        return "output"
    assert rc == 2, err
    lines = [line for line in err.strip().splitlines() if line]
    assert lines and lines[-1].startswith("error: "), err
    assert "Traceback" not in err
    with open(out_path, "rb") as f:
        assert f.read() == before  # The existing output is untouched.
    return "error"


@FUZZ
@given(case=malformed())
def test_upscale_fuzzed_inputs(tmp_path_factory, case, capsys):
    name, data = case
    folder = tmp_path_factory.mktemp("fuzz")
    src, out = folder / "in.png", folder / "out.png"
    src.write_bytes(data)
    before = b"an earlier result"
    out.write_bytes(before)
    capsys.readouterr()
    rc = upscale.main([str(src), str(out), "--scale", "2", "--method", "bicubic", "--overwrite"])
    _check_outcome(rc, capsys.readouterr().err, str(out), before)
    if rc == 0:  # A decodable input gave an output twice its size.
        with Image.open(out) as im, Image.open(src) as orig:
            assert im.size == (orig.size[0] * 2, orig.size[1] * 2)


@FUZZ
@given(case=malformed())
def test_evaluate_fuzzed_hr_folder(tmp_path_factory, case, capsys):
    name, data = case
    folder = tmp_path_factory.mktemp("fuzz_eval")
    hr = folder / "hr"
    hr.mkdir()
    (hr / "photo.png").write_bytes(data)
    out = folder / "result.json"
    before = b'{"earlier": true}'
    out.write_bytes(before)
    capsys.readouterr()
    rc = evaluate.main(
        [
            "--method",
            "bicubic",
            "--scale",
            "2",
            "--hr-dir",
            str(hr),
            "--output",
            str(out),
            "--overwrite",
        ]
    )
    captured = capsys.readouterr()
    _check_outcome(rc, captured.err, str(out), before)
    if rc == 0:
        assert json.loads(out.read_text())["num_images"] == 1
    else:
        assert "photo.png" in captured.err
