"""Probabilities and ranges of the Real-ESRGAN degradation pipeline (`degradations.degrade`).

Frozen, hashable dataclasses (they are static arguments of the jitted pipeline), checked on
construction so that a bad value fails here with its name rather than deep inside JAX. The
defaults are the published x4 recipe; `DegradationConfig.from_dict` overrides any subset of
them from a nested dict or `ml_collections.ConfigDict`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from genres_jax.ops.blur_kernels import KernelConfig

RESIZE_METHODS = ("area", "bilinear", "bicubic")
# Fixed grid of the final sinc filter; the recipe draws its support among the odd sizes 7..21.
FINAL_SINC_GRID = 21
_ODD_SIZES = (7, 9, 11, 13, 15, 17, 19, 21)


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


def _check_range(name: str, r: tuple[float, float], low: float, high: float) -> None:
    if len(r) != 2 or not low <= r[0] <= r[1] <= high:
        raise ValueError(f"{name} must be a pair low <= high within [{low}, {high}], got {r}")


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One degradation stage; defaults are the recipe's first stage.

    blur_prob: probability of blurring with a kernel drawn from `blur`.
    resize_probs: probabilities of (up, down, keep); resize_range: (low, high) with
    low <= 1 <= high, factors relative to the stage's reference size (stage 1: the HR size;
    stage 2: the LR size), up: s uniform in [1, high], down: uniform in [low, 1].
    noise_prob: probability of adding noise at all (the recipe always does: 1);
    gaussian_noise_prob: Gaussian rather than Poisson noise; noise_sigma_range: Gaussian sigma
    in 8-bit levels; poisson_scale_range: multiplier of the Poisson noise; grey_noise_prob:
    noise identical in the three channels.
    jpeg_prob / jpeg_range: probability (the recipe: 1) and quality range of the JPEG step;
    in stage 2 they are the final JPEG's (the recipe has no JPEG inside stage 2).
    """

    blur_prob: float = 1.0
    blur: KernelConfig = KernelConfig()
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    noise_prob: float = 1.0
    gaussian_noise_prob: float = 0.5
    noise_sigma_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    grey_noise_prob: float = 0.4
    jpeg_prob: float = 1.0
    jpeg_range: tuple[float, float] = (30.0, 95.0)

    def __post_init__(self) -> None:
        if not isinstance(self.blur, KernelConfig):
            raise ValueError(f"blur must be a KernelConfig, got {type(self.blur).__name__}")
        for name in ("blur_prob", "noise_prob", "gaussian_noise_prob", "grey_noise_prob"):
            _check_prob(name, getattr(self, name))
        _check_prob("jpeg_prob", self.jpeg_prob)
        if len(self.resize_probs) != 3 or min(self.resize_probs) < 0:
            raise ValueError(
                f"resize_probs must be 3 non-negative probabilities (up, down, keep), "
                f"got {self.resize_probs}"
            )
        if not math.isclose(sum(self.resize_probs), 1.0, abs_tol=1e-6):
            raise ValueError(f"resize_probs must sum to 1, got {self.resize_probs}")
        _check_range("resize_range", self.resize_range, 1e-3, 1e3)
        if not self.resize_range[0] <= 1.0 <= self.resize_range[1]:
            raise ValueError(f"resize_range must contain 1, got {self.resize_range}")
        _check_range("noise_sigma_range", self.noise_sigma_range, 0.0, 255.0)
        _check_range("poisson_scale_range", self.poisson_scale_range, 0.0, 1e3)
        _check_range("jpeg_range", self.jpeg_range, 1.0, 100.0)


@dataclasses.dataclass(frozen=True)
class DegradationConfig:
    """All probabilities and ranges of the pipeline; defaults are Real-ESRGAN's x4 recipe.

    stage1 / stage2: the two stages (stage 2's JPEG settings are the final JPEG's).
    final_sinc_prob: probability of the final sinc filter, its support uniform over
    final_sinc_sizes (odd, <= 21) and cutoff uniform in final_sinc_omega (radians/pixel).
    jpeg_first_prob: probability of the final order [JPEG, resize + sinc] rather than
    [resize + sinc, JPEG]. resize_methods: drawn uniformly for every resize.
    """

    stage1: StageConfig = StageConfig()
    stage2: StageConfig = StageConfig(
        blur_prob=0.8,
        blur=KernelConfig(sigma_range=(0.2, 1.5)),
        resize_probs=(0.3, 0.4, 0.3),
        resize_range=(0.3, 1.2),
        noise_sigma_range=(1.0, 25.0),
        poisson_scale_range=(0.05, 2.5),
    )
    final_sinc_prob: float = 0.8
    final_sinc_sizes: tuple[int, ...] = _ODD_SIZES
    final_sinc_omega: tuple[float, float] = (math.pi / 3, math.pi)
    jpeg_first_prob: float = 0.5
    resize_methods: tuple[str, ...] = RESIZE_METHODS

    def __post_init__(self) -> None:
        for name in ("stage1", "stage2"):
            if not isinstance(getattr(self, name), StageConfig):
                raise ValueError(f"{name} must be a StageConfig, got {getattr(self, name)!r}")
        _check_prob("final_sinc_prob", self.final_sinc_prob)
        _check_prob("jpeg_first_prob", self.jpeg_first_prob)
        _check_range("final_sinc_omega", self.final_sinc_omega, 0.0, math.pi)
        sizes = self.final_sinc_sizes
        if not sizes or any(s < 1 or s % 2 != 1 or s > FINAL_SINC_GRID for s in sizes):
            raise ValueError(f"final_sinc_sizes must be odd in [1, {FINAL_SINC_GRID}], got {sizes}")
        bad = [m for m in self.resize_methods if m not in RESIZE_METHODS]
        if bad or not self.resize_methods:
            raise ValueError(f"Unknown resize methods {bad}; valid methods: {list(RESIZE_METHODS)}")

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> DegradationConfig:
        """The defaults overridden by a (nested) dict or ml_collections.ConfigDict.

        Keys are the field names (`stage1`, `stage2`, their `blur`, ...); an unknown key or a
        value of the wrong kind raises ValueError naming it.
        """
        return _override(cls(), mapping, "degradation")


def _override(base: Any, mapping: Any, where: str) -> Any:
    if hasattr(mapping, "to_dict"):
        mapping = mapping.to_dict()
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where} must be a mapping of field names to values, got {mapping!r}")
    names = [f.name for f in dataclasses.fields(base)]
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ValueError(f"Unknown {where} keys {unknown}; valid keys: {names}")
    changes = {}
    for name, value in mapping.items():
        current = getattr(base, name)
        if dataclasses.is_dataclass(current):
            value = _override(current, value, f"{where}.{name}")
        elif isinstance(current, tuple):
            if not isinstance(value, list | tuple):
                raise ValueError(f"{where}.{name} must be a sequence, got {value!r}")
            value = tuple(value)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}.{name} must be a number, got {value!r}")
        changes[name] = value
    try:
        return dataclasses.replace(base, **changes)
    except TypeError as err:  # e.g. a string inside a numeric range: name the section.
        raise ValueError(f"Invalid {where} values {changes}: {err}") from err
