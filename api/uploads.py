"""Uploaded images: read them within limits and turn refusals into HTTP errors.

The loader's typed errors map onto the status codes a client can act on:
415 for something that is not an accepted image, 413 for too many bytes or
pixels, 422 for a damaged file, 400 for the rest. The detail names the upload
by its form field and position, never by anything inside it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fastapi import UploadFile

from api.errors import ApiError
from indexer import images, pipeline
from indexer.kinds import default_families
from indexer.signals import base as signals
from indexer.store.catalog import Bank

# Pixels one request may ask the server to decode, all its files together. One image is
# bounded by images.DEFAULT_MAX_PIXELS; without this a batch of 100 canvases of 49
# megapixels (230 kB each as GIFs) would hold a worker for minutes. 413, not 429: the
# same request will never fit, waiting does not help; smaller batches do.
MAX_REQUEST_PIXELS = 4 * images.DEFAULT_MAX_PIXELS

_STATUS = {images.UnsupportedImage: 415, images.ImageTooLarge: 413, images.CorruptImage: 422}


@dataclass(frozen=True)
class Upload:
    """One uploaded file's bytes and where it sat in the request."""

    data: bytes
    where: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def read_uploads(files: list[UploadFile], field: str) -> list[Upload]:
    """The bytes of every file of a form field (the body size was bounded upstream)."""
    out = []
    for n, f in enumerate(files):
        f.file.seek(0)
        data = f.file.read(images.DEFAULT_MAX_BYTES + 1)
        if len(data) > images.DEFAULT_MAX_BYTES:
            raise ApiError(413, "image_too_large", f"{field}[{n}] exceeds {images.DEFAULT_MAX_BYTES:,} bytes")
        out.append(Upload(data, f"{field}[{n}]"))
    check_pixel_budget(out, field)
    return out


def check_pixel_budget(uploads: list[Upload], field: str, budget: int = MAX_REQUEST_PIXELS) -> None:
    """413 before anything is decoded when the files' headers declare more pixels than ``budget``."""
    total = 0
    for up in uploads:
        total += images.declared_pixels(up.data)
        if total > budget:
            raise ApiError(413, "too_many_pixels",
                           f"{field}: the files declare more than {budget:,} pixels in one request; "
                           "send them in smaller batches")


def status_for(exc: images.ImageError) -> int:
    for cls, status in _STATUS.items():
        if isinstance(exc, cls):
            return status
    return 400


def api_error(exc: images.ImageError, where: str) -> ApiError:
    return ApiError(status_for(exc), exc.code, f"{where}: {exc}")


def signal_names(bank: Bank) -> list[str]:
    """The signals a bank indexes: its policy's ``signals`` or its kind's defaults (as `reunite index`)."""
    chosen = (bank.policy or {}).get("signals") or default_families(bank.kind)
    return [s.name for s in signals.select(chosen)]


def extract(upload: Upload, names: list[str]) -> pipeline.Extraction:
    """Signals of one upload; raises ApiError with the matching status."""
    try:
        return pipeline.extract(upload.data, names)
    except images.ImageError as exc:
        raise api_error(exc, upload.where) from None
