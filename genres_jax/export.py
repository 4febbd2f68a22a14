"""Export a super-resolution workdir's inference function for deployment.

    python -m genres_jax.export WORKDIR OUT [--platforms cpu,cuda] [--overwrite]

OUT is one file holding the program (``jax.export``, symbolic batch, height and width, so one
file serves every image size) and its weights; re-parameterisable models (SPAN) are exported in
their folded form. Run it with ``python -m genres_jax.upscale IN OUT --exported FILE``, with
``genres_jax.inference.load_exported``, or from a bare JAX install (see
`genres_jax.inference.exported`).
"""

from __future__ import annotations

import sys

from absl import logging

from genres_jax import UserError, cli
from genres_jax.inference import exported

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")


def _platforms(text: str) -> tuple[str, ...]:
    names = tuple(p.strip().lower() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in PLATFORMS]
    if not names or unknown:
        raise UserError(f"--platforms takes a comma-separated list of {', '.join(PLATFORMS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        p = cli.ArgumentParser(
            prog="python -m genres_jax.export", description=__doc__.split("\n\n")[0]
        )
        p.add_argument("workdir", type=cli.path, help="a super-resolution workdir")
        p.add_argument("out", type=cli.path, help="the file to write")
        p.add_argument(
            "--platforms", default="", help="comma-separated, e.g. cpu,cuda (default: this one)"
        )
        p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
        args = p.parse_args(argv)
        platforms = _platforms(args.platforms) if args.platforms else None
        logging.set_verbosity(logging.ERROR)  # Orbax reports every file it reads.
        meta = exported.export_upscaler(
            args.workdir, args.out, platforms=platforms, overwrite=args.overwrite
        )
        print(
            f"{args.workdir} ({meta['model']} x{meta['scale']}, {meta['weights']} weights) -> "
            f"{args.out} (runs on {', '.join(meta['platforms'])})",
            file=sys.stderr,
        )

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
