"""Batch indexing of crawls: folders and CSV / JSONL manifests into a bank.

Designed for crawls of hundreds of thousands of images that get interrupted:
- idempotent: an image whose sha256 is already in the bank is skipped before
  it is decoded, so a re-run (or a resume after Ctrl-C or a kill) indexes only
  what is missing and never duplicates anything;
- crash-safe: results are committed to the catalog in small transactions and
  the vector indexes are checkpointed; a kill at any moment leaves a catalog
  that is consistent and indexes that are rebuilt from it when stale;
- tolerant: a bad file is counted and reported with its reason, never fatal;
- one run per bank at a time: a second ``reunite index`` on the same bank of
  the same data folder waits for the first (:func:`hold_index_lock`) and then
  finds everything the first stored already indexed, so two runs over one
  crawl both finish, store every image once and link every ad once.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import errno
import fcntl
import hashlib
import json
import multiprocessing as mp
import os
import stat
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from indexer import images, interrupts, pipeline, text
from indexer.store import features
from indexer.store.catalog import Bank, Item, Subject
from indexer.store.store import NewImage, Store

MANIFEST_SUFFIXES = {".csv", ".jsonl", ".ndjson"}
# Sidecar files a crawl folder holds beside its images; walking a folder skips them.
SIDECAR_SUFFIXES = MANIFEST_SUFFIXES | {".md", ".txt", ".json", ".html", ".warc", ".gz"}
# Reserved manifest columns; every other column is kept as item metadata.
RESERVED_COLUMNS = {"path", "label"}
# A report lists this many bad files in full; the rest are counted per reason.
MAX_REPORTED_ERRORS = 1000
# A run stops (nothing stored) when more than ``max_bad`` of the rows are bad once this many were read:
# a manifest of a million rows that point nowhere is a mistake, not a crawl to grind through.
MIN_ROWS_FOR_BAD_SHARE = 1000
DEFAULT_MAX_BAD = 0.5


class ManifestError(ValueError):
    """The source itself (not one image in it) cannot be read."""


class TooManyBadRows(ManifestError):
    """So many rows are bad that the source is refused before anything is stored."""


class NotRegularFile(OSError):
    """A FIFO, device, socket or directory where an image file was expected (reading it could hang)."""

    def __init__(self, what: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file ({what})")


# A label names its subject (the ad id): longer ones are refused row by row, not cut (two ads could
# merge). PostgreSQL enforces the column's length where SQLite would keep anything.
LABEL_MAX = Subject.__table__.c.label.type.length


@dataclass(frozen=True)
class Record:
    """One image to index: its file, its label and its free metadata."""

    path: Path
    label: str
    shown_as: str  # the path as the user wrote it, for reports
    attributes: dict[str, Any] = field(default_factory=dict)
    # Whether ``path`` outlives the run (a WARC payload's spooled file does not).
    reopenable: bool = True

    def stored_source(self) -> str:
        """What the catalog keeps as the item's source: a path that reopens the file later.

        The absolute path (a manifest's relative paths resolved against its folder
        now), so that linking deferred to ``reunite networks`` and the watch can read
        the file from any working directory; where nothing outlives the run (WARC),
        the text the user knows it by (the record's URL).
        """
        return str(self.path.absolute()) if self.reopenable else self.shown_as


@dataclass
class IngestReport:
    """What a run did; written as JSON next to the data so nothing is lost."""

    bank: str
    source: str
    started_at: str
    seen: int = 0
    indexed: int = 0
    already_indexed: int = 0
    duplicates_in_run: int = 0
    failed: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    errors: list[dict[str, str]] = field(default_factory=list)
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    errors_not_listed: int = 0
    engine: str = "pool"  # what mapped the per-image work: "pool" or "ray"
    # Images each Ray node extracted (node id -> count); empty for the pool.
    nodes: dict[str, int] = field(default_factory=dict)

    def add_error(self, path: str, code: str, detail: str) -> None:
        """Count a bad file; the first MAX_REPORTED_ERRORS are listed in full (a flood stays small)."""
        self.failed += 1
        self.errors_by_reason[code] = self.errors_by_reason.get(code, 0) + 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"path": text.displayable(path), "error": code, "detail": detail})
        else:
            self.errors_not_listed += 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def summary(self) -> str:
        rate = self.indexed / self.seconds if self.seconds > 0 else 0.0
        return (f"bank {self.bank}: {self.seen} images seen, {self.indexed} indexed, "
                f"{self.already_indexed} already indexed, {self.failed} failed "
                f"({self.seconds:.1f} s, {rate:.1f} images/s)")


def read_source(source: Path) -> list[Record]:
    """Records of a folder (recursive), a CSV or JSONL manifest, or one image file."""
    return list(iter_source(source))


def iter_source(source: Path) -> Iterator[Record]:
    """:func:`read_source` one record at a time (a manifest of millions of rows is never held whole).

    The source's own problems (missing, not UTF-8, no ``path`` column) raise
    :class:`ManifestError` at the first ``next()``; a bad row raises it when reached.
    """
    source = Path(source)
    if source.is_dir():
        return (_named(p) for p in _walk(source))
    if not source.exists():
        raise ManifestError(f"{source} does not exist")
    suffix = source.suffix.lower()
    if suffix in MANIFEST_SUFFIXES and not source.is_file():
        raise ManifestError(f"{source}: not a regular file")
    if suffix == ".csv":
        return primed(_read_csv(source))
    if suffix in {".jsonl", ".ndjson"}:
        return primed(_read_jsonl(source))
    return iter([_named(source)])


def primed(rows: Iterator[Record]) -> Iterator[Record]:
    """Run a reader up to its first record now, so header problems surface before any work."""
    try:
        first = next(rows)
    except StopIteration:
        return iter(())
    return _chain(first, rows)


def _chain(first: Record, rest: Iterator[Record]) -> Iterator[Record]:
    yield first
    yield from rest


def _named(path: Path) -> Record:
    """A file found on disk: its name becomes label and report text, so unusable code points are escaped."""
    return Record(path, text.displayable(path.stem), text.displayable(str(path)))


def _walk(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() not in SIDECAR_SUFFIXES:
                yield Path(dirpath) / name


def _record(row: dict[str, Any], base: Path, where: str) -> Record:
    try:  # every column, names included: labels and fields end up in terminals and GraphML
        for key, value in row.items():
            text.check("" if key is None else str(key), f"{where}: a column name")
            text.check_tree(value, f"{where}: column {key}")
    except text.BadText as exc:
        raise ManifestError(str(exc)) from None
    raw = row.get("path")
    if raw is None or not str(raw).strip():
        raise ManifestError(f"{where}: empty 'path'")
    shown = str(raw).strip()
    path = Path(shown)
    if not path.is_absolute():
        path = base / path
    label = str(row.get("label") or "").strip() or path.stem
    attributes = {k: v for k, v in row.items()
                  if k not in RESERVED_COLUMNS and k is not None and v not in (None, "")}
    return Record(path, label, shown, attributes)


def _read_csv(manifest: Path) -> Iterator[Record]:
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise ManifestError(f"{manifest}: a manifest needs a 'path' column")
            for n, row in enumerate(reader, start=2):
                yield _record(row, manifest.parent, f"{manifest}:{n}")
    except UnicodeDecodeError:
        raise ManifestError(f"{manifest}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise ManifestError(f"{manifest}: malformed CSV ({exc})") from None


MAX_JSONL_LINE = 1 << 20


def _read_jsonl(manifest: Path) -> Iterator[Record]:
    try:
        with manifest.open(encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                if len(line) > MAX_JSONL_LINE:
                    raise ManifestError(f"{manifest}:{n}: a line longer than {MAX_JSONL_LINE:,} characters")
                if text.json_depth(line) > text.MAX_DEPTH:
                    raise ManifestError(f"{manifest}:{n}: JSON nested deeper than {text.MAX_DEPTH} levels")
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ManifestError(f"{manifest}:{n}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise ManifestError(f"{manifest}:{n}: each line must be a JSON object")
                yield _record(row, manifest.parent, f"{manifest}:{n}")
    except UnicodeDecodeError:
        raise ManifestError(f"{manifest}: not a UTF-8 text file") from None


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def open_regular(path: Path | str) -> int:
    """A file descriptor of ``path`` if it is (or links to) a regular file; else :class:`NotRegularFile`.

    Opened with O_NONBLOCK and checked with fstat on the open descriptor, so a
    FIFO never blocks the open, a device such as /dev/zero is never read
    forever, and a file swapped between a check and the open cannot slip by.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(next((what for test, what in _KINDS if test(mode)), "a special file"))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- worker side -------------------------------------------------------------

_WORKER_SIGNALS: list[str] = []
_WORKER_EXTRAS: dict[str, pipeline.PictureExtra] = {}


def _init_worker(signal_names: list[str], extras: dict[str, pipeline.PictureExtra] | None = None) -> None:
    """Set what :func:`work_on` computes in this process (a pool worker, a Ray worker or the driver)."""
    global _WORKER_SIGNALS, _WORKER_EXTRAS
    _WORKER_SIGNALS = signal_names
    _WORKER_EXTRAS = dict(extras or {})
    try:  # one image per process: library-internal threads only oversubscribe
        import cv2
        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - cv2 is a dependency
        pass


# What the per-image work returns: (position, extraction or None, error code, error detail).
Outcome = tuple[int, pipeline.Extraction | None, str, str]


def read_image_file(path: str) -> bytes:
    """The file's bytes, refused (ImageError) when it is not a regular file or too large to be an image."""
    return images._read_bytes(path, images.DEFAULT_MAX_BYTES)


def _work(job: tuple[int, str]) -> Outcome:
    """The worker pool's task: read the file, then :func:`work_on`."""
    position, path = job
    return work_on(position, lambda: read_image_file(path))


def work_on(position: int, read: Callable[[], bytes]) -> Outcome:
    """The per-image work of every engine: ``read()`` the bytes and extract the signals.

    Reading is a callable so that each engine reads where its bytes are (the pool in
    its worker, Ray on the driver that holds the crawl) while the outcome of every
    failure, read or decode, is the same error code either way.
    """
    try:
        data = read()
        return position, pipeline.extract(data, _WORKER_SIGNALS, extras=_WORKER_EXTRAS), "", ""
    except images.ImageError as exc:
        return position, None, exc.code, str(exc)
    except OSError as exc:
        return position, None, "unreadable", f"cannot read the file ({exc.strerror or exc})"
    except Exception as exc:  # a signal's own failure must not stop a crawl
        return position, None, "signal_failed", f"{type(exc).__name__}: {exc}"[:200]


# --- driver ------------------------------------------------------------------

def index_records(
    store: Store,
    bank: Bank,
    records: Iterable[Record],
    signal_names: list[str],
    *,
    workers: int | None = 1,
    source: str = "",
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 64,
    checkpoint_seconds: float = 30.0,
    max_bad: float = DEFAULT_MAX_BAD,
    keeper: Any = None,
    picture_extras: dict[str, pipeline.PictureExtra] | None = None,
    after_batch: Callable[[list[tuple[Item, bool, NewImage]]], None] | None = None,
    engine: Engine | None = None,
    hashed: dict[Path, str] | None = None,
) -> IngestReport:
    """Index ``records`` into ``bank`` and return what happened.

    ``progress(done, failed)`` is called after each image. KeyboardInterrupt
    stops the run after committing and checkpointing what was finished.
    ``records`` is consumed once (a stream); only those still to index are kept.
    More than ``max_bad`` unreadable rows after MIN_ROWS_FOR_BAD_SHARE raises
    :class:`TooManyBadRows` before anything is stored. ``keeper``
    (:class:`indexer.store.photos.FileKeeper`) keeps each new image's photo for reviewers.
    ``workers``: processes that decode (None: one per core, see :func:`worker_count`).
    ``picture_extras`` run in the workers on each decode (:func:`indexer.pipeline.extract`)
    and ``after_batch`` gets each stored batch with them (item, created, image), so a
    caller's per-image work (the ad linker's prints) needs no second decode.
    ``engine`` maps the per-image work (default: :class:`PoolEngine` of ``workers``;
    :class:`indexer.ray_engine.RayEngine` on a Ray cluster); whatever maps it, the
    skipping, batching and writing here are the same, so every engine resumes alike.
    ``hashed`` (when given) gets each readable record's path -> sha256 as read here, so a
    caller that walks the records again (the ad linker) need not read and hash every file twice.
    """
    engine = engine or PoolEngine(workers)
    report = IngestReport(bank=bank.name, source=source,
                          started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                          engine=engine.name)
    start = time.monotonic()
    known = store.catalog.known_sha256(bank.id)
    todo: list[tuple[int, str]] = []
    by_position: dict[int, Record] = {}
    seen_in_run: set[str] = set()
    for position, record in enumerate(records):
        report.seen += 1
        try:
            sha = file_sha256(record.path)
        except OSError as exc:
            report.add_error(record.shown_as, "unreadable", f"cannot read the file ({exc.strerror or exc})")
            _check_bad_share(report, max_bad)
            continue
        if hashed is not None:
            hashed[record.path] = sha
        if sha in known:
            report.already_indexed += 1
        elif sha in seen_in_run:
            report.duplicates_in_run += 1
        else:
            seen_in_run.add(sha)
            todo.append((position, str(record.path)))
            by_position[position] = record
    if progress:
        progress(report.seen - len(todo), report.failed)

    pending: list[NewImage] = []
    last_checkpoint = time.monotonic()
    done = report.seen - len(todo)

    def flush() -> None:
        nonlocal last_checkpoint
        if pending:
            try:
                if keeper:
                    keeper.sync()  # the batch's photos on disk before the rows naming them commit
                results = store.add_images(bank, pending)
            except BaseException:
                for img in pending if keeper else ():
                    keeper.discard(img.attributes)
                raise
            for img, (_item, was_new) in zip(pending, results, strict=True):
                if keeper and not was_new:  # stored meanwhile by another run: that one's photo is kept
                    keeper.discard(img.attributes)
            if after_batch is not None:
                after_batch([(item, created, new)
                             for (item, created), new in zip(results, pending, strict=True)])
            created = sum(1 for _item, was_new in results if was_new)
            report.indexed += created
            # Stored meanwhile by another run on the same bank: already indexed, not lost.
            report.already_indexed += len(results) - created
            pending.clear()
        if time.monotonic() - last_checkpoint > checkpoint_seconds:
            store.checkpoint()
            last_checkpoint = time.monotonic()

    try:
        with interrupts.stop_between_images() as stop, \
                contextlib.closing(engine.run(todo, signal_names, picture_extras)) as outcomes:
            for position, extraction, code, detail in outcomes:
                record = by_position.pop(position)
                done += 1
                if extraction is None:
                    report.add_error(record.shown_as, code, detail)
                elif len(record.label) > LABEL_MAX:  # refused alike on SQLite and PostgreSQL (VARCHAR)
                    report.add_error(record.shown_as, "label_too_long",
                                     f"the label has {len(record.label)} characters, at most {LABEL_MAX}")
                else:
                    kept = keeper.keep(record.path, extraction.sha256) if keeper else {}
                    pending.append(NewImage(extraction, record.label, record.stored_source(),
                                            {**record.attributes, **kept}))
                    if len(pending) >= batch_size:
                        flush()
                if progress:
                    progress(done, report.failed)
                stop.check()  # Ctrl-C: this image is kept, the run stops here
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        checkpoint_seconds = -1.0  # force the final save
        try:
            flush()
        finally:
            if keeper is not None and hasattr(keeper, "close"):
                keeper.close()  # the photo writers' threads end with the run
        report.nodes = dict(sorted(engine.nodes.items()))
        report.seconds = time.monotonic() - start
    if report.indexed and not report.interrupted:
        # Train/fill the local-feature descriptor index now rather than on the first query.
        features.update_after_ingest(store, bank, signal_names)
    report.seconds = time.monotonic() - start
    return report


def _check_bad_share(report: IngestReport, max_bad: float) -> None:
    if report.seen >= MIN_ROWS_FOR_BAD_SHARE and report.failed > max_bad * report.seen:
        reasons = ", ".join(f"{n} {code}" for code, n in sorted(report.errors_by_reason.items()))
        raise TooManyBadRows(f"{report.source or 'the source'}: {report.failed} of the first "
                             f"{report.seen} rows are bad ({reasons}; more than {max_bad:.0%}); "
                             "nothing was indexed")


class Engine(Protocol):
    """What maps the per-image work (:func:`work_on`) over the images still to index.

    ``run`` yields one :data:`Outcome` per job, in any order; ``nodes`` counts the
    images each machine extracted (empty where that means nothing, as in the pool). ``run`` is
    a generator: the indexing loop closes it when it stops early (Ctrl-C), which ends the
    engine's workers.
    """

    name: str
    nodes: dict[str, int]

    def run(self, todo: list[tuple[int, str]], signal_names: list[str],
            extras: dict[str, pipeline.PictureExtra] | None) -> Generator[Outcome, None, None]: ...


class PoolEngine:
    """Worker processes on this machine (``--workers N``): the default engine."""

    name = "pool"

    def __init__(self, workers: int | None = 1) -> None:
        self.workers = workers
        self.nodes: dict[str, int] = {}

    def run(self, todo: list[tuple[int, str]], signal_names: list[str],
            extras: dict[str, pipeline.PictureExtra] | None) -> Iterator[Outcome]:
        return _run(todo, signal_names, self.workers, extras)


# ``workers=None`` (the CLI's default) starts one worker per core once a run has this many
# images per worker to decode: below it a forked worker's start costs more than it saves.
MIN_IMAGES_PER_WORKER = 16


def cores() -> int:
    """CPUs this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def worker_count(workers: int | None, images: int) -> int:
    """The worker processes for ``images`` to decode: ``workers`` as given, or (None) one per
    core, fewer when the run is too small to keep them busy (never more than images)."""
    if workers is None:
        workers = min(cores(), images // MIN_IMAGES_PER_WORKER)
    return max(1, min(workers, images))


def _single_threaded() -> bool:
    """True when this process runs one thread (Linux: /proc/self/task), so forking it is safe."""
    import threading

    if threading.active_count() != 1:
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:  # no procfs: cannot tell, so do not fork
        return False


def start_method() -> str:
    """``fork`` where it is safe, else ``forkserver``.

    A forked worker starts in milliseconds with every module the parent
    imported (NumPy, OpenCV, imagehash and the signals), where a forkserver
    child starts an interpreter and imports them again: 0.3-0.5 s of CPU
    before the first image, which is most of a small crawl's work. Forking is
    only unsafe when another thread of the parent (a library's pool: OpenMP,
    FAISS, OpenCV, or a caller's thread) could hold a lock at the fork; so a
    process with a single thread forks and any other takes the forkserver.
    ``reunite index`` forks before it touches FAISS or decodes anything.
    """
    if sys.platform.startswith("linux") and _single_threaded():
        return "fork"
    return "forkserver"


def _run(todo: list[tuple[int, str]], signal_names: list[str], workers: int | None,
         extras: dict[str, pipeline.PictureExtra] | None = None
         ) -> Iterator[Outcome]:
    count = worker_count(workers, len(todo))
    if count <= 1:
        _init_worker(signal_names, extras)
        for job in todo:
            yield _work(job)
        return
    method = start_method()
    if method == "fork":  # Pillow's common decoders, imported once here rather than in every worker
        from PIL import Image
        Image.preinit()
    ctx = mp.get_context(method)
    with ctx.Pool(count, initializer=_init_worker, initargs=(signal_names, extras)) as pool:
        # In order: the catalog gets the crawl's order whatever the worker count (ids, reports).
        yield from pool.imap(_work, todo, chunksize=4)


_HELD_LOCKS: dict[str, int] = {}


def hold_index_lock(store: Store, bank: Bank, on_wait: Callable[[], None] | None = None) -> None:
    """Take the bank's index lock for the rest of this process, waiting while another run holds it.

    The catalog alone keeps concurrent writers correct (see
    :mod:`indexer.store.store`), but a run is more than its inserts: the ads
    it links, the local-feature index it trains and the indexes it saves all
    assume that the bank holds what this run read at its start, and two runs
    over one crawl would decode every image twice for nothing. So ``reunite
    index`` takes an advisory lock (``flock``) on
    ``locks/index-bank-<id>.lock`` of the data folder; a second run calls
    ``on_wait`` once and waits, then skips what the first stored. The lock is
    held until the process exits (a CLI run is one process), and the kernel
    drops it when the process dies, so a killed run never blocks the next.
    Runs on different banks proceed side by side; taking it twice in one
    process is a no-op.
    """
    folder = store.data_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = str((folder / f"index-bank-{bank.id}.lock").resolve())
    if path in _HELD_LOCKS:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if on_wait is not None:
            on_wait()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
    _HELD_LOCKS[path] = fd


def write_report(store: Store, report: IngestReport) -> Path:
    folder = store.data_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in report.bank)[:60]
    path = folder / f"index-{safe}-{stamp}.json"
    path.write_text(report.to_json(), encoding="utf-8")
    return path
