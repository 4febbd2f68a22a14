"""Reading and writing images for the command-line tools, keeping 8- or 16-bit depth.

Pillow reads and writes everything except 16-bit colour PNGs, which it reduces to 8 bits;
those go through pypng. Images come back as float32 arrays in [0, 1] of shape (H, W, C) with
C in {1, 3, 4} (grey, RGB, RGBA) and their bit depth. Failures raise `ImageError` with a message
that names the file; writes are atomic, so a failed write never leaves a damaged file.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import png
from PIL import Image, UnidentifiedImageError

from genres_jax import UserError

SUPPORTED_OUTPUTS = (".png", ".jpg", ".jpeg")


class ImageError(UserError):
    """A file that is not a usable image, or an output that cannot be written."""


@dataclasses.dataclass
class LoadedImage:
    pixels: np.ndarray  # float32 (H, W, C) in [0, 1]
    bit_depth: int  # 8 or 16

    @property
    def has_alpha(self) -> bool:
        return self.pixels.shape[-1] in (2, 4)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_png16(path: str) -> LoadedImage | None:
    """16-bit PNGs through pypng; None for any other PNG."""
    reader = png.Reader(filename=path)
    width, height, rows, info = reader.asDirect()
    if info["bitdepth"] != 16:
        return None
    planes = info["planes"]
    array = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, planes)
    return LoadedImage(array.astype(np.float32) / 65535.0, 16)


def read_image(path: str) -> LoadedImage:
    """The image at ``path`` as floats in [0, 1] with its channels (grey/RGB + alpha) and depth."""
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ImageError(f"{path}: empty file, not an image")
    try:
        with open(path, "rb") as f:
            is_png = f.read(8) == _PNG_SIGNATURE
        if is_png:
            loaded = _read_png16(path)
            if loaded is not None:
                return _checked(path, loaded)
        with Image.open(path) as im:
            im.load()
            return _checked(path, _from_pil(path, im))
    except ImageError:
        raise
    except (UnidentifiedImageError, png.Error) as e:
        raise ImageError(f"{path}: not a readable image ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{path}: damaged or truncated image ({e})") from None


def _from_pil(path: str, im: Image.Image) -> LoadedImage:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return LoadedImage(np.asarray(im, np.float32)[..., None] / 65535.0, 16)
    if mode in ("1", "L", "P", "PA", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        if mode == "1":
            im = im.convert("L")
        elif mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif mode == "PA":
            im = im.convert("RGBA")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        array = np.asarray(im, np.float32) / 255.0
        if array.ndim == 2:
            array = array[..., None]
        if array.shape[-1] == 2:  # Grey + alpha: keep as grey and alpha planes.
            array = np.concatenate([array[..., :1].repeat(3, -1), array[..., 1:]], axis=-1)
        return LoadedImage(array, 8)
    raise ImageError(
        f"{path}: unsupported image mode {mode!r} (supported: grey, RGB, RGBA, "
        "palette, 8- and 16-bit)"
    )


def _checked(path: str, loaded: LoadedImage) -> LoadedImage:
    h, w = loaded.pixels.shape[:2]
    if h == 0 or w == 0:
        raise ImageError(f"{path}: image has zero size ({w}x{h})")
    if loaded.pixels.shape[-1] == 2:
        p = loaded.pixels
        loaded.pixels = np.concatenate([p[..., :1].repeat(3, -1), p[..., 1:]], axis=-1)
    return loaded


def quantize(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """Floats in [0, 1] to uint8 or uint16 by rounding."""
    top = 65535.0 if bit_depth == 16 else 255.0
    dtype = np.uint16 if bit_depth == 16 else np.uint8
    out = np.empty(pixels.shape, dtype)
    # By blocks of rows: a whole 8000x8000 RGB float image would need three float temporaries
    # of its own size (0.7 GiB each) on top of itself.
    rows = max(1, (1 << 22) // max(1, pixels[0].size))
    for i in range(0, pixels.shape[0], rows):
        block = np.clip(pixels[i : i + rows], 0.0, 1.0) * top
        out[i : i + rows] = np.round(block, out=block)
    return out


def check_output_path(path: str, *, overwrite: bool, has_alpha: bool = False) -> None:
    """Refuses unsupported extensions, JPEG with alpha and existing files (unless overwrite)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in SUPPORTED_OUTPUTS:
        raise ImageError(f"{path}: output must be one of {', '.join(SUPPORTED_OUTPUTS)}")
    if has_alpha and ext != ".png":
        raise ImageError(f"{path}: JPEG cannot store the input's alpha channel; write a .png")
    if os.path.exists(path) and not overwrite:
        raise ImageError(f"{path} exists; pass --overwrite to replace it")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ImageError(f"{path}: folder {parent} does not exist")


def write_image(path: str, pixels: np.ndarray, bit_depth: int = 8, quality: int = 95) -> None:
    """Writes float (H, W, C) pixels in [0, 1] atomically (temp file, then rename).

    PNG keeps 16-bit depth; JPEG is always 8-bit.
    """
    ext = os.path.splitext(path)[1].lower()
    channels = pixels.shape[-1]
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        if ext == ".png" and bit_depth == 16:
            data = quantize(pixels, 16)
            h, w = data.shape[:2]
            writer = png.Writer(
                w, h, bitdepth=16, greyscale=channels in (1, 2), alpha=channels in (2, 4)
            )
            with open(tmp, "wb") as f:
                writer.write(f, data.reshape(h, w * channels))
        else:
            data = quantize(pixels, 8)
            image = Image.fromarray(data[..., 0] if channels == 1 else data)
            if ext == ".png":
                image.save(tmp, format="png")
            else:
                image.save(tmp, format="jpeg", quality=quality)
        os.replace(tmp, path)
    except OSError as e:
        raise ImageError(f"{path}: cannot write ({e})") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
