"""A super-resolution workdir's inference function as one self-contained file (``jax.export``).

The file holds a short header, a JSON description (scale, receptive radius, where the weights
came from) and the serialised StableHLO program with the weights inside, for any batch size,
height and width (symbolic dimensions). Running it needs JAX and nothing of genres_jax's model
code:

    import jax, json
    blob = open("edsr_x2.jaxexport", "rb").read()
    header, meta, program = blob.split(b"\\n", 2)
    upscale = jax.export.deserialize(bytearray(program))
    hr = upscale.call(lr)  # (N, h, w, 3) float32 in [0, 1] -> (N, h*s, w*s, 3), unclipped

`load_exported` wraps it in an `Upscaler` (tiling, grey and alpha images, uint8/uint16 in and
out), as ``upscale --exported`` uses it.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp

from genres_jax import UserError
from genres_jax.cli import outputs
from genres_jax.inference import upscalers

MAGIC = b"genres_jax exported upscaler v1"


class ExportError(UserError):
    """A workdir that cannot be exported, or a file that is not an exported upscaler."""


def _serialize_upscaler(workdir: str, platforms: tuple[str, ...] | None) -> tuple[dict, bytes]:
    from genres_jax.tasks import sr  # Deferred: the SR model zoo.

    config, model, params, step, origin = upscalers.load_sr_workdir(workdir)
    params = jax.tree.map(jnp.asarray, params)
    # The weights are closed over, so they become constants of the program.
    fn = jax.jit(lambda x: sr.predict(params, x, model=model))
    b, h, w = jax.export.symbolic_shape("b, h, w")
    spec = jax.ShapeDtypeStruct((b, h, w, 3), jnp.float32)
    try:
        exported = jax.export.export(fn, platforms=platforms)(spec)
    except Exception as e:  # Shape polymorphism refuses some ops; say which model and why.
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"model {config.model.name!r} cannot be exported for every image size: {first}"
        ) from None
    meta = {
        "scale": int(config.scale),
        "receptive_radius": int(model.receptive_radius),
        "model": config.model.name,
        "workdir": os.path.abspath(workdir),
        "weights": origin,
        "step": int(step),
        "platforms": list(exported.platforms),
        "jax": jax.__version__,
    }
    return meta, bytes(exported.serialize())


def export_upscaler(
    workdir: str, path: str, *, platforms: tuple[str, ...] | None = None, overwrite: bool = False
) -> dict:
    """Writes the inference function of SR ``workdir`` to ``path``; returns its description.

    ``platforms`` (e.g. ``("cpu", "cuda")``) are those the program can run on; by default the
    platform JAX runs on now. The file is written atomically; an existing ``path`` is kept
    unless ``overwrite``.
    """
    outputs.check_file(path, overwrite=overwrite, flag="OUT")
    meta, program = _serialize_upscaler(workdir, platforms)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(MAGIC + b"\n" + json.dumps(meta).encode() + b"\n" + program)

    outputs.write_file(path, write, overwrite=overwrite)
    return meta


def read_exported(path: str) -> tuple[dict, jax.export.Exported]:
    """(description, program) of an exported upscaler file; `ExportError` for anything else."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise ExportError(f"cannot read {path}: {e.strerror or e}") from None
    parts = blob.split(b"\n", 2)
    if len(parts) != 3 or parts[0] != MAGIC:
        raise ExportError(
            f"{path} is not an exported genres_jax upscaler "
            "(write one with python -m genres_jax.export WORKDIR OUT)"
        )
    try:
        meta = json.loads(parts[1])
        scale, radius = int(meta["scale"]), int(meta["receptive_radius"])
    except (ValueError, KeyError, TypeError):
        raise ExportError(f"{path}: its description is damaged") from None
    try:
        program = jax.export.deserialize(bytearray(parts[2]))
    except Exception:  # A truncated or altered program fails deep inside the deserialiser.
        raise ExportError(f"{path}: the program is damaged or truncated; export it again") from None
    platform = jax.export.default_export_platform()  # "cuda", not jax.default_backend()'s "gpu"
    if platform not in program.platforms:
        raise ExportError(
            f"{path} was exported for {', '.join(program.platforms)}, not {platform}; export "
            f"it again with --platforms {','.join(sorted({*program.platforms, platform}))}"
        )
    return {**meta, "scale": scale, "receptive_radius": radius}, program


def load_exported(path: str) -> upscalers.Upscaler:
    """An `Upscaler` running the exported program at ``path`` (no model code needed)."""
    meta, program = read_exported(path)
    predict = jax.jit(program.call)
    info = {"exported": path, **{k: meta[k] for k in ("model", "weights") if k in meta}}
    return upscalers.Upscaler(predict, meta["scale"], meta["receptive_radius"], rgb=True, info=info)
