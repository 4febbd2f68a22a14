"""genres_jax: image generation and super-resolution in JAX (README: Layout, Use from Python)."""


class UserError(ValueError):
    """A mistake in what the user gave: a flag, a config value, an input file or a workdir.

    Every error the library raises for bad input derives from it, and every command catches it
    once: its message becomes one ``error:`` line and the exit code is 2.
    """
