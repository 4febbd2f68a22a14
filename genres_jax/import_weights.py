"""Import published ESRGAN / Real-ESRGAN, SRVGGNetCompact, EDSR and SPAN weights into a workdir
the SR tools load.

    python -m genres_jax.import_weights rrdbnet RealESRGAN_x4plus.npz runs/realesrgan_x4plus
    python -m genres_jax.import_weights srvgg realesr-general-x4v3.npz runs/realesr_general_x4v3
    python -m genres_jax.import_weights edsr EDSR_x2.npz runs/edsr_l_x2_official
    python -m genres_jax.import_weights span spanx4.npz runs/span_x4_official
    python -m genres_jax.upscale photo.png photo_x4.png --workdir runs/realesrgan_x4plus
    python -m genres_jax.evaluate --workdir runs/realesrgan_x4plus [--degraded]
    python train.py --config configs/realesrgan_x4.py --workdir runs/finetuned \\
        --config.init_from=runs/realesrgan_x4plus --config.loss.vgg_weights=vgg19.safetensors

The srvgg, edsr and span key mappings are in `genres_jax.inference.published_weights`; their
workdirs get a plain ``sr`` config (L1 recipe) of the model and its inferred sizes. The rest of
this text is about RRDBNet.

The state file is a ``.safetensors`` or ``.npz`` of an RRDBNet state dict (torch is not needed
here). Published ``.pth`` files are converted once, on a machine with torch, by this command,
which unwraps the EMA weights (``params_ema``) where the file has them, else ``params``::

    python -c "import sys, torch, numpy as np; s = torch.load(sys.argv[1], map_location='cpu'); \\
s = s.get('params_ema', s.get('params', s)); \\
np.savez(sys.argv[2], **{k: v.float().numpy() for k, v in s.items()})" IN.pth OUT.npz

Key mapping: parameter path here <- torch module name per layout. Every conv has ``.weight``,
stored (out, in, kh, kw) and transposed to the Flax kernel (kh, kw, in, out), and ``.bias``.
``i`` counts RRDBs from 0; ``k`` (dense block, 0-2) and ``j`` (conv, 0-4) are 1-based in torch.

    here                        basicsr (BasicSR, Real-ESRGAN)   esrgan (ESRGAN repo)
    conv_first                  conv_first                       conv_first
    rrdb_{i}/rdb_{k}/conv_{j}   body.{i}.rdb{k+1}.conv{j+1}      RRDB_trunk.{i}.RDB{k+1}.conv{j+1}
    conv_body                   conv_body                        trunk_conv
    conv_up_0, conv_up_1        conv_up1, conv_up2               upconv1, upconv2
    conv_hr, conv_last          conv_hr, conv_last               HRconv, conv_last

    esrgan_legacy (the first ESRGAN release, e.g. an older RRDB_ESRGAN_x4.pth): model.0,
    model.1.sub.{i}.RDB{k+1}.conv{j+1}.0, model.1.sub.{num_blocks} (the trunk conv), model.3,
    model.6, model.8, model.10.

Keys may also carry a ``params_ema.`` / ``params.`` (preferred in that order) or ``module.``
prefix. Sizes come from the shapes: ``features`` = conv_first's outputs, ``growth`` = the first
dense conv's outputs, ``num_blocks`` = the RRDBs present, and the scale from conv_first's input
channels: 3 -> x4, 12 -> x2, 48 -> x1 (BasicSR folds the input with a pixel unshuffle by 2 or
4, in the channel order `genres_jax.models.rrdbnet.pixel_unshuffle` uses). The two ESRGAN
layouts are x4 only.

The workdir gets ``config.json`` (a ``gan_sr`` RRDBNet + U-Net config with the Real-ESRGAN
recipe of ``configs/realesrgan_x4.py``, the inferred sizes in ``model.overrides``, and
``loss.perceptual_weight=0`` so nothing that reads it needs a VGG19 file; fine-tuning configs set
their own) and ``best/``, the converted parameters at step 0. An existing OUT_WORKDIR is only
replaced with ``--overwrite`` (and only if it is a workdir or empty), after everything is read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import uuid
from collections.abc import Mapping
from typing import Any

import ml_collections
from absl import logging

from genres_jax import UserError, cli
from genres_jax.inference.published_weights import CONVERTERS
from genres_jax.inference.weight_files import (
    CONVERSION_COMMAND,
    SCALE_OF_INPUT_CHANNELS,
    Imported,
    WeightImportError,
    convert_rrdbnet,
    import_rrdbnet,
    read_state_file,
    unwrap_state_dict,
)
from genres_jax.train import checkpointing, config_checks, defaults

# Re-exported: the Python API of earlier releases.
__all__ = [
    "CONVERSION_COMMAND",
    "Imported",
    "WeightImportError",
    "convert_rrdbnet",
    "import_rrdbnet",
    "read_state_file",
    "unwrap_state_dict",
]

IMPORTERS = ("rrdbnet", "srvgg", "edsr", "span")


def workdir_config(
    overrides: Mapping[str, Any], scale: int, model: str = "rrdbnet"
) -> ml_collections.ConfigDict:
    """The recorded ``gan_sr`` config: RRDBNet of ``overrides``, Real-ESRGAN's training recipe.

    As ``configs/realesrgan_x4.py`` (on-device degradations, sharpened targets, pair pool, U-Net
    discriminator, vanilla GAN x 0.1), except ``loss.perceptual_weight=0``, so that loading or
    validating this config needs no VGG19 file.
    """
    if model != "rrdbnet":
        # The other architectures are PSNR models: the plain SR task's recipe (L1, Adam, EMA).
        config = defaults.sr_config(model, scale)
        config.model.overrides = dict(overrides)
        return config
    config = defaults.realesrgan_config(scale)
    config.model.overrides = dict(overrides)
    config.loss.perceptual_weight = 0.0
    return config


def check_destination(out: str, *, overwrite: bool) -> None:
    """WeightImportError unless ``out`` is absent, or (with overwrite) an old workdir or empty."""
    if not os.path.lexists(out):
        return
    if not overwrite:
        raise WeightImportError(f"{out} exists; pass --overwrite to replace it")
    if not os.path.isdir(out) or os.path.islink(out):
        raise WeightImportError(f"{out} exists and is not a directory; not replacing it")
    if os.listdir(out) and not os.path.isfile(os.path.join(out, "config.json")):
        raise WeightImportError(f"{out} is not a workdir (no config.json); not replacing it")


def write_workdir(
    out: str,
    params: Any,
    overrides: Mapping[str, Any],
    scale: int,
    *,
    overwrite: bool = False,
    model: str = "rrdbnet",
) -> None:
    """Writes ``out/config.json`` (`workdir_config`) and ``out/best/`` (params at step 0).

    Built in a hidden sibling folder and renamed into place, so a failure leaves ``out`` (and
    whatever it held) as it was.
    """
    check_destination(out, overwrite=overwrite)
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    # os.mkdir, unlike tempfile.mkdtemp, gives the workdir the user's usual permissions.
    tmp = os.path.join(parent, f".{os.path.basename(out)}.importing-{uuid.uuid4().hex[:12]}")
    try:
        os.makedirs(parent, exist_ok=True)
        os.mkdir(tmp)
    except OSError as e:
        raise WeightImportError(f"cannot create {out}: {e}") from None
    try:
        config_checks.write_config(workdir_config(overrides, scale, model), tmp)
        manager = checkpointing.make_best_manager(os.path.join(tmp, "best"), "latest")
        checkpointing.save_params(manager, 0, params, {})
        manager.wait_until_finished()
        manager.close()
        check_destination(out, overwrite=overwrite)  # Nothing appeared meanwhile.
        if os.path.lexists(out):
            old = tmp + "-replaced"
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except OSError:
                os.rename(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except OSError as e:
        raise WeightImportError(f"cannot write {out}: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = cli.ArgumentParser(
        prog="python -m genres_jax.import_weights", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("model", help=f"architecture of the weights: {', '.join(IMPORTERS)}")
    p.add_argument(
        "state_file", type=cli.path, help=".safetensors or .npz state dict (see --help's top)"
    )
    p.add_argument("out_workdir", type=cli.path, help="workdir to create")
    p.add_argument(
        "--scale", type=cli.positive_int, help="check the weights upscale by this factor"
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT_WORKDIR if it exists")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    """Imports as ``args`` say; returns a one-line summary."""
    if args.model not in IMPORTERS:
        raise WeightImportError(f"unknown model {args.model!r}; valid: {', '.join(IMPORTERS)}")
    rrdbnet = args.model == "rrdbnet"
    if rrdbnet and args.scale is not None and args.scale not in SCALE_OF_INPUT_CHANNELS.values():
        raise WeightImportError(f"--scale must be 1, 2 or 4, got {args.scale}")
    check_destination(args.out_workdir, overwrite=args.overwrite)  # Fail before reading.
    convert = convert_rrdbnet if rrdbnet else CONVERTERS[args.model]
    try:
        imported = convert(read_state_file(args.state_file), args.scale)
    except UserError as e:
        prefix = "" if str(e).startswith(args.state_file) else f"{args.state_file}: "
        raise WeightImportError(prefix + str(e)) from None
    write_workdir(
        args.out_workdir,
        imported.params,
        imported.overrides,
        imported.scale,
        overwrite=args.overwrite,
        model=imported.model,
    )
    sizes = ", ".join(f"{k} {v}" for k, v in imported.overrides.items() if k != "rgb_mean")
    source = f"{imported.layout} layout" + (f", {imported.wrapper}" if imported.wrapper else "")
    name = {"rrdbnet": "RRDBNet", "srvgg": "SRVGGNetCompact", "edsr_m": "EDSR", "span": "SPAN"}
    return (
        f"{args.state_file} ({source}) -> {args.out_workdir}: {name[imported.model]} "
        f"x{imported.scale} "
        f"({sizes}), config.json and best/ (step 0)"
    )


def main(argv: list[str] | None = None) -> int:
    def body() -> None:
        args = parse_args(argv)
        logging.set_verbosity(logging.ERROR)  # Orbax reports every file it touches.
        print(run(args), file=sys.stderr)

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
