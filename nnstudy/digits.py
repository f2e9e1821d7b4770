"""Turn a drawn or uploaded image into the dataset's 28x28 input (``preprocess``, by data.preprocess).

``digits`` is MNIST's recipe (``mnist_style``), for pen strokes; ``photo`` is Fashion-MNIST's, for a picture of
one object (``photo_style``); ``none`` only scales the image (``plain_style``).

MNIST's own recipe: the ink is cropped to its bounding box, scaled (keeping the aspect ratio) to fit a
20x20 box, and placed in a 28x28 field so that its centre of mass sits at pixel (14, 14); white ink on black,
values in [0, 1].
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

MAX_DECLARED_PIXELS = 64_000_000  # a header claiming more is refused before anything is decoded
MAX_PIXELS = 16_000_000  # at most this many pixels are decoded (after a JPEG's decode-time downscaling)
MAX_SIDE = 1024  # decoded images are reduced (box average, still 8- or 16-bit) to at most this long side

MIN_CONTRAST = 0.08  # ink must differ from the paper by at least this much (of the full grey range)
NOISE_FLOOR_SIGMAS = 5.0  # ... and by this many times the paper's noise (after the blur)
MNIST_CENTRE = 14.0  # MNIST's centre of mass, in pixel indices (its training digits: 14.00 +- 0.29 both ways)
INK_PEAK_PERCENTILE = 75  # this percentile of the ink is taken as full ink (MNIST strokes have a saturated core)
MIN_PART = 0.05  # strokes smaller than this fraction of the largest one are specks, not part of the digit
_NATIVE = {"L", "LA", "RGB", "RGBA", "I", "F"}  # modes that Image.reduce works on
_ORIENTATION = {  # EXIF orientation (tag 0x0112) -> the transpose that makes the picture upright
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")  # the only decoders Pillow may use on an upload
FORMAT_NAMES = "PNG, JPEG, GIF, BMP or WebP"
OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


class DigitImageError(ValueError):
    """An upload that is not an image, is too large, or holds nothing to recognise."""


PREPROCESSING = ("digits", "photo", "none")


def load_image(data: bytes) -> np.ndarray:
    """Decode image bytes to a float grey-scale array in [0, 1], at most ``MAX_SIDE`` pixels on its long side.

    The pixel count is bounded before decoding, a JPEG is downscaled by its decoder (``Image.draft``) and any
    other image is reduced in its own integer mode before the (small) float conversion. 16-bit images keep
    their range; transparent pixels become paper that contrasts with the opaque ink (white paper under dark
    ink, black under light ink); an EXIF orientation (a phone photo taken sideways) is applied."""
    if not data:
        raise DigitImageError("the upload is empty")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            if img.width * img.height > MAX_DECLARED_PIXELS:
                raise DigitImageError(f"the image is too large ({img.width}x{img.height} pixels)")
            if img.format == "JPEG":
                img.draft("L", (MAX_SIDE, MAX_SIDE))  # decode at 1/2, 1/4 or 1/8 scale when that suffices
            if img.width * img.height > MAX_PIXELS:
                raise DigitImageError(f"the image is too large ({img.width}x{img.height} pixels)")
            img.load()
            full_scale = 65535.0 if img.mode.startswith("I;16") else None
            small = _reduced(img)
            turn = _ORIENTATION.get(img.getexif().get(0x0112, 1))  # phone photos are often stored sideways
            return _grey(small.transpose(turn) if turn is not None else small, full_scale)
    except Image.DecompressionBombError as exc:
        raise DigitImageError(f"the image is too large: {exc}") from None
    except UnidentifiedImageError:  # its message holds the repr of Pillow's file object
        raise DigitImageError(f"not a readable image: the upload is not {FORMAT_NAMES}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, DigitImageError):
            raise
        raise DigitImageError(f"not a readable image ({FORMAT_NAMES}): {without_reprs(str(exc))}") from None


def without_reprs(message: str) -> str:
    """A decoder's message without Python object reprs (``<_io.BytesIO object at 0x...>``)."""
    return OBJECT_REPR.sub("the upload", message)


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


def mnist_style(grey: np.ndarray) -> np.ndarray:
    """MNIST preprocessing of a grey-scale image in [0, 1], with either dark or light ink, drawn or photographed.

    The ink is separated from the paper robustly: a light blur, then the paper's lighting is fitted as a
    smooth surface (so a gradient or vignette is not taken for ink), then an Otsu threshold above a noise
    floor (several times the paper's own noise, and never below ``MIN_CONTRAST``) marks the ink, and specks
    much smaller than the largest stroke are dropped before cropping."""
    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or grey.size == 0:
        raise DigitImageError("expected a two-dimensional grey-scale image")
    ink, mask = _ink(grey)
    if not mask.any():
        raise DigitImageError("the image is empty: no digit found (draw or upload a digit)")
    rows, cols = np.nonzero(ink > 0)
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
    dy = int(np.clip(round(MNIST_CENTRE - (ys * field).sum() / total), -top, 28 - top - h_small))
    dx = int(np.clip(round(MNIST_CENTRE - (xs * field).sum() / total), -left, 28 - left - w_small))
    shifted = np.zeros_like(field)
    src_y = slice(max(0, -dy), min(28, 28 - dy))
    src_x = slice(max(0, -dx), min(28, 28 - dx))
    dst_y = slice(max(0, dy), min(28, 28 + dy))
    dst_x = slice(max(0, dx), min(28, 28 + dx))
    shifted[dst_y, dst_x] = field[src_y, src_x]
    return shifted


def preprocess(grey: np.ndarray, kind: str = "digits", item: str = "digit") -> np.ndarray:
    """The network's 28x28 input for a grey image in [0, 1], by the dataset's recipe ``kind``; ``item`` names
    what one image shows, in the message for an empty image."""
    if kind == "digits":
        return mnist_style(grey)
    if kind == "photo":
        return photo_style(grey, item)
    if kind == "none":
        return plain_style(grey)
    raise ValueError(f"unknown preprocessing {kind!r}; choose one of {', '.join(PREPROCESSING)}")


def _light_on_dark(grey: np.ndarray) -> np.ndarray:
    """The image with its background dark: inverted when its border (the background) is the lighter side."""
    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or grey.size == 0:
        raise DigitImageError("expected a two-dimensional grey-scale image")
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    return 1.0 - grey if float(np.median(border)) > 0.5 else grey


def plain_style(grey: np.ndarray) -> np.ndarray:
    """The whole image scaled to 28x28, background dark; no cropping or centring."""
    light = _light_on_dark(grey)
    image = Image.fromarray(light).resize((28, 28), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)


def photo_style(grey: np.ndarray, item: str = "object") -> np.ndarray:
    """Fashion-MNIST's recipe for a picture of one object on a plain background: background made black
    (inverted when it is light), the object (Otsu's threshold above the background, at least
    ``MIN_CONTRAST``) cropped to its bounding box with its grey levels kept (less the background's), scaled
    so that the longer side is 28 pixels and centred by that box, not by its centre of mass."""
    light = _light_on_dark(grey)
    border = np.concatenate([light[0], light[-1], light[:, 0], light[:, -1]])
    smooth = ndimage.gaussian_filter(light, sigma=max(0.5, max(light.shape) / 500), mode="nearest")
    above = np.clip(smooth - float(np.median(border)), 0.0, 1.0)
    mask = above > max(MIN_CONTRAST, _otsu(above))  # the object against its background, however noisy
    if not mask.any():
        raise DigitImageError(
            f"the image is empty: no {item} found (upload a photo of one {item} on a plain background, or draw one)"
        )
    rows, cols = np.nonzero(mask)
    crop = np.clip(light - float(np.median(border)), 0.0, 1.0)[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    crop /= max(float(crop.max()), 1e-6)
    h, w = crop.shape
    scale = 28.0 / max(h, w)
    size = (max(1, min(28, round(w * scale))), max(1, min(28, round(h * scale))))
    small = np.clip(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32), 0, 1)
    field = np.zeros((28, 28), dtype=np.float32)
    top, left = (29 - small.shape[0]) // 2, (29 - small.shape[1]) // 2  # an odd margin: one more above and left
    field[top : top + small.shape[0], left : left + small.shape[1]] = small
    return field


def _ink(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ink in [0, 1], light on black; the mask of the digit's strokes) for a grey image with any paper."""
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    paper = float(np.median(border))
    low, high = np.percentile(grey, [1, 99])
    light = 1.0 - grey if paper - low > high - paper else grey  # dark ink on light paper is inverted
    smooth = ndimage.gaussian_filter(light, sigma=max(0.6, max(grey.shape) / 500), mode="nearest")
    ink, noise = _minus_paper(smooth)
    floor = max(MIN_CONTRAST, NOISE_FLOOR_SIGMAS * noise)
    above = ink > max(floor, _otsu(ink))
    labels, count = ndimage.label(above, structure=np.ones((3, 3)))
    if count == 0:
        return np.zeros_like(ink), above
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= MIN_PART * sizes.max()) + 1
    mask = np.isin(labels, keep)
    near = ndimage.binary_dilation(mask, iterations=max(2, round(3 * max(grey.shape) / 500)))
    peak = max(float(np.percentile(ink[mask], INK_PEAK_PERCENTILE)), 1e-6)  # a stroke's core is full ink
    scaled = np.where(ink > floor, np.clip(ink / peak, 0.0, 1.0), 0.0)
    return np.where(near, scaled, 0.0).astype(np.float32), mask


def _minus_paper(image: np.ndarray, blocks: int = 8) -> tuple[np.ndarray, float]:
    """``image`` less its paper, and the paper's noise (a robust standard deviation of what is left of it).

    The ink is bright, so the paper of each of ``blocks`` x ``blocks`` tiles is its 25th percentile; a
    quadratic surface in x and y is fitted to those tiles, dropping tiles that lie well above the lower quartile
    of the tiles kept so far (mostly ink)."""
    h, w = image.shape
    gy, gx = min(blocks, h), min(blocks, w)
    tiles = image[: h // gy * gy, : w // gx * gx].reshape(gy, h // gy, gx, w // gx)
    paper_level = np.percentile(tiles, 25, axis=(1, 3)).ravel().astype(np.float64)
    ys, xs = np.linspace(-1, 1, h, dtype=np.float32)[:, None], np.linspace(-1, 1, w, dtype=np.float32)[None, :]

    def surface(coef: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return coef[0] + coef[1] * x + coef[2] * y + coef[3] * x * x + coef[4] * x * y + coef[5] * y * y

    ty, tx = np.meshgrid(np.linspace(-1, 1, gy) * (1 - 1 / gy), np.linspace(-1, 1, gx) * (1 - 1 / gx), indexing="ij")
    design = np.stack([surface(np.eye(6)[k], ty, tx).ravel() for k in range(6)], axis=1)
    keep = np.ones(paper_level.size, dtype=bool)
    coef = np.zeros(6)
    for _ in range(4):
        chosen = design[keep]  # least squares by the 6x6 normal equations (ridge-damped for few tiles)
        coef = np.linalg.solve(chosen.T @ chosen + 1e-6 * np.eye(6), chosen.T @ paper_level[keep])
        residual = paper_level - design @ coef
        # centred on the lower quartile of the tiles kept so far, not their median: when a bold digit covers
        # more than half of the tiles, their median is ink, and the paper fitted to it erased the digit
        kept = residual[keep]
        spread = 1.4826 * float(np.median(np.abs(kept - np.median(kept))))
        keep = residual <= float(np.percentile(kept, 25)) + max(3 * spread, 0.02)
    ink = image - surface(coef.astype(np.float32), ys, xs)
    sample = ink[:: max(1, h // 128), :: max(1, w // 128)]
    noise = 1.4826 * float(np.median(np.abs(sample - np.median(sample))))
    return ink, noise


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold (the split of a 256-bin histogram that maximises the between-class variance)."""
    counts, edges = np.histogram(np.clip(values, 0.0, 1.0), bins=256, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    total = weight[-1]
    mass = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = mass / weight
        mean_high = (mass[-1] - mass) / (total - weight)
        between = np.nan_to_num(weight * (total - weight) * (mean_low - mean_high) ** 2)
    return float(centres[int(np.argmax(between))]) if between.max() > 0 else 1.0
