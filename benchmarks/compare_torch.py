"""The PyTorch reference train steps and ours, on the same device in one run, as one table.

    python benchmarks/compare_torch.py [--torch-ref PATH/torch_ref.py] [--output FILE]

Runs the reference script (``shared/bench/torch_ref.py``: EDSR-M x2 batch 16 / LR 48 and batch
64 / LR 64, EDSR-L x2 batch 16 / LR 48, DCGAN 64x64 batch 128; eager and torch.compile, float32
with TF32 and bf16 autocast, 10 warm-up and 50 timed steps) in its own process, then
`benchmarks/throughput.py` for the same cases in float32 and bfloat16, one process each, and
prints images/s side by side with the ratio ours / PyTorch (> 1: ours is faster).

Needs a CUDA GPU and PyTorch for the reference; install it next to JAX's CUDA build
(``pip install torch``) on the GPU machine only: nothing else in the project uses it. Without a
GPU, ``--torch-json FILE`` reuses a ``torch_ref.json`` written earlier; a comparison is only
meaningful when both sides ran on the same device in the same session.

Differences in the steps (ours do more work, never less): every step of ours runs inside the
trainer's non-finite guard and updates EMA weights; EDSR adds the DIV2K mean shift; our DCGAN
generator update draws fresh latents, so it runs the generator forward twice per step where the
reference reuses the discriminator step's fakes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Reference case -> (our config, batch size, LR patch or None).
CASES: dict[str, tuple[str, int, int | None]] = {
    "edsr_m_x2_bs16_lr48": ("configs/edsr_x2.py", 16, 48),
    "edsr_m_x2_bs64_lr64": ("configs/edsr_x2.py", 64, 64),
    "edsr_l_x2_bs16_lr48": ("configs/edsr_l_x2.py", 16, 48),
    "dcgan64_bs128": ("configs/dcgan_64.py", 128, None),
}
PRECISIONS = ("float32", "bfloat16")


def find_torch_ref() -> str | None:
    """The reference script: ``shared/`` inside the checkout, else beside it."""
    for path in (
        os.path.join(REPO, "shared", "bench", "torch_ref.py"),
        os.path.join(os.path.dirname(REPO), "shared", "bench", "torch_ref.py"),
    ):
        if os.path.isfile(path):
            return path
    return None


def run_torch(script: str, out_dir: str) -> list[dict[str, Any]]:
    env = dict(os.environ, OUT=out_dir)
    proc = subprocess.run([sys.executable, script], env=env, text=True, capture_output=True)
    sys.stderr.write(proc.stdout[-4000:])
    if proc.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{proc.stderr[-3000:]}")
    with open(os.path.join(out_dir, "torch_ref.json")) as f:
        return json.load(f)


def run_ours(case: str, dtype: str, args: argparse.Namespace, out_dir: str) -> dict[str, Any]:
    config, batch, patch = CASES[case]
    out = os.path.join(out_dir, f"{case}_{dtype}.json")
    cmd = [
        sys.executable,
        os.path.join(HERE, "throughput.py"),
        f"--config={os.path.join(REPO, config)}",
        f"--batch-size={batch}",
        f"--precision={dtype}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--output={out}",
        *(f"--set={s}" for s in args.set),
    ]
    if patch is not None:
        cmd.append(f"--lr-patch={patch}")
    proc = subprocess.run(cmd, text=True, capture_output=True, cwd=REPO)
    if proc.returncode != 0:
        return {"case": case, "precision": dtype, "error": proc.stderr.strip()[-500:]}
    with open(out) as f:
        return {"case": case, **json.load(f)}


def _form(record: dict[str, Any]) -> str:
    return ("compile" if record.get("compile") else "eager") + (
        " bf16" if record.get("amp") else " fp32"
    )


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours and theirs else None


def comparison_rows(torch: list[dict], ours: list[dict]) -> list[dict[str, Any]]:
    """One row per case: each side's best images/s per precision and overall, and the ratios
    ours / PyTorch (same precision, and best against best)."""
    rows = []
    for case in CASES:
        row: dict[str, Any] = {"case": case}
        for dtype, amp in (("float32", False), ("bfloat16", True)):
            mine = [r for r in ours if r["case"] == case and r.get("precision") == dtype]
            theirs = [r for r in torch if r["case"] == case and bool(r.get("amp")) == amp]
            best = max(theirs, key=lambda r: r["img_s"], default=None)
            row[f"torch_{dtype}"] = best["img_s"] if best else None
            row[f"torch_{dtype}_form"] = _form(best) if best else None
            row[f"ours_{dtype}"] = mine[0].get("images_per_s") if mine else None
            row[f"ratio_{dtype}"] = _ratio(row[f"ours_{dtype}"], row[f"torch_{dtype}"])
        row["torch_best"] = max((row[f"torch_{d}"] or 0.0 for d in PRECISIONS), default=0.0)
        row["ours_best"] = max((row[f"ours_{d}"] or 0.0 for d in PRECISIONS), default=0.0)
        row["ratio_best"] = _ratio(row["ours_best"], row["torch_best"])
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of `comparison_rows` (images/s; ratio = ours / PyTorch)."""

    def num(v, fmt="{:.0f}"):
        return "-" if v is None else fmt.format(v)

    lines = [
        "| case | torch fp32 | ours fp32 | ratio | torch bf16 | ours bf16 | ratio | best ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["case"]]
        for d in PRECISIONS:
            form = r[f"torch_{d}_form"]
            cells += [
                num(r[f"torch_{d}"]) + (f" ({form})" if form else ""),
                num(r[f"ours_{d}"]),
                num(r[f"ratio_{d}"], "{:.2f}x"),
            ]
        cells.append(num(r["ratio_best"], "{:.2f}x"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--torch-ref", help="torch_ref.py (default: shared/bench/ in or beside repo)")
    p.add_argument("--torch-json", help="use this torch_ref.json instead of running PyTorch")
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    p.add_argument("--steps", type=int, default=50, help="timed steps (as the reference)")
    p.add_argument("--warmup", type=int, default=10, help="warm-up steps (as the reference)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override")
    p.add_argument("--output", help="write both sides' records and the rows here (JSON)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.torch_json:
            with open(args.torch_json) as f:
                torch = json.load(f)
        else:
            script = args.torch_ref or find_torch_ref()
            if script is None or not os.path.isfile(script):
                sys.exit("error: torch_ref.py not found; pass --torch-ref or --torch-json")
            torch = run_torch(script, tmp)
        ours = []
        for case in args.cases:
            for dtype in args.precisions:
                ours.append(run_ours(case, dtype, args, tmp))
                err = ours[-1].get("error")
                print(f"{case} {dtype}: " + (f"FAILED {err}" if err else "done"), file=sys.stderr)
    rows = [r for r in comparison_rows(torch, ours) if r["case"] in args.cases]
    device = next((r["device_kind"] for r in ours if "device_kind" in r), "unknown device")
    print(f"images/s on {device}; ratio = ours / PyTorch (> 1: ours faster)")
    print(format_table(rows))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"torch": torch, "ours": ours, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
