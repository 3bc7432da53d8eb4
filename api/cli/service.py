"""``reunite serve``, ``reunite keys ...`` and ``reunite audit verify``.

Keys are created and revoked on the command line only (never over HTTP), by
whoever can reach the data folder: that person is the admin of last resort,
and each creation or revocation is an audit event of ``cli:<unix user>``.
`keys create` prints the key alone on its last line so that scripts can take
it with ``tail -n1``; it is shown once and only its hash is kept.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from api.cli.main import app, fail, open_app, state

T = TypeVar("T")
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="Check the audit trail.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")


def _catalog():  # noqa: ANN202 - lazy imports keep `--help` fast
    from indexer.store.catalog import Catalog
    return Catalog.open(state.data_dir, state.catalog_url)


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port.")] = 8000,
    max_upload_mb: Annotated[float | None, typer.Option(
        "--max-upload-mb", min=0.01, help="Largest request body (default 20, or $REUNITE_MAX_UPLOAD_BYTES).")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    workers: Annotated[int, typer.Option(
        "--workers", min=1, max=64, help="Worker processes sharing the port, the catalog and the saved "
                                         "indexes (memory-mapped hash indexes are shared, not copied).")
    ] = 1,
) -> None:
    """Run the HTTP API (OpenAPI at /docs) over the data folder."""
    import uvicorn

    from api.budgets import BadBudget
    from api.http.app import create_app
    from indexer.crypto import KeyProblem

    upload = int(max_upload_mb * 1024 * 1024) if max_upload_mb else None
    try:
        application = create_app(state.data_dir, catalog_url=state.catalog_url, max_upload_bytes=upload)
    except (KeyProblem, BadBudget) as exc:
        raise fail(str(exc)) from None
    # Access logs carry paths only (pseudonyms, bank names, candidate ids), never bodies.
    if workers == 1:
        uvicorn.run(frozen_after_start(application), host=host, port=port, log_level=log_level,
                    server_header=False)
        return
    # Several processes: each builds its own app from the environment (uvicorn imports the factory).
    del application
    os.environ[_WORKER_DATA_ENV] = str(Path(state.data_dir).resolve())
    if upload is not None:
        os.environ[_WORKER_UPLOAD_ENV] = str(upload)
    if state.catalog_url:  # every worker opens the same catalog (PostgreSQL: the same server)
        os.environ[_WORKER_CATALOG_ENV] = state.catalog_url
    uvicorn.run("api.cli.service:worker_app", factory=True, workers=workers, host=host, port=port,
                log_level=log_level, server_header=False)


_WORKER_DATA_ENV = "REUNITE_SERVE_WORKER_DATA"
_WORKER_UPLOAD_ENV = "REUNITE_SERVE_WORKER_UPLOAD"
_WORKER_CATALOG_ENV = "REUNITE_SERVE_WORKER_CATALOG"


def worker_app() -> Any:
    """The app of one worker of ``reunite serve --workers N`` (the data folder from the parent)."""
    from api.http.app import create_app

    upload = os.environ.get(_WORKER_UPLOAD_ENV)
    return frozen_after_start(create_app(
        Path(os.environ[_WORKER_DATA_ENV]), catalog_url=os.environ.get(_WORKER_CATALOG_ENV),
        max_upload_bytes=int(upload) if upload else None))


def frozen_after_start(application: T) -> T:
    """``application``, with every object alive after the server's start frozen (``gc.freeze``).

    Why: a started server holds ~190,000 long-lived objects (FastAPI's routes and models,
    SQLAlchemy's mappers, the service), and each full collection walked them all: at 10M
    references one every ~2,000 hash lookups, a 100-130 ms pause of the worker (every request
    in flight waits: the p99 under load), where the lookup itself costs ~3 ms (BENCHMARKS.md).
    Frozen, they are skipped by every later collection; garbage made after the start is
    collected as before. The start's own garbage is collected first, so none of it is kept.
    """
    gc.collect()
    gc.freeze()
    return application


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option("--role", help="admin | investigator | reviewer | ingest | partner")],
    name: Annotated[str, typer.Option("--name", help="Who holds the key (shown in the audit log).")],
) -> None:
    """Issue a key; the key is printed alone on the last line, once."""
    from api.api_keys import create_key
    from api.application import cli_actor
    from indexer.text import with_article

    application = open_app()
    with application.audited(cli_actor(), "key.create", f"key:{name}", role=role[:32], via="cli") as note:
        try:
            key = create_key(application.store.catalog, role, name)
        except ValueError as exc:
            note.refuse("bad_key_request")
            raise fail(str(exc)) from None
    typer.echo(f"created {with_article(role)} key named {name!r}; store it now, it is not shown again:")
    typer.echo(key)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key (takes effect on the next request)."""
    from api.api_keys import revoke_key
    from api.application import cli_actor

    application = open_app()
    with application.audited(cli_actor(), "key.revoke", f"key:{name}", via="cli") as note:
        if not revoke_key(application.store.catalog, name):
            note.refuse("key_not_found")
            raise fail(f"no active key named {name!r}")
    typer.echo(f"revoked {name!r}")


KEYS_HEADER = "name\trole\tstate\tcreated\tlast used"


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON array of {name, role, state, created, revoked, last_used} (UTC, ISO 8601).")
    ] = False,
) -> None:
    """Names, roles, states, creation and last use of the keys (never the keys).

    The last use is precise to a minute (it is written at most once a minute per key).
    """
    import json

    from indexer.store import peek
    from indexer.text import displayable

    # stdlib sqlite3, read-only: no FastAPI or SQLAlchemy to load
    quick = peek.api_keys(state.data_dir, state.catalog_url)
    if quick is None:
        from api.api_keys import list_keys

        quick = [peek.KeySummary(k.name, k.role, _iso(k.revoked_at), _iso(k.created_at), _iso(k.last_used_at))
                 for k in list_keys(_catalog())]
    if as_json:
        typer.echo(json.dumps([{"name": displayable(k.name), "role": k.role,
                                "state": "revoked" if k.revoked_at else "active",
                                "created": _iso(k.created_at), "revoked": _iso(k.revoked_at),
                                "last_used": _iso(k.last_used_at)} for k in quick]))
        return
    typer.echo(KEYS_HEADER)
    for k in quick:  # names stored before the text rule are escaped
        status = f"revoked {_minute(k.revoked_at)}" if k.revoked_at else "active"
        typer.echo(f"{displayable(k.name)}\t{k.role}\t{status}\t{_minute(k.created_at)}\t"
                   f"{_minute(k.last_used_at) if k.last_used_at else 'never'}")
    if not quick:
        typer.echo(f"no keys yet in {state.data_dir} (create one with `reunite keys create`)")


def _iso(value: object) -> str | None:
    """A catalog time (a datetime, or SQLite's text of one) as ISO 8601 to the second, UTC."""
    import datetime as dt

    if value is None:
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return when.replace(microsecond=0).isoformat()


def _minute(value: object) -> str:
    """A catalog time as ``YYYY-MM-DD HH:MM`` (UTC), as people read it in a table."""
    return (_iso(value) or "")[:16].replace("T", " ")


@app.command("migrate")
def migrate_cmd(
    check: Annotated[bool, typer.Option(
        "--check", help="Only report: exit 0 when the schema is this release's, 1 when an upgrade is "
                        "due, 2 when a newer release upgraded it. Changes nothing.")] = False,
) -> None:
    """Upgrade the catalog's schema to this release (every command also does it when it opens one)."""
    from sqlalchemy import create_engine

    from indexer.store import schema
    from indexer.store.catalog import Catalog, sqlite_url, with_driver

    if check:
        url = state.catalog_url or sqlite_url(state.data_dir)
        if url == sqlite_url(state.data_dir) and not (state.data_dir / "catalog.sqlite").is_file():
            raise fail(f"no catalog in {state.data_dir}")
        engine = create_engine(with_driver(url))
        try:
            with engine.connect() as conn:
                now = schema.current(conn)
        finally:
            engine.dispose()
        if now is not None and not schema.known(now):
            raise fail(f"catalog schema {now} is newer than this release's ({schema.head()})")
        typer.echo(f"catalog schema: {now or 'none (0.1.0 or new)'}; this release: {schema.head()}")
        raise typer.Exit(0 if now == schema.head() else 1)
    catalog = Catalog.open(state.data_dir, state.catalog_url)
    typer.echo(f"catalog schema: {catalog.schema_before or 'none'} -> {schema.head()}"
               if catalog.schema_before != schema.head() else f"catalog schema: {schema.head()} (up to date)")


@keys_app.command("generate-encryption-key")
def keys_generate_encryption_key() -> None:
    """Print a fresh value for REUNITE_ENCRYPTION_KEY (keep it outside the data folder)."""
    from indexer.crypto import generate_key

    typer.echo(generate_key())


@audit_app.command("verify")
def audit_verify() -> None:
    """Walk the keyed chain and the signed head; exit 1 when an event was edited or deleted."""
    from api.audit import verify_folder

    report = verify_folder(_catalog(), state.data_dir)
    for note in report.notes:
        typer.echo(f"  note: {note}")
    for problem in report.problems[:50]:
        typer.echo(f"  {problem}", err=True)
    if not report.ok:
        typer.echo(f"audit log BROKEN: {len(report.problems)} problem(s) in {report.events} events")
        raise typer.Exit(1)
    typer.echo(f"audit log intact: {report.events} events")
