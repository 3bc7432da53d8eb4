"""The two pictures of a candidate page: fetched from the photo store, sized, and blurred.

A missing person's reference photo is shown blurred until the reviewer
chooses to look. The blur is made here, on the server, from a copy shrunk to
a dozen pixels: the browser never receives the sharp photo before the
(audited) reveal, so neither "view source" nor a disabled stylesheet can
undo it. Images are decoded only as far as needed (the header for the size).
"""

from __future__ import annotations

import io

from PIL import Image, ImageFilter, ImageOps
from sqlalchemy import select

from api.enrollment import PHOTO_ATTR
from api.service import Service
from indexer.crypto import DecryptionFailed, MissingKey
from indexer.store.catalog import Bank, Item, Vector
from indexer.store.photos import QUERY_NAMESPACE, bank_namespace
from matcher.review.queue import StoredCandidate

BLUR_SOURCE_SIDE = 12  # the blurred picture is made from this few pixels: shapes, no face
BLUR_OUTPUT_SIDE = 480
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
        "BMP": "image/bmp", "TIFF": "image/tiff", "MPO": "image/jpeg"}
_EXIF_ORIENTATION = 0x0112
_SWAPS_SIDES = {5, 6, 7, 8}


class PhotoUnavailable(Exception):
    """No picture to show; ``reason`` is safe to display (never names a person)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _get(svc: Service, namespace: str, token: str) -> bytes:
    try:
        return svc.photos.get(namespace, token)
    except FileNotFoundError:
        raise PhotoUnavailable("the image file is missing from the data folder") from None
    except (MissingKey, DecryptionFailed):
        raise PhotoUnavailable("the configured encryption key does not open this image") from None


def reference_bytes(svc: Service, item: Item) -> bytes:
    token = (item.attributes or {}).get(PHOTO_ATTR)
    if not token:
        with svc.store.catalog.session() as s:
            bank = s.get(Bank, item.bank_id)
        if bank is not None and bank.kind == "hashes":
            raise PhotoUnavailable("this reference is an entry of a hash list, which holds hashes, "
                                   "not photos")
        raise PhotoUnavailable("no photo was kept for this reference (it was stored before photos were kept, "
                               "or its bank's policy keeps none)")
    return _get(svc, bank_namespace(item.bank_id), str(token))


def query_bytes(svc: Service, row: StoredCandidate) -> bytes:
    if not row.query_photo:
        raise PhotoUnavailable("no image was kept for this query (a hash-only lookup)")
    return _get(svc, QUERY_NAMESPACE, row.query_photo)


def describe(data: bytes) -> tuple[tuple[int, int], str]:
    """(width, height) as displayed (EXIF orientation applied) and the MIME type, from the header."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
            mime = MIME.get(img.format or "", "application/octet-stream")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise PhotoUnavailable("the stored image cannot be decoded") from None
    if orientation in _SWAPS_SIDES:
        width, height = height, width
    return (width, height), mime


def blurred(data: bytes) -> bytes:
    """A JPEG that keeps the layout and colours of ``data`` and nothing recognisable."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (BLUR_SOURCE_SIDE * 8, BLUR_SOURCE_SIDE * 8))
            picture = ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise PhotoUnavailable("the stored image cannot be decoded") from None
    width, height = picture.size
    scale = BLUR_SOURCE_SIDE / max(width, height)
    tiny = picture.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BOX)
    scale = BLUR_OUTPUT_SIDE / max(width, height)
    out = tiny.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.BICUBIC)
    out = out.filter(ImageFilter.GaussianBlur(BLUR_OUTPUT_SIDE / 40))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=70)
    return buf.getvalue()


def reference_face(svc: Service, item_id: int, signal: str | None
                   ) -> tuple[list[int] | None, list[list[int]] | None]:
    """The stored face of a reference photo for the face signal that matched (largest face):
    its box and its five landmarks (None where the vector was stored before landmarks were kept)."""
    if not signal:
        return None, None
    with svc.store.catalog.session() as s:
        faces = [(list(box), extra or {}) for box, extra in s.execute(select(Vector.box, Vector.extra).where(
            Vector.item_id == item_id, Vector.signal == signal, Vector.box.is_not(None))) if box]
    if not faces:
        return None, None
    box, extra = max(faces, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))
    return box, extra.get("landmarks")
