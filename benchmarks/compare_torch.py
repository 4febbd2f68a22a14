"""The PyTorch reference train steps and ours, on the same device in one run, as one table.

    python benchmarks/compare_torch.py [--torch-ref PATH/torch_ref.py] [--output FILE]
    python benchmarks/compare_torch.py --device cpu [--torch-python PATH] [--rounds 3]

``--device cpu`` compares the main job's DCGAN step (28x28, batch 64) and the EDSR-M x2 step
(batch 16, LR 48) with their PyTorch forms in `benchmarks/torch_cpu.py` (eager, as many threads
as cores), run by ``--torch-python`` (a Python with PyTorch; default: this one). The two sides
alternate, one process each, for ``--rounds`` rounds, and each figure is the median over the
rounds, so that a noisy machine slows both alike. Ours is timed as shipped (non-finite guard,
EMA update, and for DCGAN fresh latents for the generator update, one more generator forward
than PyTorch's loop) and with the extra work taken away step by step (``shared``: the generator
update reuses the discriminator step's fakes, as in PyTorch; ``unguarded``: no guard).

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
import statistics
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

# CPU case -> (our config, batch size, LR patch or None, timed steps, warm-up steps,
# our forms: name -> extra throughput.py arguments).
CPU_CASES: dict[str, tuple[str, int, int | None, int, int, dict[str, list[str]]]] = {
    "dcgan28_bs64": (
        "configs/dcgan_fashion_mnist.py",
        64,
        None,
        100,
        10,
        {
            "shipped": [],
            "shared": ["--set=gan.g_fakes=shared"],
            "shared unguarded": ["--set=gan.g_fakes=shared", "--unguarded"],
        },
    ),
    "edsr_m_x2_bs16_lr48": (
        "configs/edsr_x2.py",
        16,
        48,
        9,
        2,
        {"shipped": [], "unguarded": ["--unguarded"]},
    ),
}


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


def _run_json(cmd: list[str], out: str) -> dict[str, Any] | list[Any]:
    proc = subprocess.run(cmd, text=True, capture_output=True, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:2])} failed:\n{proc.stderr[-3000:]}")
    with open(out) as f:
        return json.load(f)


def cpu_rows(args: argparse.Namespace, out_dir: str) -> list[dict[str, Any]]:
    """One row per CPU case and form of ours: median ms/step of each side over the rounds."""
    times: dict[tuple[str, str], list[float]] = {}
    for rnd in range(args.rounds):
        for case in args.cpu_cases:
            config, batch, patch, steps, warmup, forms = CPU_CASES[case]
            out = os.path.join(out_dir, f"torch_{case}_{rnd}.json")
            torch_cmd = [args.torch_python, os.path.join(HERE, "torch_cpu.py"), f"--output={out}"]
            torch_cmd += [f"--cases={case}", f"--steps={steps}", f"--warmup={warmup}"]
            (record,) = _run_json(torch_cmd, out)
            times.setdefault((case, "torch"), []).append(record["ms_per_step"])
            for form, extra in forms.items():
                out = os.path.join(out_dir, f"ours_{case}_{rnd}.json")
                cmd = [sys.executable, os.path.join(HERE, "throughput.py"), f"--output={out}"]
                cmd += [f"--config={os.path.join(REPO, config)}", f"--batch-size={batch}"]
                cmd += [f"--steps={steps}", f"--warmup={warmup}", "--windows=3", *extra]
                if patch is not None:
                    cmd.append(f"--lr-patch={patch}")
                times.setdefault((case, form), []).append(_run_json(cmd, out)["median_step_ms"])
            print(f"round {rnd + 1}/{args.rounds}: {case} done", file=sys.stderr)
    rows = []
    for case in args.cpu_cases:
        torch_ms = statistics.median(times[(case, "torch")])
        for form in CPU_CASES[case][5]:
            ours_ms = statistics.median(times[(case, form)])
            rows.append(
                {
                    "case": case,
                    "ours_form": form,
                    "torch_ms": torch_ms,
                    "ours_ms": ours_ms,
                    "ratio": torch_ms / ours_ms,
                    "torch_runs_ms": times[(case, "torch")],
                    "ours_runs_ms": times[(case, form)],
                }
            )
    return rows


def format_cpu_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | ours as | PyTorch ms/step | ours ms/step | ratio |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['ours_form']} | {r['torch_ms']:.1f} | {r['ours_ms']:.1f} "
            f"| {r['ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main_cpu(args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        rows = cpu_rows(args, tmp)
    cores = os.cpu_count()
    print(
        f"ms per train step on this CPU ({cores} cores); ratio = PyTorch / ours (> 1: ours faster)"
    )
    print(format_cpu_table(rows))
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"device": "cpu", "cores": cores, "rows": rows}, f, indent=1)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--torch-python", default=sys.executable, help="CPU: a Python with PyTorch")
    p.add_argument("--rounds", type=int, default=3, help="CPU: alternating rounds")
    p.add_argument("--cpu-cases", nargs="+", choices=list(CPU_CASES), default=list(CPU_CASES))
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
    if args.device == "cpu":
        return main_cpu(args)
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
