"""The ``reunite`` application object, the options every verb shares, and ``index`` and ``match``.

The other verbs live in their own modules of this package and register on
``app`` when :data:`COMMAND_MODULES` is loaded.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from api.cli import coercion

coercion.install()  # plain option values without pydantic (0.15-0.25 s of every start)

CATALOG_URL_ENV = "REUNITE_CATALOG_URL"
VECTORS_URL_ENV = "REUNITE_VECTORS_URL"

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="reunite: image hashing and missing-person matching for counter-trafficking work.",
    pretty_exceptions_enable=False,
)


class State:
    data_dir: Path = Path(os.environ.get("REUNITE_DATA", "reunite-data"))
    catalog_url: str | None = os.environ.get(CATALOG_URL_ENV) or None
    vectors_url: str | None = os.environ.get(VECTORS_URL_ENV) or None


state = State()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@app.callback()
def _root(
    data: Annotated[Path | None, typer.Option(
        "--data", help="Data folder (catalog + indexes).", envvar="REUNITE_DATA")] = None,
    catalog_url: Annotated[str | None, typer.Option(
        "--catalog-url", help="Catalog database (SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db); "
                              "default: the SQLite file in the data folder.", envvar=CATALOG_URL_ENV,
        show_envvar=True)] = None,
    vectors_url: Annotated[str | None, typer.Option(
        "--vectors-url", help="Vector indexes: milvus://HOST:PORT for a Milvus server shared by every "
                              "process; default: FAISS files in the data folder.", envvar=VECTORS_URL_ENV,
        show_envvar=True)] = None,
) -> None:
    if data is not None:
        state.data_dir = data
    if catalog_url:
        state.catalog_url = catalog_url
    if vectors_url:  # the service (and its workers) read it from the environment, as the CLI's own env
        state.vectors_url = vectors_url
        os.environ[VECTORS_URL_ENV] = vectors_url
    engine_progress()


def engine_progress(quiet: bool = False) -> None:
    """Report the engine's own long steps on stderr like a verb's progress (api.progress).

    A venue bank's vocabulary is trained by the first search that needs it, deep
    in the matcher (indexer.progress_hooks); without this a `match`, or the watch
    of an `index` run, sat silent for a minute. Verbs with ``--quiet`` call it again.
    """
    from api.progress import Progress
    from indexer import progress_hooks

    progress_hooks.install(lambda label, unit, total: Progress(label, unit, total, quiet=quiet))


def open_store():  # noqa: ANN201 - imported lazily to keep `--help` fast
    from indexer.store.store import Store
    return Store(state.data_dir, state.catalog_url, state.vectors_url)


def open_app():  # noqa: ANN201 - api.application.Application, imported lazily
    """The application layer over the data folder: the CLI obeys the service's rules.

    Exits 2 with one line when the audit key (or the encryption key) is unusable.
    """
    from api.application import Application
    from indexer.crypto import KeyProblem

    try:
        return Application(state.data_dir, state.catalog_url)
    except KeyProblem as exc:
        raise fail(str(exc)) from None


def region_or_fail(region: str) -> str:
    """A phone region code checked against libphonenumber's, or exit 2 naming it."""
    from matcher.networks.contacts import check_region
    try:
        return check_region(region)
    except ValueError as exc:
        raise fail(str(exc)) from None


def bank_or_fail(store, name: str):  # noqa: ANN001, ANN201 - Store/Bank imported lazily
    """The bank called ``name``, or exit 2 with the known banks named on stderr."""
    try:
        return store.bank_or_error(name)
    except LookupError as exc:
        raise fail(str(exc.args[0])) from None


def banks_or_fail(store, names: list[str]) -> list:  # noqa: ANN001 - Store imported lazily
    """The banks called ``names`` (each once), or exit 2 naming every unknown one (as HTTP match does)."""
    found = {n: store.catalog.bank(n) for n in dict.fromkeys(names)}
    missing = [n for n, b in found.items() if b is None]
    if missing:
        known = ", ".join(b.name for b in store.catalog.banks()) or "none yet"
        raise fail(f"unknown bank(s): {', '.join(missing)} (banks: {known})")
    return list(found.values())


def default_signals(kind: str) -> list[str]:
    from indexer.kinds import default_families
    return default_families(kind)


def parse_signals(value: str | None, kind: str) -> list[str]:
    from indexer.signals import base as signals
    families = [f.strip() for f in value.split(",")] if value else default_signals(kind)
    try:
        return signals.resolve(families)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from None


@app.command("index")
def index_cmd(
    source: Annotated[Path, typer.Argument(
        help="Folder, CSV/JSONL manifest, WARC crawl (.warc, .warc.gz) or image file.")],
    bank: Annotated[str, typer.Option("--bank", help="Bank to index into.")],
    kind: Annotated[str, typer.Option("--kind", help="ads | venue | missing_person")] = "ads",
    signals_opt: Annotated[str | None, typer.Option(
        "--signals", help="Signal families or names, comma separated (default: per kind).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Worker processes that decode (default: one per core, fewer for a "
                                 "small crawl).")] = None,
    engine: Annotated[str, typer.Option(
        "--engine", help="pool: worker processes on this machine (--workers); ray: the machines of a "
                         "Ray cluster (needs the `ray` extra).")] = "pool",
    address: Annotated[str | None, typer.Option(
        "--address", help="--engine ray: the cluster's address (host:port of its head); default "
                          "$RAY_ADDRESS, else a Ray started on this machine for the run.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    link: Annotated[bool, typer.Option(
        "--link/--no-link", help="Ads banks: record each ad's photos and contacts and link new ads "
                                 "into networks.")] = True,
    region: Annotated[str, typer.Option(
        "--region", help="Ads banks: country (ISO 3166 alpha-2) of phone numbers without +prefix.")
                      ] = "US",
    max_bad: Annotated[float, typer.Option(
        "--max-bad", min=0.0, max=1.0, help="Refuse the source, storing nothing, when more than this "
                                            "share of its first 1000+ rows are unreadable.")] = 0.5,
    watch: Annotated[bool, typer.Option(
        "--watch/--no-watch", help="Ads banks: check the new ads against every bank that watches this "
                                   "one (missing persons, venues, hash lists) and queue the candidates; "
                                   "--no-watch leaves them for the next run.")] = True,
) -> None:
    """Index a crawl (folder or manifest) into a bank; re-running resumes.

    For an ``ads`` bank the manifest's ``label`` is the ad id and its other
    columns (site, url, posted_at, phones, emails, location, ...) are kept per
    ad, reposts included, and new ads are linked into networks (``--no-link``
    defers that to ``reunite networks``).
    """
    with startup_without_gc():  # imports, the catalog's open: long-lived objects only
        single_threaded_libraries()
        engine_progress(quiet)
        from indexer import ingest

        if kind == "missing_person":
            raise fail("missing-person references are added with `reunite enroll`, which "
                       "records consent; `index` is for crawls")
        if engine not in ("pool", "ray"):
            raise fail(f"unknown --engine {engine!r} (pool or ray)")
        if address is not None and engine != "ray":
            raise fail("--address is the Ray cluster's: use it with --engine ray")
        if engine == "ray" and workers is not None:
            raise fail("--workers is the pool's: with --engine ray every CPU of the cluster works")
        spool = tempfile.TemporaryDirectory(prefix="reunite-warc-")  # WARC payloads as files; removed at exit
        try:
            warc_reader, records = crawl_records(source, Path(spool.name))  # a stream, never held whole
        except ingest.ManifestError as exc:
            raise fail(str(exc)) from None
        names = parse_signals(signals_opt, kind)
        region = region_or_fail(region)
        mapper = ray_engine(address, quiet) if engine == "ray" else ingest.PoolEngine(workers)
        application = open_app()  # photos kept and watch candidates queued by the application layer
        store = application.store
        try:
            bank_row = store.catalog.ensure_bank(bank, kind)
        except ValueError as exc:
            raise fail(str(exc)) from None
        keeper = photo_keeper(application, bank_row)
        ingest.hold_index_lock(store, bank_row, on_wait=lambda: typer.echo(
            f"waiting for another index run on bank {bank_row.name} to finish", err=True))
        bar, progress = progress_bar(None, quiet)
        # An ads bank always gets what linking needs from this run (each ad's rows, the link prints
        # computed from the workers' decode); --no-link defers only the search to `reunite networks`,
        # which then links exactly as this run would have (nothing it needs is lost with the run).
        linking = bank_row.kind == "ads"
        extras, link_batch = link_staging(store, bank_row) if linking else (None, None)
    created: set[int] = set()  # this run's new items: the watch reuses their faces
    hashed: dict[Path, str] = {}  # each file's sha256 as indexing read it: linking reuses them

    def after_batch(stored) -> None:  # noqa: ANN001 - [(Item, created, NewImage)]
        created.update(int(item.id) for item, was_new, _new in stored if was_new)
        if link_batch is not None:
            link_batch(stored)

    try:
        report = ingest.index_records(store, bank_row, records, names, workers=workers,
                                      source=str(source), progress=progress, max_bad=max_bad,
                                      keeper=keeper, picture_extras=extras, after_batch=after_batch,
                                      engine=mapper, hashed=hashed)
    except ingest.ManifestError as exc:  # a bad row, or a flood of unreadable ones: nothing stored
        bar.close(completed=False)
        raise fail(str(exc)) from None
    except BaseException:
        bar.close(completed=False)
        raise
    finally:
        bar.close()
    path = ingest.write_report(store, report)
    for err in report.errors[:20]:
        typer.echo(f"  skipped {err['path']}: {err['detail']}", err=True)
    if len(report.errors) > 20:
        typer.echo(f"  ... and {len(report.errors) - 20} more", err=True)
    typer.echo(report.summary())
    if report.engine == "ray":
        typer.echo(f"ray: {sum(report.nodes.values())} images processed on {len(report.nodes)} node(s)")
    if warc_reader is not None:
        typer.echo(f"warc: {warc_reader.records} records read, {warc_reader.images} images, "
                   f"{warc_reader.not_images} non-image records skipped")
    if linking and not report.interrupted:
        from api.cli.networks import link_records

        typer.echo(link_records(store, bank_row, crawl_records(source, Path(spool.name))[1], region,
                                hashed, search=link, quiet=quiet))
    if watch and not report.interrupted:
        from api.watching import Indexed
        typer.echo(watch_bank(application, bank_row, quiet, keeper.paths,
                              Indexed(frozenset(created), frozenset(names))))
    if watch and not report.interrupted and bank_row.kind == "venue" and report.indexed:
        from api.cli.enroll import back_search_lines
        for line in back_search_lines(application, bank_row, quiet):
            typer.echo(line)
    typer.echo(f"report: {path}")
    if report.interrupted:
        typer.echo("interrupted: run the same command again to resume", err=True)
        raise typer.Exit(130)
    problems = incomplete_run(report, source, warc_reader)
    for line in problems:
        typer.echo(line, err=True)
    if problems:
        raise typer.Exit(INDEX_INCOMPLETE)


# `reunite index` exit codes: 0 every image of the source indexed (or already there); 1 the run
# finished but left something out (a file failed, a WARC is damaged part-way: the rest is
# stored, the report lists what failed); 2 the source or an option was refused, nothing stored;
# 130 interrupted (run it again to resume).
INDEX_INCOMPLETE = 1


def incomplete_run(report, source: Path, warc_reader) -> list[str]:  # noqa: ANN001 - IngestReport, WarcReader
    """The summary lines (stderr) of what a finished index run left out; [] when nothing was.

    Why an exit code of its own: a cron job or a pipeline must see that a crawl was
    not indexed whole without parsing the text, and a damaged WARC is the same case as
    a bad file (what precedes the damage is stored, what follows is not).
    """
    lines = []
    if report.failed:
        reasons = ", ".join(f"{n} {code}" for code, n in sorted(report.errors_by_reason.items()))
        lines.append(f"incomplete: {report.failed} of {report.seen} images failed ({reasons}); "
                     "the others were indexed, the report lists each failure")
    if warc_reader is not None and warc_reader.problem:
        lines.append(f"{source}: damaged after record {warc_reader.records} ({warc_reader.problem}); "
                     "the records before it were indexed")
    return lines


def ray_engine(address: str | None, quiet: bool):  # noqa: ANN201 - indexer.ray_engine.RayEngine
    """Join the Ray cluster (exit 2 with one line when Ray is missing or unreachable) and its engine."""
    from indexer import ray_engine as rayer

    try:
        joined = rayer.connect(address)
    except rayer.RayUnavailable as exc:
        raise fail(str(exc)) from None
    if not quiet:
        typer.echo(joined, err=True)
    return rayer.RayEngine()


def crawl_records(source: Path, spool: Path):  # noqa: ANN201 - (WarcReader | None, records)
    """The records of a folder, manifest or image file, or of a WARC crawl (its reader kept for
    the counts and the damage it met); the source's own problems raise ManifestError now."""
    from indexer import ingest, warc

    if not warc.is_warc(source):
        return None, ingest.iter_source(source)
    reader = warc.WarcReader(source, spool)
    return reader, ingest.primed(iter(reader))


def photo_keeper(application, bank):  # noqa: ANN001, ANN201 - a FileKeeper or None
    """Keep each new photo for reviewers (sealed where the bank needs it), per the bank's policy."""
    from indexer.crypto import MissingKey
    from indexer.store.photos import FileKeeper, needs_encryption
    from matcher.search.watch import keeps_photos

    try:
        application.require_key(bank.kind, bank.policy, bank.name)
    except MissingKey as exc:
        raise fail(str(exc)) from None
    return FileKeeper(application.photos, bank.id, needs_encryption(bank.kind, bank.policy),
                      keep=keeps_photos(bank))


def watch_bank(application, bank, quiet: bool, paths=None, indexed=None) -> str:  # noqa: ANN001
    """Check the bank's unchecked ads against its watchers (api/watching.py); the summary line.

    ``indexed`` (:class:`api.watching.Indexed`): what this run created, whose faces are reused.
    """
    from api.application import cli_actor
    from api.watching import check_ads

    bar, _progress = progress_bar(None, quiet, label="watch", unit="ad")
    try:
        report = check_ads(application, bank, cli_actor(), paths=paths, indexed=indexed,
                           progress=lambda done, total: bar.update(done, total))
    finally:
        bar.close()
    return report.summary()


def link_staging(store, bank):  # noqa: ANN001, ANN201 - (picture extras, after-batch hook) for ingest
    """The indexing workers compute each new ad photo's link print from their own decode, and
    each stored batch writes them, so linking afterwards reads and decodes no file again."""
    from matcher.networks.links import stage_prints
    from matcher.networks.prints import print_of

    def after_batch(stored) -> None:  # noqa: ANN001 - [(Item, created, NewImage)]
        stage_prints(store, bank, [(int(item.id), new.extraction.extras["link_print"])
                                   for item, created, new in stored
                                   if created and "link_print" in new.extraction.extras])

    return {"link_print": print_of}, after_batch


@contextmanager
def startup_without_gc() -> Iterator[None]:
    """No cyclic garbage collection while a verb imports its libraries and opens the catalog.

    Importing SQLAlchemy, NumPy, FAISS and the catalog's models creates some
    hundred thousand long-lived objects and almost no garbage, yet the
    collector walks them again and again as they are made: 9% of the CPU of
    `index`'s imports (1.09 -> 1.00 s, median of 8 alternated runs, load ~6).
    Afterwards they are frozen (``gc.freeze``: later collections skip them, and
    forked workers do not touch their pages) and collection resumes as before.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def single_threaded_libraries() -> None:
    """One thread per process for BLAS, OpenMP and FAISS, set before NumPy is first imported.

    Indexing is one small image after another (and parallel across worker
    processes), so a library's own thread pool only spins: on a busy 2-core
    machine a 64x256 matrix product for PDQ took 8 ms with the default pool and
    1.4 ms on one thread, and FAISS's range search of the linker 20 ms. A value
    the user set is kept.
    """
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")


def progress_bar(total: int | None, quiet: bool, label: str = "index", unit: str = "img"):  # noqa: ANN201
    """Progress on stderr (a bar on a terminal, log lines otherwise: api.progress) and its callback."""
    from api.progress import Progress

    bar = Progress(label, unit, total, quiet=quiet)

    def progress(done: int, failed: int) -> None:
        bar.update(done, failed=failed)

    return bar, progress


def _read_queries(images: list[Path], manifest: Path | None) -> list[tuple[str, Path]]:
    from indexer import ingest

    queries = [(str(p), p) for p in images]
    if manifest is not None:
        try:
            queries += [(r.shown_as, r.path) for r in ingest.read_source(manifest)]
        except ingest.ManifestError as exc:
            raise fail(str(exc)) from None
    if not queries:
        raise fail("give at least one IMAGE or --manifest FILE")
    return queries


@app.command("match")
def match_cmd(
    images: Annotated[list[Path] | None, typer.Argument(help="Query images.")] = None,
    bank: Annotated[list[str] | None, typer.Option(
        "--bank", help="Bank name(s): repeat --bank and/or separate names by commas.")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="CSV/JSONL of queries.")
                        ] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=100, help="Candidates per query.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per query.")] = False,
) -> None:
    """Rank the candidates of each query image in the given banks (each query is audited)."""
    import hashlib

    from api.application import cli_actor
    from api.bank_names import bank_names
    from api.evidence_text import evidence_lines
    from indexer import images as image_io
    from indexer.crypto import MissingKey
    from indexer.text import displayable

    queries = _read_queries(images or [], manifest)
    names = bank_names(bank)
    if not names:
        raise fail("--bank is required")
    application = open_app()
    banks = banks_or_fail(application.store, names)
    try:
        application.require_keys(banks)
    except MissingKey as exc:
        raise fail(str(exc)) from None
    actor, bank_names = cli_actor(), ",".join(b.name for b in banks)[:120]
    policies = {b.name: b.policy for b in banks}
    failures = 0
    for shown, path in queries:
        candidates, error = [], None
        try:
            data = image_io._read_bytes(path, image_io.DEFAULT_MAX_BYTES)
            obj = f"query:{hashlib.sha256(data).hexdigest()}"
        except image_io.ImageError as exc:
            data, obj, error = b"", "query:unreadable", exc
        with application.audited(actor, "match", obj, banks=bank_names, via="cli") as note:
            if error is None:
                try:
                    candidates = application.matcher.match(data, banks, top=top)
                except image_io.ImageError as exc:
                    error = exc
            if error is not None:
                note.refuse(error.code)
            queued = {} if error is not None else application.queue_candidates(  # the path of HTTP match
                candidates, banks, hashlib.sha256(data).hexdigest(), data, actor.name)
            note.detail.update(candidates=len(candidates), queued=len(queued),
                               best=candidates[0].decision if candidates else "none")
        if error is not None:
            failures += 1
            typer.echo(f"error: {shown}: {error}", err=True)
            if as_json:
                typer.echo(json.dumps({"query": shown, "error": error.code, "detail": str(error),
                                       "candidates": []}))
            continue
        if as_json:
            typer.echo(json.dumps({"query": shown, "candidates": [
                {**c.to_json(), **({"review_id": queued[n]} if n in queued else {})}
                for n, c in enumerate(candidates)]}))
        else:
            typer.echo(shown)
            for n, c in enumerate(candidates):
                typer.echo(f"  {c.decision:6} {c.score:.3f}  {c.bank}/{displayable(c.label)}  item {c.item}"
                           + (f"  review #{queued[n]}" if n in queued else ""))
                for line in evidence_lines(c.evidence, c.score, c.decision, policies.get(c.bank)):
                    typer.echo(f"           {line}")
            if not candidates:
                typer.echo("  no candidates")
    if failures:
        raise typer.Exit(2)


@app.command("banks")
def banks_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array of {name, kind, items, verified}.")
                       ] = False,
) -> None:
    """List the banks of the data folder with their sizes."""
    from indexer.store import peek

    # stdlib sqlite3, read-only: no SQLAlchemy, NumPy or FAISS to load
    quick = peek.banks(state.data_dir, state.catalog_url)
    if quick is None:
        store = open_store()
        quick = [peek.BankSummary(b.name, b.kind, store.catalog.count_items(b.id), b.policy or {})
                 for b in store.catalog.banks()]
    if as_json:  # for scripts: an empty folder is [], not silence
        typer.echo(json.dumps([{"name": b.name, "kind": b.kind, "items": b.items,
                                "verified": b.policy.get("verified") is not False} for b in quick]))
        return
    typer.echo("bank\tkind\titems")
    for summary in quick:
        trust = "\tunverified" if summary.policy.get("verified") is False else ""  # an unsigned import
        typer.echo(f"{summary.name}\t{summary.kind}\t{summary.items} items{trust}")
    if not quick:  # silence reads as a broken command or the wrong folder
        typer.echo(f"no banks yet in {state.data_dir} (`reunite index` or `reunite enroll` make them)")


# --- commands defined in their own modules (each registers on `app` when imported) ---
# Add one line per module; keep this block just above main().
COMMAND_MODULES: list[str] = [
    "api.cli.eval",
    "api.cli.enroll",
    "api.cli.service",
    "api.cli.networks",
    "api.cli.alerts",
    "api.cli.stats",
    "api.cli.search",
    "api.cli.watches",
    "api.cli.review",
]


def _load_command_modules() -> None:
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module)


def catalog_problem(exc: BaseException) -> str | None:
    """One line for a catalog that cannot be used as configured, else None (a real bug: traceback)."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    from indexer.store.catalog import FolderOfAnotherCatalog
    from indexer.store.milvus_vectors import BadVectorsUrl, VectorsUnavailable, milvus_failure
    from indexer.store.schema import CatalogTooNew

    if isinstance(exc, CatalogTooNew | FolderOfAnotherCatalog | BadVectorsUrl | VectorsUnavailable):
        return str(exc)
    if (failure := milvus_failure(exc)) is not None:
        return failure
    if isinstance(exc, ArgumentError | NoSuchModuleError) and state.catalog_url:
        return f"--catalog-url / ${CATALOG_URL_ENV} is not a usable database URL ({exc.__class__.__name__})"
    if isinstance(exc, ModuleNotFoundError) and state.catalog_url:
        return (f"the catalog's database driver is not installed ({exc.name}); for PostgreSQL: "
                "pip install 'reunite[postgres]'")
    if isinstance(exc, OperationalError) and state.catalog_url and "connect" in str(exc.orig).lower():
        first = str(exc.orig).strip().splitlines()[0][:200]
        return f"cannot reach the catalog database ({first})"
    return None


def main() -> None:
    """Entry point of the ``reunite`` console script."""
    _load_command_modules()
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a full disk is the operator's to fix: one line, exit 2, not a traceback
        from indexer.store.space import storage_full
        from indexer.store.vectors import BadIndexChoice
        message = str(exc) if isinstance(exc, BadIndexChoice) else catalog_problem(exc)
        if message is not None:  # a misconfigured index choice or an unusable catalog: one line
            typer.echo(f"error: {message}", err=True)
            sys.exit(2)
        if not storage_full(exc):
            raise
        typer.echo("error: storage full: the data folder's disk is full; what was stored before is kept "
                   "whole (writes are atomic); free space and run the command again", err=True)
        sys.exit(2)


_load_command_modules()
