"""Compare runs without TensorBoard: a markdown table and PNG training curves from metrics.jsonl.

    python -m genres_jax.report runs/gan_mlp_fashion_mnist runs/gan_mlp_fashion_mnist_14 \\
        [--out report/] [--keys fid/classifier_fashion_mnist d_loss ...]

For every run (a workdir with ``metrics.jsonl``; its ``config.json`` names the task and model):
one table row with the last step and the last value of every evaluation metric, and the best
value of each for the metrics whose direction is known (FID/KID/losses/NLL lower, PSNR/SSIM/
accuracy/precision/recall/ELBO higher). Curves: one PNG per metric and kind (``train_<key>.png``,
``eval_<key>.png``), one line per run, written to ``--out`` with ``report.md``.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Sequence
from functools import partial
from typing import Any

from genres_jax import UserError, cli
from genres_jax.cli import outputs

_LOWER = ("fid", "kid", "loss", "nll", "bits_per_dim", "gradient_penalty")
_HIGHER = ("psnr", "ssim", "accuracy", "precision", "recall", "elbo", "iw_bound")
_NOT_PLOTTED = ("step", "kind", "nonfinite", "kid_stderr")


def read_metrics(path: str, warn=None) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; lines that are not complete JSON objects are skipped,
    and ``warn(message)`` is told how many (a run killed mid-write leaves a cut last line)."""
    records = []
    skipped = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except ValueError:
                skipped.append(number)
                continue
            if isinstance(record, dict) and "step" in record:
                records.append(record)
            else:
                skipped.append(number)
    if skipped and warn is not None:
        shown = ", ".join(map(str, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
        warn(f"{path}: skipped {len(skipped)} line(s) that are not complete records ({shown})")
    return records


def direction(key: str) -> int:
    """-1 if lower is better, +1 if higher is better, 0 if unknown (no "best" column)."""
    base = key.split("/")[0]
    if base.startswith("kid_stderr"):
        return 0
    if any(word in base for word in _LOWER):
        return -1
    if any(word in base for word in _HIGHER):
        return 1
    return 0


def series(records: list[dict[str, Any]], kind: str) -> dict[str, tuple[list[int], list[float]]]:
    """{metric: (steps, values)} of one kind ("train"/"eval"), a later record of a step winning."""
    by_key: dict[str, dict[int, float]] = {}
    for record in records:
        if record.get("kind", "train") != kind:
            continue
        for key, value in record.items():
            if key in ("step", "kind") or not isinstance(value, int | float):
                continue
            by_key.setdefault(key, {})[int(record["step"])] = float(value)
    return {k: (sorted(v), [v[s] for s in sorted(v)]) for k, v in by_key.items()}


def _run_label(workdirs: Sequence[str]) -> list[str]:
    names = [os.path.basename(os.path.normpath(d)) for d in workdirs]
    return names if len(set(names)) == len(names) else [os.path.normpath(d) for d in workdirs]


def _describe(workdir: str) -> str:
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        return "?"
    model = config.get("model", {}).get("name", "?")
    size = config.get("dataset", {}).get("image_size") or ""
    return f"{config.get('task', '?')} {model}" + (f" {size}x{size}" if size else "")


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"


def build_report(workdirs: Sequence[str], keys: Sequence[str] = ()) -> dict[str, Any]:
    """Per-run series and the markdown table. ``keys`` limits the eval columns (default: all)."""
    runs, warnings = {}, []
    for label, workdir in zip(_run_label(workdirs), workdirs, strict=True):
        path = os.path.join(workdir, "metrics.jsonl")
        if not os.path.isfile(path):
            raise UserError(f"{workdir!r} has no metrics.jsonl")
        records = read_metrics(path, warn=warnings.append)
        runs[label] = {
            "workdir": workdir,
            "what": _describe(workdir),
            "last_step": max((int(r["step"]) for r in records), default=0),
            "train": series(records, "train"),
            "eval": series(records, "eval"),
        }
    known = sorted({k for run in runs.values() for k in run["eval"]})
    missing = [k for k in keys if k not in known]
    if missing:
        raise UserError(
            f"--keys {' '.join(missing)}: no run has such an evaluation metric; "
            f"they have: {', '.join(known) or 'none'}"
        )
    for message in warnings:  # Only for a report that is made: a refusal stays one line.
        print(f"warning: {message}", file=sys.stderr)
    columns = list(keys) or known
    header = ["run", "model", "step"]
    for key in columns:
        header.append(f"{key} (last)")
        if direction(key):
            header.append(f"{key} (best{'↓' if direction(key) < 0 else '↑'})")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, run in runs.items():
        row = [label, run["what"], str(run["last_step"])]
        for key in columns:
            _, values = run["eval"].get(key, ([], []))
            row.append(_fmt(values[-1]) if values else "")
            if direction(key):
                best = (min if direction(key) < 0 else max)(values) if values else None
                row.append(_fmt(best) if values else "")
        lines.append("| " + " | ".join(row) + " |")
    return {"runs": runs, "columns": columns, "table": "\n".join(lines)}


def _file_name(kind: str, key: str) -> str:
    return f"{kind}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', key)}.png"


def _plotted(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, key, file name) of every curve the report draws."""
    planned = []
    for kind in ("train", "eval"):
        keys = sorted({k for run in report["runs"].values() for k in run[kind]})
        for key in keys:
            if key in _NOT_PLOTTED or key.split("/")[0] in _NOT_PLOTTED:
                continue
            planned.append((kind, key, _file_name(kind, key)))
    return planned


def plot_curves(report: dict[str, Any], out_dir: str, *, overwrite: bool = False) -> list[str]:
    """One PNG per (kind, metric) with a line per run; returns the paths written.

    Without ``overwrite`` a curve file already in ``out_dir`` is an `OutputError` before any
    is drawn; each file is published exclusively, so nothing the user had is replaced.
    """
    import matplotlib

    matplotlib.use("Agg")  # Files only, no display.
    import matplotlib.pyplot as plt

    planned = [(kind, key, os.path.join(out_dir, name)) for kind, key, name in _plotted(report)]
    outputs.check_new_files([p for _, _, p in planned], overwrite=overwrite, flag="--out")
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for kind, key, path in planned:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for label, run in report["runs"].items():
            if key in run[kind]:
                steps, values = run[kind][key]
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=label)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(f"{kind}: {key}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        try:
            outputs.write_file(path, partial(fig.savefig, format="png"), overwrite=overwrite)
        finally:
            plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m genres_jax.report", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "workdirs", type=cli.path, nargs="+", help="run directories holding metrics.jsonl"
    )
    p.add_argument(
        "--out", type=cli.path, default="report", help="folder for report.md and the PNG curves"
    )
    p.add_argument("--keys", nargs="*", default=(), help="evaluation metrics in the table")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report in --out")

    def body() -> None:
        args = p.parse_args(argv)
        outputs.check_folder(args.out, flag="--out")
        target = os.path.join(args.out, "report.md")
        if os.path.lexists(target) and not args.overwrite:
            raise UserError(f"{target} exists; pass --overwrite to replace that report")
        report = build_report(args.workdirs, args.keys)
        paths = plot_curves(report, args.out, overwrite=args.overwrite)
        text = report["table"] + "\n\n"
        text += "".join(f"![{os.path.basename(p)}]({os.path.basename(p)})\n" for p in paths)
        outputs.write_text(target, text, overwrite=args.overwrite)
        print(report["table"])
        print(f"\n{len(paths)} plots and report.md in {args.out}", file=sys.stderr)

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
