"""The one safe door through which every image enters reunite.

Ad crawls are hostile input: truncated downloads, HTML saved as ``.jpg``,
decompression bombs, CMYK scans, 16-bit PNGs and phone photos whose pixels are
stored sideways with an EXIF orientation tag. Every signal must see the same,
upright, 8-bit RGB picture, so all decoding happens here and nowhere else.

Errors are typed so that callers can report *why* a file was refused without
ever echoing its bytes.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps

# Formats a crawl realistically contains. Anything else (PDF, SVG, PSD, EPS...)
# is refused: each extra decoder is extra attack surface.
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})

# 50 megapixels covers every phone and DSLR photo; a bomb claims far more.
DEFAULT_MAX_PIXELS = 50_000_000
# Bytes are checked before decoding so that a huge upload never reaches Pillow.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

# Frames are counted (never decoded) up to this many: counting walks the file, and a
# 64 MB GIF of 1x1 frames holds millions of them. ``Picture.frames`` is capped here.
FRAME_COUNT_LIMIT = 1000
# Formats whose frame count sits in a header (cheap); the others are walked frame by frame.
_HEADER_FRAME_COUNT = frozenset({"PNG", "WEBP", "MPO"})

# Truncated files must fail loudly, never be half-decoded into grey garbage.
ImageFile.LOAD_TRUNCATED_IMAGES = False


class ImageError(ValueError):
    """Base of every refusal; ``code`` is a stable machine-readable reason."""

    code = "bad_image"


class UnsupportedImage(ImageError):
    """Not an image, or an image format outside the allow-list."""

    code = "unsupported_image"


class ImageTooLarge(ImageError):
    """Too many pixels or bytes: a decompression bomb or an unreasonable upload."""

    code = "image_too_large"


class CorruptImage(ImageError):
    """Recognised as an image but cannot be decoded (truncated, damaged, empty)."""

    code = "corrupt_image"


@dataclass(frozen=True)
class Picture:
    """A decoded, upright, 8-bit RGB picture and the facts about its source.

    ``rgb`` may be smaller than the stored image when a reduced-size decode was
    asked for; ``original_size`` is always the size of the stored image (after
    EXIF rotation). Derived views (grey, shrunk copies) are cached so that every
    signal computed from one picture shares the work.
    """

    rgb: np.ndarray
    format: str
    original_size: tuple[int, int]
    frames: int = 1
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    # True when the three channels are one luma plane repeated (a ``grey=True`` decode, or a
    # shrink of one): PDQ's luma and the hashes' grey square are then read from one channel.
    grey: bool = field(default=False, repr=False, compare=False)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the decoded pixels."""
        return (int(self.rgb.shape[1]), int(self.rgb.shape[0]))

    @cached_property
    def pil(self) -> Image.Image:
        return Image.fromarray(self.rgb, "RGB")

    @cached_property
    def gray(self) -> np.ndarray:
        """Luma (ITU-R 601, as Pillow's ``convert('L')``), uint8."""
        return np.asarray(self.pil.convert("L"))

    def shrunk(self, max_side: int) -> Picture:
        """A copy whose long side is at most ``max_side`` (cached per size)."""
        if max(self.size) <= max_side:
            return self
        key = ("shrunk", max_side)
        if key not in self._cache:
            # An area shrink computes each channel alike: equal channels stay equal.
            self._cache[key] = Picture(shrink(self.rgb, max_side), self.format,
                                       self.original_size, self.frames, grey=self.grey)
        return self._cache[key]


def shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Area-average downscale so the long side is ``max_side`` (OpenCV: ~10x Pillow)."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def load(
    source: bytes | str | Path,
    *,
    max_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    grey: bool = False,
) -> Picture:
    """Decode ``source`` (bytes or a file path) into an upright RGB :class:`Picture`.

    ``grey=True`` says that only luma matters to the caller (perceptual hashes):
    JPEGs are then decoded as their Y channel alone, skipping chroma upsampling
    and colour conversion (half the decode time); JPEG's Y is the same ITU-R 601
    luma the hashes compute, and the picture is still handed out as 3 equal
    channels so that every signal sees the same shape.

    ``max_side`` asks for a reduced-size decode: JPEGs are decoded at 1/2, 1/4
    or 1/8 scale by the codec itself (``draft``), which is several times faster
    than a full decode followed by a resize, and the result is then shrunk so
    that its long side is at most ``max_side``.
    """
    data = _read_bytes(source, max_bytes)
    if not data:
        raise CorruptImage("the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns between 1x and 2x its own limit; we enforce ours.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image declares too many pixels ({exc})") from None
    except Exception:
        if _looks_like_image(data):
            raise CorruptImage("the image header is damaged or the file is truncated") from None
        raise UnsupportedImage("not a recognised image file") from None

    fmt = (img.format or "").upper()
    if fmt not in ALLOWED_FORMATS:
        raise UnsupportedImage(f"image format {fmt or 'unknown'} is not accepted")
    width, height = img.size
    if width <= 0 or height <= 0:
        raise CorruptImage("the image has no pixels")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} pixels exceeds the limit of {max_pixels:,} pixels "
            "(possible decompression bomb)"
        )
    frames = count_frames(img, fmt, data)
    try:
        orientation = int(img.getexif().get(0x0112, 1))
    except Exception:  # a damaged EXIF block must not refuse a decodable photo
        orientation = 1

    try:
        if max_side is not None and fmt == "JPEG":
            # The orientation tag may swap width and height, but draft only
            # needs a lower bound on both sides.
            img.draft("L" if grey else "RGB", (max_side, max_side))
        elif grey and fmt == "JPEG":
            img.draft("L", img.size)
        img.load()  # first frame only for GIF/WebP/TIFF sequences
        img = ImageOps.exif_transpose(img) or img
        # Luma wanted and luma decoded (a JPEG's Y, a grey PNG): Pillow's L -> RGB -> L is the
        # identity (its weights sum to 1 exactly), so the round trip is skipped.
        rgb = img if grey and img.mode == "L" else _to_rgb(img)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image declares too many pixels ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        raise CorruptImage(f"the image data is damaged or truncated ({_short(exc)})") from None

    # Orientations 5-8 are quarter turns: the upright picture swaps its sides.
    original = (height, width) if orientation in {5, 6, 7, 8} else (width, height)
    if grey:
        luma = np.asarray(rgb if rgb.mode == "L" else rgb.convert("L"))
        if max_side is not None:
            luma = shrink(luma, max_side)
        pixels = cv2.cvtColor(luma, cv2.COLOR_GRAY2RGB)
    else:
        pixels = np.asarray(rgb)
        if max_side is not None:
            pixels = shrink(pixels, max_side)
    return Picture(np.ascontiguousarray(pixels), fmt, original, frames, grey=grey)


_MAGIC_PREFIXES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM",
                   b"II*\x00", b"MM\x00*")


def _looks_like_image(data: bytes) -> bool:
    """True when the bytes start like an allowed format (so a failure means damage)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return data.startswith(_MAGIC_PREFIXES)


def _read_bytes(source: bytes | str | Path, max_bytes: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > max_bytes:
            raise ImageTooLarge(f"{len(data):,} bytes exceeds the limit of {max_bytes:,} bytes")
        return data
    path = Path(source)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UnsupportedImage("the file does not exist") from None
    if not path.is_file():
        raise UnsupportedImage("not a regular file")
    if size > max_bytes:
        raise ImageTooLarge(f"{size:,} bytes exceeds the limit of {max_bytes:,} bytes")
    return path.read_bytes()


def count_frames(img: Image.Image, fmt: str, data: bytes, limit: int = FRAME_COUNT_LIMIT) -> int:
    """Frames of an image sequence, at most ``limit``, without decoding any of them.

    Pillow's ``n_frames`` walks every frame of a GIF (and seeking composites each
    one onto the canvas), so a 230 kB GIF of 10,000 1x1 frames on a 7000x7000
    canvas cost seconds before anything useful was decoded. GIFs are counted
    from their block structure here; other formats have the count in a header
    (PNG, WebP, MPO) or in a chain of directories (TIFF) walked up to ``limit``.
    """
    if fmt == "GIF":
        return _gif_frames(data, limit)
    if fmt in _HEADER_FRAME_COUNT:
        return max(1, min(int(getattr(img, "n_frames", 1) or 1), limit))
    if fmt != "TIFF":
        return 1
    count = 1
    try:
        while count < limit:
            img.seek(count)  # TIFF: reads the next directory, decodes nothing
            count += 1
    except Exception:  # EOFError at the end; a damaged later directory counts as the end too
        pass
    img.seek(0)
    return count


def _gif_frames(data: bytes, limit: int) -> int:
    """Image descriptors in a GIF's block stream, at most ``limit`` (reads block sizes, never pixels)."""
    size = len(data)
    if size < 13:
        return 1
    flags = data[10]
    pos = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)  # after the global colour table
    count = 0
    while pos < size and count < limit:
        block = data[pos]
        if block == 0x21:  # extension: introducer, label, then data sub-blocks
            pos += 2
        elif block == 0x2C and pos + 10 <= size:  # image descriptor (+ local colour table, LZW size)
            count += 1
            packed = data[pos + 9]
            pos += 11 + (3 * (2 << (packed & 7)) if packed & 0x80 else 0)
        else:  # trailer (0x3B) or damage: stop counting
            break
        while pos < size:  # data sub-blocks up to the zero-length terminator
            length = data[pos]
            pos += 1 + length
            if length == 0:
                break
    return max(1, count)


def declared_pixels(data: bytes) -> int:
    """Width x height an image's header declares (0 when it has no readable header); decodes nothing."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except Exception:
        return 0
    return max(0, width) * max(0, height)


def _palette_on_white(img: Image.Image) -> Image.Image:
    """A palette image over white, composited once per palette entry instead of once per pixel.

    Equal to converting to RGBA and compositing on white, but one C pass over
    the pixels instead of four: an animated GIF's canvas may be 50 megapixels
    of a single transparent colour around one tiny frame.
    """
    palette = img.getpalette("RGB") or []
    colours = np.array(palette, dtype=np.float64).reshape(-1, 3)
    alpha = np.full(len(colours), 255.0)
    if img.palette is not None and img.palette.mode == "RGBA":
        rgba = img.getpalette("RGBA") or []
        alpha[:] = np.array(rgba, dtype=np.float64).reshape(-1, 4)[: len(colours), 3]
    transparency = img.info.get("transparency")
    if isinstance(transparency, int) and 0 <= transparency < len(alpha):
        alpha[transparency] = 0.0
    elif isinstance(transparency, bytes | bytearray):
        given = np.frombuffer(bytes(transparency), dtype=np.uint8)[: len(alpha)]
        alpha[: len(given)] = given
    weight = alpha[:, None] / 255.0
    composited = np.rint(colours * weight + 255.0 * (1.0 - weight)).clip(0, 255).astype(np.uint8)
    flat = img.copy() if img.readonly else img
    flat.info.pop("transparency", None)
    flat.putpalette(composited.tobytes(), "RGB")
    return flat.convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, preserving what a person would see."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        # 16-bit greys: Pillow's convert('L') clips at 255, which turns most
        # 16-bit photos white. Rescale by the actual bit depth instead.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        grey = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return Image.fromarray(((arr - lo) * scale).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        return _palette_on_white(img)
    if mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in {"RGBA", "LA", "La", "RGBa"}:
        # Transparent areas become white, as a browser shows them on a page.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # CMYK, YCbCr, LAB, L, 1 and 48-bit RGB all have a direct conversion.
    return img.convert("RGB")


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text[:120]
