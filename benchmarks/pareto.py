"""The quality-against-cost table and plot of SR models, from `evaluate` and inference JSON files.

    python benchmarks/pareto.py --eval-dir EVAL --inference speed_x2.json speed_x4.json \
        --out docs/efficient_sr.png [--markdown table.md]

``EVAL`` holds ``<name>_validation.json`` and ``<name>_test.json`` files written by
``python -m genres_jax.evaluate ... --output`` for each model (bicubic as ``bicubic_x2`` and
``bicubic_x4``); the inference files are ``benchmarks/inference.py --output`` results (models
matched by their ``model`` name and scale). Prints a Markdown table (model, parameters, GFLOPs
per output megapixel, CPU output megapixels/s of tiled ``upscale``, Y-PSNR/SSIM on validation
and test with the gain over bicubic) and plots test Y-PSNR gain against GFLOPs per output
megapixel (log scale).
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def rows(eval_dir: str, inference_files: list[str]) -> list[dict]:
    """One row per model with both splits evaluated, bicubic rows first for each scale."""
    speed = {}
    for path in inference_files:
        for r in _load(path)["results"]:
            speed[(r["model"], r["scale"])] = r
    out = []
    for path in sorted(glob.glob(os.path.join(eval_dir, "*_test.json"))):
        name = os.path.basename(path)[: -len("_test.json")]
        val_path = os.path.join(eval_dir, f"{name}_validation.json")
        if not os.path.exists(val_path):
            continue
        test, val = _load(path), _load(val_path)
        model = test.get("model") or test.get("method")
        row = {
            "name": name,
            "model": model,
            "scale": int(test["scale"]),
            "validation": val["mean"],
            "test": test["mean"],
        }
        bench = speed.get((model, row["scale"]))
        if bench is not None:
            row["parameters"] = bench["parameters"]
            row["gflops"] = bench["gflops_per_output_megapixel"]
            row["mp_per_s"] = bench["tiled"]["output_megapixels_per_s"]
        out.append(row)
    bicubic = {r["scale"]: r for r in out if r["model"] == "bicubic"}
    for r in out:
        base = bicubic.get(r["scale"])
        for split in ("validation", "test"):
            r[f"{split}_gain"] = r[split]["psnr_y"] - base[split]["psnr_y"] if base else None
    return sorted(out, key=lambda r: (r["scale"], r["model"] != "bicubic", r.get("gflops") or 0))


def _cell(r: dict, split: str) -> str:
    m, gain = r[split], r[f"{split}_gain"]
    extra = f" ({gain:+.2f})" if gain is not None and r["model"] != "bicubic" else ""
    return f"{m['psnr_y']:.2f} dB / {m['ssim_y']:.4f}{extra}"


def markdown(table: list[dict]) -> str:
    lines = [
        "| model | scale | parameters | GFLOPs / output MP | CPU output MP/s (tiled) "
        "| validation Y-PSNR / SSIM | test Y-PSNR / SSIM |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in table:
        params = f"{r['parameters']:,}" if "parameters" in r else "-"
        gflops = f"{r['gflops']:.1f}" if r.get("gflops") else "-"
        speed = f"{r['mp_per_s']:.2f}" if "mp_per_s" in r else "-"
        lines.append(
            f"| {r['name']} | x{r['scale']} | {params} | {gflops} | {speed} "
            f"| {_cell(r, 'validation')} | {_cell(r, 'test')} |"
        )
    return "\n".join(lines)


def plot(table: list[dict], path: str) -> None:
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for scale, marker in ((2, "o"), (3, "s"), (4, "^")):
        pts = [r for r in table if r["scale"] == scale and r.get("gflops")]
        pts = [r for r in pts if r["test_gain"] is not None and r["model"] != "bicubic"]
        if not pts:
            continue
        gflops, gains = [r["gflops"] for r in pts], [r["test_gain"] for r in pts]
        ax.scatter(gflops, gains, marker=marker, label=f"x{scale}")
        for r in pts:
            ax.annotate(r["name"], (r["gflops"], r["test_gain"]), fontsize=8)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per output megapixel (XLA cost analysis)")
    ax.set_ylabel("test Y-PSNR gain over bicubic (dB)")
    ax.set_title("Quality against cost, unseen test photos")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eval-dir", required=True)
    p.add_argument("--inference", nargs="*", default=[])
    p.add_argument("--out", help="the plot (PNG)")
    p.add_argument("--markdown", help="write the table here too")
    args = p.parse_args(argv)
    table = rows(args.eval_dir, args.inference)
    text = markdown(table)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.out:
        plot(table, args.out)
    return text


if __name__ == "__main__":
    main()
