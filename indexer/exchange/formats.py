"""The hash-list formats of the field, read with the peers' own rules and written so the peers read them.

Rules taken from the peers' parsers (read in facebook/ThreatExchange, not copied):

- ``pdq``: the PDQ reference tools (``pdq-photo-hasher`` writes ``hash,quality,filename``;
  ``mih-query`` and the other tools read a line as the 64-hex hash, optionally prefixed
  ``hash=``, and everything after the first comma as metadata). The ``--details`` output
  (``hash=..,norm=..,delta=..,quality=..,filename=..``) is read too. reunite's own ``pdq``
  export is this format with the opaque id as the name.
- ``hex``: one bare 64-hex PDQ hash a line (what the C++ tools and the threatexchange file
  source with ``signal_type=pdq`` read).
- ``te``: python-threatexchange's local file source: each stripped line is
  ``<signal type> <signal>``, split at the first space; types other than ``pdq`` are left out.
- ``te-csv``: ``threatexchange dataset -P --csv``: a header ``signal_type,signal_str,collab,
  category,tags`` (tags separated by spaces); ``NEGATIVE_CLASS`` rows are test data or false
  positives and are left out.
- ``csv``: reunite's ``id,pdq,pdq_quality,phash``.
- ``stopncii`` (import only): StopNCII's FetchHashes JSON, ``{"hashRecords": [{"signalType":
  "ImagePDQ", "hashValue": ..., "hashStatus": ..., "caseNumbers": {number: status}}]}`` or a
  bare list of such records; withdrawn or deleted hashes and cases are left out.

A PDQ hash is 64 hex digits; the PDQ tools' ``sscanf("%04hx")`` accepts either case, so we do
and store it lower-case (the form python-threatexchange validates). Every file is read as a
stream with a cap on line length and row count; one bad row refuses the whole list, with a
message that names the row and why.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from indexer import text as text_rules
from indexer.exchange.signing import ExchangeError

IMPORT_FORMATS = ("pdq", "hex", "te", "te-csv", "csv", "stopncii")
EXPORT_FORMATS = ("pdq", "hex", "te", "te-csv", "csv")
FORMATS = EXPORT_FORMATS
CSV_HEADER = "id,pdq,pdq_quality,phash"
TE_CSV_FIELDS = ("signal_type", "signal_str", "collab", "category", "tags")
TE_SIGNAL_TYPE = "pdq"
MAX_ROWS = 2_000_000
MAX_LINE_BYTES = 8192
MAX_JSON_BYTES = 256 * 1024 * 1024
MAX_LABEL_CHARS = 200
_PDQ = re.compile(r"^[0-9a-fA-F]{64}$")
_PHASH = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class Row:
    """One hash of a list: where it was (line or record), the hashes and the name it came with."""

    where: str
    pdq: str | None
    quality: int | None = None
    phash: str | None = None
    label: str | None = None


@dataclass
class Parsed:
    """Every usable row of a list, and how many rows were left out on purpose, by reason."""

    rows: list[Row]
    left_out: Counter[str] = field(default_factory=Counter)


class _Rows:
    """Collects rows under the row cap."""

    def __init__(self, max_rows: int) -> None:
        self.parsed = Parsed([])
        self.max_rows = max_rows

    def add(self, row: Row) -> None:
        if len(self.parsed.rows) >= self.max_rows:
            raise ExchangeError(f"{row.where}: the list has more than {self.max_rows:,} rows")
        self.parsed.rows.append(row)


# --- validation ------------------------------------------------------------------

def pdq_hex(text: str, where: str) -> str:
    text = text.strip()
    if not _PDQ.match(text):
        shown = text if len(text) <= 80 else text[:80] + "..."
        raise ExchangeError(f"{where}: {shown!r} is not a PDQ hash (64 hex digits)")
    return text.lower()


def clean_label(text: str | None, where: str) -> str | None:
    """A row's own id or name, or a refusal when it could mislead or break what shows it."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    if len(text) > MAX_LABEL_CHARS:
        raise ExchangeError(f"{where}: the name is longer than {MAX_LABEL_CHARS} characters")
    why = text_rules.problem(text)  # the one rule for unusable text (indexer.text)
    if why:
        raise ExchangeError(f"{where}: the name holds {why}")
    return text


def _quality(text: str, where: str) -> int:
    if not text.strip().isdigit() or not 0 <= int(text) <= 100:
        raise ExchangeError(f"{where}: quality {text[:20]!r} is not an integer from 0 to 100")
    return int(text)


# --- reading ---------------------------------------------------------------------

def lines(stream: IO[bytes], max_line: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """(line number, text without the line end) of a byte stream, each line capped and strict UTF-8."""
    n = 0
    while True:
        raw = stream.readline(max_line + 2)
        if not raw:
            return
        n += 1
        if len(raw.rstrip(b"\r\n")) > max_line:
            raise ExchangeError(f"line {n}: longer than {max_line:,} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ExchangeError(f"line {n}: not UTF-8 text") from None
        if n == 1:
            text = text.removeprefix("\ufeff")
        yield n, text.rstrip("\r\n")


def detect(path: Path) -> str:
    """The format of a list, from its first non-blank line."""
    with open(path, "rb") as f:
        for n, text in lines(f):
            head = text.strip()
            if not head:
                continue
            if head[0] in "{[":
                return "stopncii"
            if head.lower().startswith("signal_type,"):
                return "te-csv"
            if head == CSV_HEADER:
                return "csv"
            if head.startswith(TE_SIGNAL_TYPE + " "):
                return "te"
            if _PDQ.match(head):
                return "hex"
            first = head.split(",", 1)[0].removeprefix("hash=")
            if _PDQ.match(first):
                return "pdq"
            raise ExchangeError(f"line {n}: cannot tell the list's format from it; name it with "
                                f"--format ({', '.join(IMPORT_FORMATS)})")
    raise ExchangeError("the list is empty")


def parse(path: Path, fmt: str, max_rows: int = MAX_ROWS) -> Parsed:
    """Every row of the list at ``path`` read as ``fmt``; ExchangeError at the first bad row."""
    with open(path, "rb") as f:
        return parse_stream(f, fmt, max_rows)


def parse_stream(stream: IO[bytes], fmt: str, max_rows: int = MAX_ROWS) -> Parsed:
    """Like ``parse`` for an open byte stream (a legacy inline-signed body comes from memory)."""
    if fmt not in IMPORT_FORMATS:
        raise ExchangeError(f"unknown format {fmt!r} (one of {', '.join(IMPORT_FORMATS)})")
    out = _Rows(max_rows)
    if fmt == "stopncii":
        _parse_stopncii(stream, out)
        return out.parsed
    numbered = lines(stream)
    if fmt in ("te-csv", "csv"):
        _parse_csv(numbered, fmt, out)
    else:
        for n, text in numbered:
            if text.strip():
                _LINE_PARSERS[fmt](text, f"line {n}", out)
    return out.parsed


def _parse_hex(text: str, where: str, out: _Rows) -> None:
    out.add(Row(where, pdq_hex(text, where)))


def _parse_te(text: str, where: str, out: _Rows) -> None:
    signal_type, _sep, signal = text.strip().partition(" ")
    if signal_type != TE_SIGNAL_TYPE:
        out.parsed.left_out[f"signal type {signal_type[:40]}"] += 1
        return
    out.add(Row(where, pdq_hex(signal, where)))


def _parse_pdq_tools(text: str, where: str, out: _Rows) -> None:
    hash_text, _sep, metadata = text.strip().partition(",")
    pdq = pdq_hex(hash_text.removeprefix("hash="), where)
    quality: int | None = None
    name: str | None = None
    if metadata.startswith(("norm=", "delta=", "quality=", "filename=")):  # pdq-photo-hasher --details
        fields = dict(part.partition("=")[::2] for part in metadata.split(",", 3))
        tail = metadata.split("filename=", 1)
        name = tail[1] if len(tail) == 2 else None
        if "quality" in fields:
            quality = _quality(fields["quality"], where)
    elif metadata:
        first, comma, rest = metadata.partition(",")
        if comma and first.strip().isdigit():  # pdq-photo-hasher: hash,quality,filename
            quality = _quality(first, where)
            name = rest
        else:  # mih-query's hash,metadata: everything after the hash is the name (a number too)
            name = metadata
    out.add(Row(where, pdq, quality, label=clean_label(name, where)))


_LINE_PARSERS = {"hex": _parse_hex, "te": _parse_te, "pdq": _parse_pdq_tools}


def _parse_csv(numbered: Iterator[tuple[int, str]], fmt: str, out: _Rows) -> None:
    numbers: list[int] = []

    def texts() -> Iterator[str]:
        for n, text in numbered:
            numbers.append(n)
            yield text

    reader = csv.reader(texts(), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise ExchangeError("the list is empty")
        header = [h.strip() for h in header]
        if fmt == "csv":
            if header != CSV_HEADER.split(","):
                raise ExchangeError(f"line 1: a reunite csv list starts with the header {CSV_HEADER!r}")
        elif "signal_type" not in header or "signal_str" not in header:
            raise ExchangeError(f"line 1: a threatexchange dataset CSV has the header "
                                f"{','.join(TE_CSV_FIELDS)!r}")
        for values in reader:
            where = f"line {numbers[-1]}"
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise ExchangeError(f"{where}: {len(values)} columns where the header has {len(header)}")
            record = dict(zip(header, values, strict=True))
            if fmt == "csv":
                _csv_row(record, where, out)
            else:
                _te_csv_row(record, where, out)
    except csv.Error as exc:
        raise ExchangeError(f"line {numbers[-1] if numbers else 1}: not valid CSV ({exc})") from None


def _csv_row(record: dict[str, str], where: str, out: _Rows) -> None:
    pdq = pdq_hex(record["pdq"], where) if record["pdq"].strip() else None
    phash = record["phash"].strip() or None
    if phash is not None and not _PHASH.match(phash):
        raise ExchangeError(f"{where}: a pHash is 16 lower-case hex digits")
    if pdq is None and phash is None:
        raise ExchangeError(f"{where}: neither a PDQ nor a pHash")
    quality = _quality(record["pdq_quality"], where) if record["pdq_quality"].strip() else None
    out.add(Row(where, pdq, quality, phash, clean_label(record["id"], where)))


def _te_csv_row(record: dict[str, str], where: str, out: _Rows) -> None:
    signal_type = record["signal_type"].strip()
    if signal_type != TE_SIGNAL_TYPE:
        out.parsed.left_out[f"signal type {signal_type[:40]}"] += 1
        return
    if record.get("category", "").strip() == "NEGATIVE_CLASS":
        out.parsed.left_out["negative class (false positive or test data)"] += 1
        return
    label = clean_label(record.get("tags"), where) or clean_label(record.get("collab"), where)
    out.add(Row(where, pdq_hex(record["signal_str"], where), label=label))


_GONE = ("Withdrawn", "Deleted")


def _parse_stopncii(stream: IO[bytes], out: _Rows) -> None:
    raw = stream.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise ExchangeError(f"a StopNCII JSON list is larger than {MAX_JSON_BYTES:,} bytes")
    try:
        data = json.loads(raw.decode("utf-8").removeprefix("\ufeff"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExchangeError(f"not valid StopNCII JSON ({exc})") from None
    records = data.get("hashRecords") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise ExchangeError("a StopNCII list is an object with 'hashRecords' or a list of hash records")
    for n, record in enumerate(records, start=1):
        _stopncii_record(record, f"record {n}", out)


def _stopncii_record(record: Any, where: str, out: _Rows) -> None:
    if not isinstance(record, dict) or not isinstance(record.get("hashValue"), str):
        raise ExchangeError(f"{where}: a hash record is an object with 'signalType' and 'hashValue'")
    if record.get("signalType") != "ImagePDQ":
        out.parsed.left_out[f"signal type {str(record.get('signalType'))[:40]}"] += 1
        return
    if record.get("hashStatus") in _GONE:
        out.parsed.left_out["withdrawn or deleted"] += 1
        return
    cases = record.get("caseNumbers") or {}
    if not isinstance(cases, dict):
        raise ExchangeError(f"{where}: 'caseNumbers' is an object of case number to status")
    live = [clean_label(str(number), where) for number, status in cases.items() if status not in _GONE]
    label = clean_label(" ".join(sorted(c for c in live if c)), where)
    out.add(Row(where, pdq_hex(record["hashValue"], where), label=label))


# --- writing ---------------------------------------------------------------------

@dataclass(frozen=True)
class ExportRow:
    """One shared image: its opaque id, PDQ (hex, quality 0-100) and pHash (hex)."""

    id: str
    pdq: str | None
    quality: int | None
    phash: str | None


def render(rows: Iterable[ExportRow], fmt: str) -> Iterator[str]:
    """The lines (with their ends) of a list in ``fmt``; rows without a PDQ only fit ``csv``."""
    if fmt not in EXPORT_FORMATS:
        raise ExchangeError(f"unknown format {fmt!r} (one of {', '.join(EXPORT_FORMATS)})")
    if fmt == "csv":
        yield CSV_HEADER + "\n"
    elif fmt == "te-csv":
        yield ",".join(TE_CSV_FIELDS) + "\r\n"  # csv.DictWriter's line end, as `dataset --csv` writes
    for r in rows:
        if fmt == "csv":
            quality = "" if r.quality is None else str(r.quality)
            yield f"{r.id},{r.pdq or ''},{quality},{r.phash or ''}\n"
        elif r.pdq is None:
            continue
        elif fmt == "pdq":
            yield f"{r.pdq},{r.quality if r.quality is not None else 0},{r.id}\n"
        elif fmt == "hex":
            yield r.pdq + "\n"
        elif fmt == "te":
            yield f"{TE_SIGNAL_TYPE} {r.pdq}\n"
        else:
            yield f"{TE_SIGNAL_TYPE},{r.pdq},reunite,POSITIVE_CLASS,{r.id}\r\n"
