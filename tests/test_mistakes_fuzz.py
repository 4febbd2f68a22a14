"""Every command, fuzzed: bad paths (missing, junk file, folder for file, under a file, too long,
empty, "-") and bad numbers (0, negative, NaN, infinities, huge, junk) end in one ``error:``
line and leave the folder as it was; in this process (hypothesis), then one case per command
through the real commands."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from mistakes import FUZZ, command, one_error_line, one_line, run_all, snapshot

from genres_jax import upscale

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


def _mistake_folder(folder):
    (folder / "junk.txt").write_text("not an image, a workdir or a weights file\n")
    (folder / "adir").mkdir()
    (folder / "adir" / "note.txt").write_text("kept\n")
    return folder


def _argv(name: str, folder, source: str, target: str, number: str) -> list[str]:
    template, _ = COMMANDS[name]
    out = str(folder / "new_output") if target == "new" else _bad_path(folder, target)
    if name in ("report", "features-export") and target == "new":
        out = str(folder / "new_folder")
    values = {"in": _bad_path(folder, source), "out": out, "n": number}
    return [part.format(**values) for part in template.split(" ")]


@settings(FUZZ, max_examples=int(os.environ.get("GENRES_MISTAKE_EXAMPLES", "150")))
@given(
    name=st.sampled_from(sorted(COMMANDS)),
    source=st.sampled_from(PATH_KINDS),
    target=st.sampled_from(PATH_KINDS + ["new"]),
    number=st.sampled_from(BAD_NUMBERS + ["2"]),
)
def test_every_command_ends_bad_paths_and_numbers_in_one_line(
    capsys, tmp_path_factory, name, source, target, number
):
    folder = _mistake_folder(tmp_path_factory.mktemp("mistake"))
    argv = _argv(name, folder, source, target, number)
    before = snapshot(folder)
    capsys.readouterr()
    line = one_error_line(capsys, _command_main(name)(argv))
    assert snapshot(folder) == before
    assert sorted(os.listdir(folder)) == ["adir", "junk.txt"]  # Nothing new, nothing removed.
    assert not os.path.lexists("-")
    flag = COMMANDS[name][1]
    if {"empty", "dash"} & {source, target}:
        # Refused when parsed, before any numeric check.
        assert "an empty path" in line or "standard input/output" in line, line
    elif flag and not _accepted(FLAG_TYPES[name], number):
        # A numeric mistake is caught when the flags are parsed: the message names the flag.
        assert flag in line, line


# One case per command for the real processes: a bad input, a bad output or a bad number.
IN_PROCESSES = {
    "upscale": ("a_junk_file", "new", "2"),
    "sample": ("a_folder", "new", "2"),
    "sample-batch": ("missing", "new", "nan"),
    "evaluate": ("under_a_file", "new", "2"),
    "evaluate-hr": ("missing", "a_folder", "2"),
    "report": ("a_junk_file", "under_a_file", "2"),
    "features-convert": ("too_long", "new", "2"),
    "features-export": ("a_junk_file", "dash", "2"),
    "import_weights": ("a_junk_file", "new", "-inf"),
}


def test_every_real_command_ends_a_bad_path_or_number_in_one_line(tmp_path):
    folder = _mistake_folder(tmp_path)
    argvs = [
        command(name.split("-")[0], *_argv(name, folder, *case))
        for name, case in IN_PROCESSES.items()
    ]
    before = snapshot(folder)
    for code, _, err in run_all(argvs, cwd=str(folder)):
        one_line(err, code)
    assert snapshot(folder) == before
    assert sorted(os.listdir(folder)) == ["adir", "junk.txt"]
