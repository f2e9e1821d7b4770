"""Turn a drawn or uploaded digit into an MNIST-style 28x28 image.

MNIST's own recipe: the ink is cropped to its bounding box, scaled (keeping the aspect ratio) to fit a
20x20 box, and placed in a 28x28 field so that its centre of mass sits at the centre; white ink on black,
values in [0, 1].
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 16_000_000  # larger uploads are refused before they are decoded in full


class DigitImageError(ValueError):
    """An upload that is not an image, is too large, or holds no digit."""


def load_image(data: bytes) -> np.ndarray:
    """Decode image bytes to a float grey-scale array in [0, 1] (transparent pixels become white paper)."""
    if not data:
        raise DigitImageError("the upload is empty")
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PIXELS:
                raise DigitImageError(f"the image is too large ({img.width}x{img.height} pixels)")
            img.load()
            if img.mode in ("RGBA", "LA", "P"):
                img = img.convert("RGBA")
                paper = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(paper, img)
            grey = img.convert("L")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
        if isinstance(exc, DigitImageError):
            raise
        raise DigitImageError(f"not a readable image (PNG, JPEG, GIF, BMP, WebP): {exc}") from None
    return np.asarray(grey, dtype=np.float32) / 255.0


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
