"""WARC crawls (Heritrix, Browsertrix, ``wget --warc-file``) as a stream of ad photo records.

Every ``response`` or ``resource`` record whose Content-Type (or, when that
says nothing useful, whose first bytes) is an image becomes one
:class:`indexer.ingest.Record`, exactly as a manifest row does: the label (the
ad id) is the WARC-Record-ID, so a re-run names the same ads, and the record's
WARC-Target-URI and WARC-Date become the ad's ``url``, ``site`` (its host) and
``posted_at`` (capture time: the ad was posted no later than that) fields.

The payload is written once into a private spool folder, named by its sha256,
because the indexing pool, the photo keeper and the linker all read image files
by path; the caller removes the folder when the run is over.

A damaged file (a truncated gzip member, garbage after the last record) stops
the reading there: what was read before is indexed, and :attr:`WarcReader.problem`
says what went wrong so the CLI can report it in one line. A file that yields
no record at all raises :class:`indexer.ingest.ManifestError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from indexer import images, text
from indexer.ingest import ManifestError, Record

WARC_SUFFIXES = (".warc", ".warc.gz")
IMAGE_RECORD_TYPES = {"response", "resource"}


def is_warc(source: Path) -> bool:
    """By name, as crawlers write them: ``*.warc`` or ``*.warc.gz``."""
    return source.name.lower().endswith(WARC_SUFFIXES)


class NotWarc(ValueError):
    """The bytes parse, but not as a WARC record."""


class Truncated(ValueError):
    """A record shorter than its Content-Length: the file was cut inside it."""


class WarcReader:
    """One pass over a WARC file; iterate it for records, then read the counters."""

    def __init__(self, source: Path, spool: Path) -> None:
        self.source = Path(source)
        self.spool = Path(spool)
        self.records = 0  # WARC records read (every type)
        self.images = 0
        self.not_images = 0  # response/resource records whose payload is not an image
        self.problem = ""  # why reading stopped early ("" when the file was read to its end)

    def __iter__(self) -> Iterator[Record]:
        return self._read()

    def _read(self) -> Iterator[Record]:
        if not self.source.is_file():
            raise ManifestError(f"{self.source}: not a regular file" if self.source.exists()
                                else f"{self.source} does not exist")
        # Imported here: warcio loads fsspec, which every `reunite index` of a folder would pay for.
        from warcio.archiveiterator import ArchiveIterator

        with self.source.open("rb") as stream:
            records = iter(ArchiveIterator(stream))
            while True:
                try:
                    with contextlib.redirect_stderr(io.StringIO()):  # warcio's multi-line warnings
                        record = next(records)
                        found = self._image_of(record)
                except StopIteration:
                    if self.records == 0:  # empty, or cut inside its first gzip member
                        raise ManifestError(f"{self.source}: not a readable WARC file (no record in it)"
                                            ) from None
                    return
                except Exception as exc:  # warcio raises zlib, EOF, ValueError or its own on damage
                    self.problem = _describe(exc)
                    if self.records == 0:
                        raise ManifestError(f"{self.source}: not a readable WARC file ({self.problem})"
                                            ) from None
                    return
                self.records += 1
                if found is not None:
                    self.images += 1
                    yield found

    def _image_of(self, record) -> Record | None:  # noqa: ANN001 - warcio ArcWarcRecord
        if record.format != "warc":  # warcio reads any text as a lenient ARC header line
            raise NotWarc(f"{text.with_article(record.format or 'non-WARC')} record, not a WARC one")
        if record.rec_type not in IMAGE_RECORD_TYPES:
            return None
        declared = ""
        if record.rec_type == "response" and record.http_headers is not None:
            declared = record.http_headers.get_header("Content-Type") or ""
        elif record.rec_type == "resource":
            declared = record.rec_headers.get_header("Content-Type") or ""
        data = record.content_stream().read(images.DEFAULT_MAX_BYTES + 1)
        while record.raw_stream.read(1 << 20):  # to the record's end, to see whether it is all there
            pass
        if getattr(record.raw_stream, "limit", 0) > 0:
            raise Truncated(f"record {self.records + 1} ends {record.raw_stream.limit} bytes early")
        mime = declared.split(";")[0].strip().lower()
        if not (mime.startswith("image/") or images._looks_like_image(data)):
            self.not_images += 1
            return None
        record_id = record.rec_headers.get_header("WARC-Record-ID") or ""
        uri = record.rec_headers.get_header("WARC-Target-URI") or ""
        when = record.rec_headers.get_header("WARC-Date") or ""
        path = self._spooled(data)
        fields = {"url": text.displayable(uri), "site": text.displayable(urlsplit(uri).hostname or ""),
                  "posted_at": text.displayable(when), "warc_record_id": text.displayable(record_id)}
        label = text.displayable(record_id.strip("<>")) or path.stem
        return Record(path, label, text.displayable(uri) or label,
                      {k: v for k, v in fields.items() if v}, reopenable=False)  # the spool goes at exit

    def _spooled(self, data: bytes) -> Path:
        """The payload as a file named by its content, written whole (tmp + rename) or not at all."""
        path = self.spool / hashlib.sha256(data).hexdigest()
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return path


def _describe(exc: BaseException) -> str:
    detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
