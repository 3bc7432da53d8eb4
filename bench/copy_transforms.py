"""The copydet suite's 21 edits, re-implemented with Pillow/OpenCV to make new suites.

Used by bench/copy_bench.py to check that the copy-detection numbers hold on
photos the copydet suite does not contain (the issue asks for that, so that
nothing is tuned to the suite's files). The parameters follow
../shared/bench/README.md; AugLy's exact templates (emoji images, the web
screenshot, the font) are replaced by drawn equivalents of the same size.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

Edit = Callable[[Image.Image, np.random.Generator], Image.Image]
PHRASES = ["NEW IN TOWN", "call me 24/7", "sweet & discreet", "visiting this week", "text only"]


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _crop(img: Image.Image, fx: float, fy: float, x0: float, y0: float) -> Image.Image:
    w, h = img.size
    cw, ch = int(w * fx), int(h * fy)
    left, top = int((w - cw) * x0), int((h - ch) * y0)
    return img.crop((left, top, left + cw, top + ch))


def rotate_crop(img: Image.Image, degrees: float) -> Image.Image:
    """Rotate and keep the largest axis-aligned rectangle without corners (AugLy semantics)."""
    w, h = img.size
    a = math.radians(abs(degrees))
    sin, cos = math.sin(a), math.cos(a)
    if min(w, h) <= 2 * sin * cos * max(w, h):
        x = 0.5 * min(w, h)
        wr, hr = (x / sin, x / cos) if w >= h else (x / cos, x / sin)
    else:
        c2 = cos * cos - sin * sin
        wr, hr = (w * cos - h * sin) / c2, (h * cos - w * sin) / c2
    out = img.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)
    cx, cy = out.width / 2, out.height / 2
    return out.crop((int(cx - wr / 2), int(cy - hr / 2), int(cx + wr / 2), int(cy + hr / 2)))


def text_overlay(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=max(8, int(0.09 * img.height)))
    text = PHRASES[int(rng.integers(len(PHRASES)))]
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    x = int(rng.integers(0, max(1, img.width - (x1 - x0))))
    y = int(rng.integers(0, max(1, img.height - (y1 - y0))))
    draw.text((x, y), text, font=font, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return out


def emoji_overlay(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    out = img.copy()
    draw = ImageDraw.Draw(out)
    s = int(0.3 * img.height)
    x = int(rng.integers(0, max(1, img.width - s)))
    y = int(rng.integers(0, max(1, img.height - s)))
    face = tuple(int(v) for v in rng.integers(120, 256, 3))
    draw.ellipse((x, y, x + s, y + s), fill=face, outline=(40, 30, 0), width=max(1, s // 30))
    e = s // 8
    draw.ellipse((x + s // 3 - e, y + s // 3 - e, x + s // 3 + e, y + s // 3 + e), fill=(40, 30, 0))
    draw.ellipse((x + 2 * s // 3 - e, y + s // 3 - e, x + 2 * s // 3 + e, y + s // 3 + e), fill=(40, 30, 0))
    draw.arc((x + s // 4, y + s // 3, x + 3 * s // 4, y + 3 * s // 4), 20, 160, fill=(150, 20, 20),
             width=max(1, s // 20))
    return out


def screenshot(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The photo as a post on a 1200x736 web page (header, sidebar, text lines)."""
    page = Image.new("RGB", (1200, 736), (250, 250, 250))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, 1200, 70), fill=tuple(int(v) for v in rng.integers(0, 120, 3)))
    font = ImageFont.load_default(size=18)
    for i, y in enumerate(range(110, 700, 34)):
        draw.text((760, y), PHRASES[i % len(PHRASES)], fill=(60, 60, 60), font=font)
    shown = img.copy()
    shown.thumbnail((640, 600), Image.Resampling.LANCZOS)
    page.paste(shown, (60 + int(rng.integers(0, 40)), 100 + int(rng.integers(0, 20))))
    return page


def stripes(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(img).astype(np.float32)
    period = max(2, int(0.15 * min(img.size)))
    width = max(1, int(0.2 * period))
    rows = (np.arange(img.height) % period) < width
    arr[rows] = 0.2 * arr[rows] + 0.8 * 255
    return Image.fromarray(arr.astype(np.uint8))


def perspective(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(-0.1, 0.1, (4, 2)) * np.float32([w, h])
    dst = np.float32(src + jitter)
    dst -= dst.min(axis=0)
    size = (int(np.ceil(dst[:, 0].max())), int(np.ceil(dst[:, 1].max())))
    m = cv2.getPerspectiveTransform(src, dst)
    out = cv2.warpPerspective(np.asarray(img), m, size, flags=cv2.INTER_LINEAR)
    return Image.fromarray(out)


def noise(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, 10, (img.height, img.width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def letterbox(img: Image.Image, _rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    cw, ch = (w, round(w * 9 / 16)) if w / h > 16 / 9 else (round(h * 16 / 9), h)
    canvas = Image.new("RGB", (cw, ch), (0, 0, 0))
    canvas.paste(img, ((cw - w) // 2, (ch - h) // 2))
    return canvas


def pad(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    return ImageOps.expand(img, (int(0.2 * w), int(0.2 * h), int(0.2 * w), int(0.2 * h)), fill=colour)


def aspect(img: Image.Image, _rng: np.random.Generator) -> Image.Image:
    w, h = img.size
    f = math.sqrt(1.5)
    return img.resize((round(w * f), round(h / f)), Image.Resampling.LANCZOS)


EDITS: dict[str, Edit] = {
    "jpeg_q20": lambda im, r: _jpeg(im, 20),
    "resize_025": lambda im, r: im.resize((max(1, im.width // 4), max(1, im.height // 4)),
                                          Image.Resampling.LANCZOS),
    "blur_r2": lambda im, r: im.filter(ImageFilter.GaussianBlur(2)),
    "noise_s10": noise,
    "brightness_15": lambda im, r: ImageEnhance.Brightness(im).enhance(1.5),
    "contrast_06": lambda im, r: ImageEnhance.Contrast(im).enhance(0.6),
    "grayscale": lambda im, r: im.convert("L").convert("RGB"),
    "hflip": lambda im, r: ImageOps.mirror(im),
    "rot90": lambda im, r: im.rotate(90, expand=True),
    "rotate_10": lambda im, r: rotate_crop(im, 10),
    "crop_center_80": lambda im, r: _crop(im, 0.8, 0.8, 0.5, 0.5),
    "crop_offset_70": lambda im, r: _crop(im, 0.7, 0.7, float(r.integers(2)), float(r.integers(2))),
    "crop_50": lambda im, r: _crop(im, 0.5, 0.5, float(r.random()), float(r.random())),
    "pad_20": pad,
    "letterbox_16x9": letterbox,
    "text_overlay": text_overlay,
    "emoji_overlay": emoji_overlay,
    "screenshot": screenshot,
    "stripes": stripes,
    "aspect_150": aspect,
    "perspective_010": perspective,
}


def make_query(original: Image.Image, edit: str, rng: np.random.Generator) -> bytes:
    """The suite's recipe: original shrunk to a long side <= 400 px, edited, saved as JPEG."""
    small = original.convert("RGB")
    small.thumbnail((400, 400), Image.Resampling.LANCZOS)
    out = EDITS[edit](small, rng)
    buf = io.BytesIO()
    quality = 20 if edit == "jpeg_q20" else 90
    out.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()
