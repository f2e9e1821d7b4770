"""Turn a drawn or uploaded digit into an MNIST-style 28x28 image.

MNIST's own recipe: the ink is cropped to its bounding box, scaled (keeping the aspect ratio) to fit a
20x20 box, and placed in a 28x28 field so that its centre of mass sits at the centre; white ink on black,
values in [0, 1].
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_DECLARED_PIXELS = 64_000_000  # a header claiming more is refused before anything is decoded
MAX_PIXELS = 16_000_000  # at most this many pixels are decoded (after a JPEG's decode-time downscaling)
MAX_SIDE = 1024  # decoded images are reduced (box average, still 8- or 16-bit) to at most this long side

_NATIVE = {"L", "LA", "RGB", "RGBA", "I", "F"}  # modes that Image.reduce works on


class DigitImageError(ValueError):
    """An upload that is not an image, is too large, or holds no digit."""


def load_image(data: bytes) -> np.ndarray:
    """Decode image bytes to a float grey-scale array in [0, 1], at most ``MAX_SIDE`` pixels on its long side.

    The pixel count is bounded before decoding, a JPEG is downscaled by its decoder (``Image.draft``) and any
    other image is reduced in its own integer mode before the (small) float conversion. 16-bit images keep
    their range; transparent pixels become paper that contrasts with the opaque ink (white paper under dark
    ink, black under light ink)."""
    if not data:
        raise DigitImageError("the upload is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_DECLARED_PIXELS:
                raise DigitImageError(f"the image is too large ({img.width}x{img.height} pixels)")
            if img.format == "JPEG":
                img.draft("L", (MAX_SIDE, MAX_SIDE))  # decode at 1/2, 1/4 or 1/8 scale when that suffices
            if img.width * img.height > MAX_PIXELS:
                raise DigitImageError(f"the image is too large ({img.width}x{img.height} pixels)")
            img.load()
            full_scale = 65535.0 if img.mode.startswith("I;16") else None
            return _grey(_reduced(img), full_scale)
    except Image.DecompressionBombError as exc:
        raise DigitImageError(f"the image is too large: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DigitImageError):
            raise
        raise DigitImageError(f"not a readable image (PNG, JPEG, GIF, BMP, WebP): {exc}") from None


def _has_alpha(img: Image.Image) -> bool:
    return "A" in img.getbands() or "a" in img.getbands() or "transparency" in img.info


def _reduced(img: Image.Image) -> Image.Image:
    """``img`` in a mode that keeps its information (16-bit stays 32-bit integer), at most MAX_SIDE long."""
    if img.mode.startswith("I;16"):
        img = img.convert("I")
    elif img.mode not in _NATIVE:
        img = img.convert("LA" if _has_alpha(img) else "L")
    factor = -(-max(img.size) // MAX_SIDE)
    return img.reduce(factor) if factor > 1 else img


def _grey(img: Image.Image, full_scale: float | None) -> np.ndarray:
    """Grey levels in [0, 1]; ``full_scale`` is white for 16-bit sources (else guessed for I and F)."""
    alpha = None
    if img.mode in ("I", "F"):
        grey = np.asarray(img, dtype=np.float32)
        full_scale = full_scale or (65535.0 if grey.max() > 255 else 255.0)
        grey = np.clip(grey / full_scale, 0.0, 1.0)
    else:
        if _has_alpha(img):
            img = img.convert("LA")
            alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
        grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    if alpha is not None and alpha.min() < 1.0:
        opaque = alpha >= 0.5
        light_ink = opaque.any() and float(np.median(grey[opaque])) >= 0.5
        paper = 0.0 if light_ink else 1.0
        grey = grey * alpha + paper * (1.0 - alpha)
    return grey.astype(np.float32)


def mnist_style(grey: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """MNIST preprocessing of a grey-scale image in [0, 1], with either dark or light ink."""
    if grey.ndim != 2 or grey.size == 0:
        raise DigitImageError("expected a two-dimensional grey-scale image")
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    paper = float(np.median(border))
    ink = np.clip(paper - grey if paper > 0.5 else grey - paper, 0.0, 1.0)  # light paper: dark ink, inverted
    rows, cols = np.nonzero(ink > threshold)
    if rows.size == 0:
        raise DigitImageError("the image is empty: no digit found (draw or upload a digit)")
    crop = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    crop /= max(float(crop.max()), 1e-6)
    h, w = crop.shape
    scale = 20.0 / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    small = np.clip(small, 0.0, 1.0)
    field = np.zeros((28, 28), dtype=np.float32)
    top, left = (28 - small.shape[0]) // 2, (28 - small.shape[1]) // 2
    field[top : top + small.shape[0], left : left + small.shape[1]] = small
    total = field.sum()
    ys, xs = np.indices(field.shape)
    # shift the centre of mass to the centre, but never push ink out of the 28x28 field
    h_small, w_small = small.shape
    dy = int(np.clip(round(13.5 - (ys * field).sum() / total), -top, 28 - top - h_small))
    dx = int(np.clip(round(13.5 - (xs * field).sum() / total), -left, 28 - left - w_small))
    shifted = np.zeros_like(field)
    src_y = slice(max(0, -dy), min(28, 28 - dy))
    src_x = slice(max(0, -dx), min(28, 28 - dx))
    dst_y = slice(max(0, dy), min(28, 28 + dy))
    dst_x = slice(max(0, dx), min(28, 28 + dx))
    shifted[dst_y, dst_x] = field[src_y, src_x]
    return shifted
