"""Hash lists in the field's formats: what the PDQ tools, threatexchange and StopNCII write loads here,
and what reunite exports loads there.

The peers' parsing rules are re-implemented below from their sources in
facebook/ThreatExchange (python-threatexchange is not installed here: it pulls
faiss-cpu and weighted-levenshtein, a C build, into the test extras):

- pdq/cpp/io/hashio.cpp ``loadHashAndMetadataFromStream`` (mih-query and the other tools): the
  line up to the first comma, optionally prefixed ``hash=``, must be exactly 64 characters that
  ``sscanf("%04hx" x 16)`` reads; the rest is metadata;
- threatexchange/exchanges/impl/file_api.py ``fetch_iter``: each stripped line is split at the
  first space into (signal type, signal) unless the collab names the type; rows then go through
  ``PdqSignal.validate_signal_str`` (``^[0-9a-f]{64}$``) or are dropped as invalid fingerprints;
- threatexchange/cli/dataset_cmd.py ``--csv``: a ``csv.DictWriter`` with the fields
  ``signal_type,signal_str,collab,category,tags``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from conftest import jpeg_bytes, photo, png_bytes, run_reunite
from PIL import Image

from api.audit import AuditEvent
from indexer import exchange
from indexer.store.catalog import Bank
from indexer.store.store import Store

SMALL = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png"]
_TE_PDQ = re.compile(r"^[0-9a-f]{64}$")
_SCAN_HEX4 = re.compile(r"^[0-9a-fA-F]{4}$")


# --- the peers' rules -------------------------------------------------------------

def cpp_read_line(line: str, counter: int) -> tuple[str, str]:
    """pdq/cpp/io/hashio.cpp: (hash, metadata) of one line, or ValueError where the tool dies."""
    line = line.removesuffix("\n")
    cut = line.find(",")
    metadata = f"idx={counter}" if cut < 0 else line[cut + 1:]
    hash_text = line if cut < 0 else line[:cut]
    hash_text = hash_text.removeprefix("hash=")
    words = [hash_text[i:i + 4] for i in range(0, 64, 4)]
    if len(hash_text) != 64 or not all(_SCAN_HEX4.match(w) for w in words):
        raise ValueError(f'Scan "{hash_text}" failed.')
    return hash_text, metadata


def cpp_read(text: str) -> list[tuple[str, str]]:
    return [cpp_read_line(line, n) for n, line in enumerate(text.split("\n")[:-1], start=1)]


def te_file_read(text: str, signal_type: str | None = None) -> dict[str, list[str]]:
    """file_api.py + naive_convert_to_signal_type: valid signals per type ('pdq' validated)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines(keepends=True):
        kind, signal = signal_type, line.strip()
        if kind is None:
            kind, _sep, signal = signal.partition(" ")
        if kind and signal and (kind != "pdq" or _TE_PDQ.match(signal)):
            out.setdefault(kind, []).append(signal)
    return out


def te_dataset_read(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    assert reader.fieldnames == ["signal_type", "signal_str", "collab", "category", "tags"]
    rows = list(reader)
    assert all(r["signal_type"] == "pdq" and _TE_PDQ.match(r["signal_str"]) for r in rows)
    return rows


# --- fixtures ----------------------------------------------------------------------

def small_photo(name: str, side: int = 240) -> Image.Image:
    """A fixture shrunk to at most ``side`` px, where reunite's PDQ equals the reference's."""
    img = photo(name)
    img.thumbnail((side, side))
    return img


@pytest.fixture(scope="module")
def bank_a(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folder A with a small indexed bank and one export per format."""
    root = tmp_path_factory.mktemp("peers")
    photos = root / "photos"
    photos.mkdir()
    for name in SMALL:
        (photos / f"{Path(name).stem}.png").write_bytes(png_bytes(small_photo(name)))
    data_a = root / "a"
    run_reunite("index", str(photos), "--bank", "crawl", "--signals", "hashes", "--quiet", data=data_a,
                check=True)
    out = {"root": root, "a": data_a, "photos": photos}
    for fmt in exchange.EXPORT_FORMATS:
        out[fmt] = root / f"list.{fmt}"
        run_reunite("export", "--bank", "crawl", "--format", fmt, "--out", str(out[fmt]), data=data_a,
                    check=True)
    return out


def _hashes_of(store: Store, bank_name: str) -> set[str]:
    from indexer.store.catalog import Vector

    bank = store.bank_or_error(bank_name)
    with store.catalog.session() as s:
        rows = s.query(Vector.data).filter(Vector.bank_id == bank.id, Vector.signal == "pdq").all()
    return {bytes(r[0]).hex() for r in rows}


# --- reunite's exports read by the peers ------------------------------------------

def test_exports_parse_with_the_peer_tools_rules(bank_a: dict[str, Path]) -> None:
    n = len(SMALL)
    pdq_rows = cpp_read(bank_a["pdq"].read_text())
    assert len(pdq_rows) == n
    assert all(re.fullmatch(r"\d{1,3},H-[0-9a-f]{24}", meta) for _h, meta in pdq_rows)
    hashes = {h for h, _meta in pdq_rows}
    assert {h for h, _m in cpp_read(bank_a["hex"].read_text())} == hashes
    assert set(te_file_read(bank_a["hex"].read_text(), signal_type="pdq")["pdq"]) == hashes
    te_rows = te_file_read(bank_a["te"].read_text())
    assert set(te_rows) == {"pdq"} and len(te_rows["pdq"]) == n and set(te_rows["pdq"]) == hashes
    dataset = te_dataset_read(bank_a["te-csv"].read_text())
    assert {r["signal_str"] for r in dataset} == hashes
    assert all(re.fullmatch(r"H-[0-9a-f]{24}", r["tags"]) and r["category"] == "POSITIVE_CLASS"
               for r in dataset)
    # What the issue reported: the old inline trailer is a line the C++ tools die on.
    with pytest.raises(ValueError, match="Scan"):
        cpp_read(bank_a["pdq"].read_text() + "#reunite-signature v1 format=pdq key=0 sig=AA==\n")


@pytest.mark.parametrize("fmt", exchange.EXPORT_FORMATS)
def test_every_export_format_round_trips(bank_a: dict[str, Path], fmt: str, tmp_path: Path) -> None:
    signer = bank_a["a"] / exchange.KEYS_DIR / exchange.PUBLIC_KEY
    store_a = Store(bank_a["a"])
    expected = _hashes_of(store_a, "crawl")
    store = Store(tmp_path / "b")
    signed = exchange.import_list(store, bank_a[fmt], "signed", signer)
    assert signed.verified and signed.format == fmt and signed.rows == len(SMALL)
    assert _hashes_of(store, "signed") == expected
    assert store.bank_or_error("signed").policy["verified"] is True
    # The same list without its FILE.sig, as a peer would pass it on: detected, loaded unverified.
    plain = tmp_path / f"plain.{fmt}"
    plain.write_bytes(bank_a[fmt].read_bytes())
    unsigned = exchange.import_list(store, plain, "plain", unsigned=True)
    assert unsigned.format == fmt and not unsigned.verified
    assert _hashes_of(store, "plain") == expected
    assert store.bank_or_error("plain").policy["verified"] is False


# --- the peers' lists read by reunite ---------------------------------------------

def test_a_pdq_tools_list_finds_the_photo_through_the_cli(tmp_path: Path) -> None:
    """Hashes pdqhash computed on the full decode of the files, as `pdq-photo-hasher` prints them."""
    folder = tmp_path / "partner"
    folder.mkdir()
    lines = []
    for name in SMALL:
        path = folder / f"{Path(name).stem}.png"
        path.write_bytes(png_bytes(small_photo(name)))
        rgb = np.asarray(Image.open(path).convert("RGB"))
        bits, quality = pdqhash.compute(np.ascontiguousarray(rgb))
        hex_hash = np.packbits(bits.astype(np.uint8)).tobytes().hex()
        lines.append(f"{hex_hash},{quality},case-7/{path.name}\n")
    listing = folder / "hashes.txt"
    listing.write_text("".join(lines))
    data = tmp_path / "b"
    refused = run_reunite("import", str(listing), "--bank", "partner", data=data)
    assert refused.returncode == 2 and "--unsigned" in refused.stderr
    done = run_reunite("import", str(listing), "--bank", "partner", "--unsigned", data=data, check=True)
    assert f"imported {len(SMALL)} hashes (pdq, UNVERIFIED" in done.stdout
    query = tmp_path / "query.jpg"
    query.write_bytes(jpeg_bytes(Image.open(folder / "chelsea.png"), quality=70))
    found = run_reunite("match", str(query), "--bank", "partner", "--json", data=data, check=True)
    [answer] = [json.loads(line) for line in found.stdout.splitlines() if line.strip()]
    best = answer["candidates"][0]
    assert best["label"] == "case-7/chelsea.png"
    assert isinstance(best["evidence"]["pdq"], int) and best["evidence"]["pdq"] <= 31
    store = Store(data)
    assert store.bank_or_error("partner").policy["verified"] is False
    listed = run_reunite("banks", data=data, check=True).stdout
    assert f"partner\thashes\t{len(SMALL)} items\tunverified" in listed
    with store.catalog.session() as s:
        events = s.query(AuditEvent).filter(AuditEvent.action == "hashes.import").all()
        assert [e.result for e in events] == ["rejected", "ok"]
        assert events[1].actor.startswith("cli:") and events[1].role == "admin"
        assert events[1].detail["verified"] is False and events[1].detail["rows"] == len(SMALL)
        assert "case-7" not in json.dumps([e.detail for e in events]) + "".join(e.object for e in events)


def test_threatexchange_and_stopncii_lists_load_with_their_own_names(tmp_path: Path) -> None:
    h = [f"{i:x}" * 64 for i in range(1, 6)]
    dataset = tmp_path / "collab.csv"
    dataset.write_text(
        "signal_type,signal_str,collab,category,tags\r\n"
        f"pdq,{h[0]},Sample Data,POSITIVE_CLASS,media_type_photo csam\r\n"
        f"pdq,{h[1]},Sample Data,INVESTIGATION_SEED,\r\n"
        f"pdq,{h[2]},Sample Data,NEGATIVE_CLASS,test\r\n"
        f"md5,{'0' * 32},Sample Data,POSITIVE_CLASS,\r\n")
    te_file = tmp_path / "signals.txt"
    te_file.write_text(f"pdq {h[3].upper()}\nmd5 {'0' * 32}\n\n")
    stop = tmp_path / "stopncii.json"
    stop.write_text(json.dumps({"count": 3, "nextPageToken": None, "nextSetTimestamp": 1,
                                "hasMoreRecords": False, "hashRecords": [
        {"lastModtimestamp": 1, "signalType": "ImagePDQ", "hashValue": h[4], "hashStatus": "Active",
         "caseNumbers": {"NCII-2": "Active", "NCII-1": "Received", "NCII-0": "Withdrawn"}},
        {"lastModtimestamp": 1, "signalType": "ImagePDQ", "hashValue": h[0], "hashStatus": "Withdrawn",
         "caseNumbers": {"NCII-9": "Withdrawn"}},
        {"lastModtimestamp": 1, "signalType": "VideoMD5", "hashValue": "0" * 32, "hashStatus": "Active",
         "caseNumbers": {}}]}))
    store = Store(tmp_path / "b")
    te = exchange.import_list(store, dataset, "te", unsigned=True)
    assert te.format == "te-csv" and te.rows == 2 and sum(te.left_out.values()) == 2
    assert _labels(store, "te") == {"media_type_photo csam": h[0], "Sample Data": h[1]}
    plain = exchange.import_list(store, te_file, "te-file", unsigned=True)
    assert plain.format == "te" and plain.rows == 1 and plain.left_out == {"signal type md5": 1}
    assert _labels(store, "te-file") == {f"pdq-{h[3][:16]}": h[3]}
    ncii = exchange.import_list(store, stop, "ncii", unsigned=True)
    assert ncii.format == "stopncii" and ncii.rows == 1 and sum(ncii.left_out.values()) == 2
    assert _labels(store, "ncii") == {"NCII-1 NCII-2": h[4]}  # the withdrawn case is not cited


def test_every_pdq_tools_line_shape_loads(tmp_path: Path) -> None:
    """pdq-photo-hasher's plain and --details lines, mih-query's hash,metadata and hash= prefix."""
    h = [f"{i:x}" * 64 for i in range(1, 6)]
    listing = tmp_path / "tools.txt"
    listing.write_text(f"{h[0]},87,photos/a,b.jpg\n"
                       f"hash={h[1]},norm=128,delta=0,quality=64,filename=photos/c.jpg\n"
                       f"{h[2]},12345\n"
                       f"hash={h[3].upper()}\n")
    store = Store(tmp_path / "b")
    result = exchange.import_list(store, listing, "tools", unsigned=True)
    assert result.format == "pdq" and result.rows == 4
    assert _labels(store, "tools") == {"photos/a,b.jpg": h[0], "photos/c.jpg": h[1], "12345": h[2],
                                       f"pdq-{h[3][:16]}": h[3]}
    from indexer.store.catalog import Item, Vector

    with store.catalog.session() as s:
        qualities = sorted(q for (q,) in s.query(Vector.quality).join(Item, Item.id == Vector.item_id)
                           .filter(Vector.quality.is_not(None)).all())
    assert qualities == [0.64, 0.87]


def _labels(store: Store, bank: str) -> dict[str, str]:
    from indexer.store.catalog import Item, Subject, Vector

    bank_id = store.bank_or_error(bank).id
    with store.catalog.session() as s:
        rows = (s.query(Subject.label, Vector.data).join(Item, Item.subject_id == Subject.id)
                .join(Vector, Vector.item_id == Item.id)
                .filter(Item.bank_id == bank_id, Vector.signal == "pdq").all())
    return {label: bytes(data).hex() for label, data in rows}


GOOD = "ab" * 32
BAD_LISTS = {
    "bad hash": (f"{GOOD},90,a\n{GOOD},90,b\n{'zz' * 32},90,c\n", None, "line 3: .* is not a PDQ hash"),
    "short hash": (f"{GOOD}\n{GOOD[:60]}\n", "hex", "line 2: .* not a PDQ hash"),
    "quality": (f"{GOOD},101,a\n", None, "line 1: quality '101'"),
    "bidi": (f"{GOOD},90,case\u202eexe.jpg\n", None, "line 1: .*bidirectional override .*U\\+202E"),
    "nul": (f"{GOOD},90,a\u0000b\n", None, "line 1: .*NUL character .*U\\+0000"),
    "too long": (f"{GOOD},90,{'x' * 9000}\n", None, "line 1: longer than"),
    "not utf-8": (None, None, "line 2: not UTF-8"),
    "surrogate": (json.dumps([{"signalType": "ImagePDQ", "hashValue": GOOD,
                               "caseNumbers": {"\ud800": "Active"}}]), None, "record 1: .*lone surrogate"),
    "columns": (f"signal_type,signal_str,collab,category,tags\npdq,{GOOD},c\n", None, "line 2: 3 columns"),
    "unknown": ("hello world\n", None, "line 1: cannot tell the list's format"),
    "rows": (f"{GOOD},90,a\n" + "".join(f"{i:064x},90,r{i}\n" for i in range(5)), None,
             "line 4: .*more than 3"),
}


@pytest.mark.parametrize("case", sorted(BAD_LISTS))
def test_a_bad_row_is_named_and_nothing_is_loaded(case: str, tmp_path: Path) -> None:
    text, fmt, match = BAD_LISTS[case]
    path = tmp_path / "list.txt"
    path.write_bytes(f"{GOOD},90,a\n".encode() + b"\xff\xfe,90,b\n" if text is None else text.encode(
        "utf-8", "surrogatepass"))
    store = Store(tmp_path / "b")
    with pytest.raises(exchange.ExchangeError, match=match):
        exchange.import_list(store, path, "partner", fmt=fmt, unsigned=True, max_rows=3)
    assert store.catalog.bank("partner") is None


def test_the_command_line_names_the_bad_row_and_keeps_the_bank(tmp_path: Path) -> None:
    data = tmp_path / "b"
    good = tmp_path / "good.txt"
    good.write_text(f"{GOOD},90,first\n")
    run_reunite("import", str(good), "--bank", "partner", "--unsigned", data=data, check=True)
    bad = tmp_path / "bad.txt"
    bad.write_text(f"{'cd' * 32},80,second\nnot a hash\n")
    done = run_reunite("import", str(bad), "--bank", "partner", "--unsigned", "--format", "pdq", data=data)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {bad}: line 2: 'not a hash' is not a PDQ hash "
                                                "(64 hex digits)"]
    store = Store(data)
    assert _labels(store, "partner") == {"first": GOOD}  # nothing of the bad list, nothing lost
    with store.catalog.session() as s:
        assert s.query(Bank).count() == 1
