"""Small pictures for lists (the queue, search results): shrunk on the server, re-encoded as JPEG.

A list of 25 candidates would otherwise send 25 full photos; a thumbnail of
at most :data:`SIDE` pixels is enough to tell a room from a face. Whether a
list may show a picture sharp is decided by the caller; the blurred stand-in
is :func:`api.web.photos.blurred`, made from a dozen pixels.
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from api.web.photos import PhotoUnavailable

SIDE = 160


def thumbnail(data: bytes, side: int = SIDE) -> bytes:
    """A JPEG of ``data`` at most ``side`` pixels on its longer side (EXIF orientation applied)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (side * 2, side * 2))  # JPEG: decode at a fraction of the size
            picture = ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise PhotoUnavailable("the stored image cannot be decoded") from None
    picture.thumbnail((side, side), Image.LANCZOS)
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=78)
    return buf.getvalue()
