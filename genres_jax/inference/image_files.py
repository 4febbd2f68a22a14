"""Reading and writing images for the command-line tools, keeping 8- or 16-bit depth.

Pillow reads and writes everything except 16-bit colour PNGs, which it reduces to 8 bits;
those go through pypng. Images come back as float32 arrays in [0, 1] of shape (H, W, C) with
C in {1, 3, 4} (grey, RGB, RGBA) and their bit depth. Failures raise `ImageError` with a message
that names the file; writes are atomic and exclusive (`genres_jax.cli.outputs`), so a failed
write never leaves a damaged file and two writers of one path never both succeed.

Reading applies the EXIF orientation (as ``PIL.ImageOps.exif_transpose`` does), so a phone's
portrait JPEG comes back upright and its output needs no orientation tag. An image whose
header claims more pixels than memory can hold, or more than Pillow's limit for untrusted
files, is refused before it is decoded; a PNG whose compressed data ends before the pixels its
header claims is refused as truncated (Pillow would fill the rest with black).
"""

from __future__ import annotations

import dataclasses
import os
import struct
import warnings
import zlib

import numpy as np
import png
from PIL import Image, ImageOps, UnidentifiedImageError

from genres_jax import UserError
from genres_jax.cli import memory, outputs

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


# Bytes per decoded pixel (float32 planes, plus the decoder's own copy) when budgeting a read.
_READ_BYTES_PER_PIXEL = 4 * 4 + 8


def _check_claimed_size(path: str, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"{path}: image has zero size ({width}x{height})")
    limit = Image.MAX_IMAGE_PIXELS
    if limit and width * height > 2 * limit:
        raise ImageError(
            f"{path}: its header claims {width}x{height} pixels, more than the "
            f"{2 * limit / 1e6:.0f} megapixels Pillow decodes from an untrusted file"
        )
    memory.check_fits(
        width * height * _READ_BYTES_PER_PIXEL, f"{path}: decoding {width}x{height} pixels"
    )


_PNG_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # Colour type -> samples per pixel.


def _png_is_complete(path: str) -> bool:
    """Whether the IDAT stream decompresses to at least the bytes the header's size needs."""
    with open(path, "rb") as f:
        f.read(8)
        header = f.read(8 + 13)
        width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header[8:21])
        f.read(4)
        samples = _PNG_SAMPLES.get(colour)
        if samples is None:
            return True  # Not ours to judge; the decoder will refuse it.
        bits = samples * depth
        if interlace:
            passes = ((8, 8, 0, 0), (8, 8, 4, 0), (8, 4, 0, 4), (4, 4, 2, 0), (4, 2, 0, 2))
            passes += ((2, 2, 1, 0), (2, 1, 0, 1))
            need = 0
            for dx, dy, x0, y0 in passes:
                w = (width - x0 + dx - 1) // dx if width > x0 else 0
                h = (height - y0 + dy - 1) // dy if height > y0 else 0
                if w and h:
                    need += h * (1 + (w * bits + 7) // 8)
        else:
            need = height * (1 + (width * bits + 7) // 8)
        decoder = zlib.decompressobj()
        got = 0
        while got < need:
            head = f.read(8)
            if len(head) < 8:
                return False
            length, kind = struct.unpack(">I4s", head)
            data = f.read(length)
            f.read(4)
            if kind == b"IEND":
                return False
            if kind == b"IDAT":
                try:
                    got += len(decoder.decompress(data, max(1, need - got)))
                    while decoder.unconsumed_tail and got < need:
                        got += len(decoder.decompress(decoder.unconsumed_tail, need - got))
                except zlib.error:
                    return False
        return True


def _read_png16(path: str) -> LoadedImage | None:
    """16-bit PNGs through pypng; None for any other PNG."""
    reader = png.Reader(filename=path)
    width, height, rows, info = reader.asDirect()
    if info["bitdepth"] != 16:
        return None
    _check_claimed_size(path, width, height)
    planes = info["planes"]
    array = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, planes)
    return LoadedImage(array.astype(np.float32) / 65535.0, 16)


def read_image(path: str) -> LoadedImage:
    """The image at ``path`` as floats in [0, 1] with its channels (grey/RGB + alpha) and depth."""
    if os.path.isdir(path):
        raise ImageError(f"{path} is a folder, not an image file")
    if not os.path.isfile(path):
        raise ImageError(f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise ImageError(f"{path}: not readable (permission denied)")
    if os.path.getsize(path) == 0:
        raise ImageError(f"{path}: empty file, not an image")
    try:
        with open(path, "rb") as f:
            is_png = f.read(8) == _PNG_SIGNATURE
        if is_png:
            loaded = _read_png16(path)
            if loaded is not None:
                return _checked(path, loaded)
        with warnings.catch_warnings():
            # The size is checked here against memory; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_claimed_size(path, *im.size)
                if is_png and not _png_is_complete(path):
                    raise ImageError(
                        f"{path}: truncated PNG (its data ends before the {im.size[0]}x"
                        f"{im.size[1]} pixels its header claims)"
                    )
                im.load()
                upright = ImageOps.exif_transpose(im)
                return _checked(path, _from_pil(path, upright))
    except (ImageError, memory.MemoryBudgetError):
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({e})") from None
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


def check_output_path(
    path: str, *, overwrite: bool, has_alpha: bool = False, inputs: tuple[str, ...] = ()
) -> None:
    """Refuses unsupported extensions, JPEG with alpha, and every unusable location
    (`genres_jax.cli.outputs.check_file`)."""
    if os.path.isdir(path):
        raise ImageError(f"OUTPUT {path} is a folder; name an image file in it")
    ext = os.path.splitext(path)[1].lower()
    if ext not in SUPPORTED_OUTPUTS:
        raise ImageError(f"{path}: output must be one of {', '.join(SUPPORTED_OUTPUTS)}")
    if has_alpha and ext != ".png":
        raise ImageError(f"{path}: JPEG cannot store the input's alpha channel; write a .png")
    outputs.check_file(path, overwrite=overwrite, inputs=inputs)


def written_bit_depth(path: str, bit_depth: int) -> int:
    """The depth `write_image` stores: PNG keeps 16 bits, JPEG is always 8."""
    return bit_depth if os.path.splitext(path)[1].lower() == ".png" else 8


def write_image(
    path: str,
    pixels: np.ndarray,
    bit_depth: int = 8,
    quality: int = 95,
    *,
    overwrite: bool = True,
) -> None:
    """Writes float (H, W, C) pixels in [0, 1] atomically; without ``overwrite``, exclusively.

    PNG keeps 16-bit depth; JPEG is always 8-bit.
    """
    ext = os.path.splitext(path)[1].lower()
    channels = pixels.shape[-1]

    def write(tmp: str) -> None:
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
                # zlib level 1, OpenCV's default: a 4K PNG in 0.4 s instead of 1.2 s at
                # Pillow's 6, for files about a quarter larger (README, "Efficient
                # super-resolution"); at 6 writing took longer than the efficient models.
                image.save(tmp, format="png", compress_level=1)
            else:
                image.save(tmp, format="jpeg", quality=quality)

    outputs.write_file(path, write, overwrite=overwrite)
