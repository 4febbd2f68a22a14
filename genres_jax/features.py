"""Feature-extractor files for the generative metrics (`genres_jax.evaluation.features`).

    python -m genres_jax.features export-classifier WORKDIR OUT_DIR
    python -m genres_jax.features convert-inception PT_STATE.npz OUT.npz

``export-classifier`` copies a trained classifier workdir's weights and input shape into a
folder that ``--feature-extractor`` accepts; ``convert-inception`` turns the PyTorch FID port's
InceptionV3 state dict (saved as ``.npz``) into the project's layout.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from genres_jax import UserError, cli
from genres_jax.cli import outputs
from genres_jax.evaluation.features import (
    convert_torch_inception,
    export_classifier,
    load_inception,
)


def main(argv: list[str] | None = None) -> int:
    p = cli.ArgumentParser(prog="python -m genres_jax.features")
    sub = p.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert-inception", help="PyTorch FID-Inception npz -> Flax npz")
    conv.add_argument("input", type=cli.path, help=".npz of the PyTorch state dict (README)")
    conv.add_argument("output", type=cli.path, help="converted .npz for --feature-extractor")
    conv.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    exp = sub.add_parser("export-classifier", help="a classifier workdir -> a weights folder")
    exp.add_argument("workdir", type=cli.path)
    exp.add_argument("out_dir", type=cli.path)

    def body() -> None:
        args = p.parse_args(argv)
        if args.command == "convert-inception":
            outputs.check_file(args.output, overwrite=args.overwrite, inputs=(args.input,))
            try:
                with np.load(args.input) as data:
                    flat = convert_torch_inception({k: data[k] for k in data.files})
            except (OSError, ValueError, EOFError) as e:
                raise UserError(f"{args.input}: not a readable .npz ({cli.one_line(e)})") from None

            def write(tmp: str) -> None:
                with open(tmp, "wb") as f:
                    np.savez(f, **flat)

            outputs.write_file(args.output, write, overwrite=args.overwrite)
            info = load_inception(args.output).describe()
        else:
            outputs.check_folder(args.out_dir, flag="OUT_DIR")
            info = export_classifier(args.workdir, args.out_dir)
        print(json.dumps(info, indent=2))

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
