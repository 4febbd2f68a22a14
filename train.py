"""Train any genres_jax experiment.

    python train.py --config configs/<name>.py --workdir DIR [--config.key=value ...]

Resumes from the latest checkpoint in DIR. Multi-host: pass --distributed (coordinator, process
count and id are read from the environment: SLURM, TPU pods, or JAX_COORDINATOR_ADDRESS etc.).
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume a workdir written by a different config (its config.json is kept as config.N.json).",
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() before anything else."
)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _one_line(e: object) -> str:
    return " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip())


def parse_flags(argv: list[str]) -> list[str]:
    """Parses flags and loads the config; a user mistake ends in one line, not a traceback.

    ml_collections loads the config file and applies ``--config.*`` overrides while flags are
    parsed, or on first access when loading failed, so both places are guarded.
    """
    usage = "usage: python train.py --config configs/<name>.py --workdir DIR [--config.key=value]"
    try:
        rest = flags.FLAGS(argv)
        if not flags.FLAGS.config or not flags.FLAGS.workdir:
            _fail(f"--config and --workdir are required ({usage})")
        _CONFIG.value.get("task")
    except (KeyError, AttributeError) as e:
        if "get_config" in str(e):
            named = [a.split("=", 1)[1] for a in argv if a.startswith(("--config=", "-config="))]
            if not named and "--config" in argv[:-1]:
                named = [argv[argv.index("--config") + 1]]
            _fail(f"config file {' '.join(named) or '--config'} has no get_config() function")
        detail = e
        while isinstance(detail, BaseException) and detail.args:  # KeyError inside AttributeError.
            detail = detail.args[0]
        _fail(f"unknown config key in an override: {_one_line(detail)}")
    except flags.Error as e:
        text = str(e)
        if "Traceback (most recent call last)" in text:
            # get_config(arg) raised: its own last line is the message, not the traceback.
            named = text.split(": Error whilst", 1)[0].removeprefix("flag --config=")
            last = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-1]
            _fail(f"config {named}: {last.split(': ', 1)[-1]}")
        _fail(f"{_one_line(e)} (usage: {usage.removeprefix('usage: ')})")
    except SyntaxError as e:
        _fail(f"config file {e.filename}:{e.lineno}: {e.msg}")
    except Exception as e:  # noqa: BLE001 - any other failure to load the file is the user's.
        _fail(f"cannot load the config: {type(e).__name__}: {_one_line(e)}")
    return rest


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    # Orbax and TFDS log every file they touch; keep the terminal for the progress bar.
    logging.set_verbosity(logging.ERROR)
    import jax

    if _DISTRIBUTED.value:
        jax.distributed.initialize()
    from genres_jax import cli
    from genres_jax.train import trainer

    cli.quiet_checkpoint_threads()

    ended = []

    def body() -> None:
        result = trainer.train_and_evaluate(
            _CONFIG.value, _WORKDIR.value, allow_config_change=_ALLOW_CONFIG_CHANGE.value
        )
        ended.append(result["ended"])

    code = cli.run(body)
    if ended == ["preempted"]:
        # The checkpoint is durable and every file closed. Work given up on the signal (an
        # evaluation's readers, queued device work) can still be running in native threads,
        # and tearing the interpreter down under them can crash it: the process ends here.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
