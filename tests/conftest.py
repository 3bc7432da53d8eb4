"""Shared test helpers: fixture photos, generated edits and a CLI runner.

Everything runs for real: SQLite files and FAISS indexes in tmp_path, the real
`reunite` command in a subprocess where exit codes and stderr matter. Tests
that take ``catalog_url`` (or ``module_catalog_url``) run twice: on the embedded
SQLite catalog (the URL is None) and on a throwaway database of one real
PostgreSQL server started for the run (tests/pg_server.py). With
``REUNITE_TEST_VECTORS=milvus`` the PostgreSQL half keeps its vectors in the run's
Milvus server too (tests/milvus_server.py) instead of FAISS files: every data folder
on PostgreSQL gets the Milvus URL the way it gets its database URL (``catalog_env_of``
for `reunite` subprocesses, ``$REUNITE_VECTORS_URL`` for in-process services).
"""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

try:
    import milvus_server
    import ray_cluster
    from pg_server import (
        CATALOG_OF,
        MISSING,
        NEW_FOLDERS_ON,
        OPT_OUT_ENV,
        VECTORS_ON,
        PostgresServer,
        find_bin,
        opted_out,
    )
except ModuleNotFoundError:  # imported as tests.conftest (a subprocess probe with the repo on its path)
    from tests import milvus_server, ray_cluster
    from tests.pg_server import (
        CATALOG_OF,
        MISSING,
        NEW_FOLDERS_ON,
        OPT_OUT_ENV,
        VECTORS_ON,
        PostgresServer,
        find_bin,
        opted_out,
    )

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
CATALOG_URL_ENV = "REUNITE_CATALOG_URL"
VECTORS_URL_ENV = "REUNITE_VECTORS_URL"
# "milvus": the PostgreSQL half of the doubled modules runs on Milvus vectors (default: FAISS).
TEST_VECTORS_ENV = "REUNITE_TEST_VECTORS"
BACKENDS = ("sqlite", "postgresql")
# A developer's own REUNITE_CATALOG_URL must not send the SQLite half of the suite to their database.
os.environ.pop(CATALOG_URL_ENV, None)
os.environ.pop(VECTORS_URL_ENV, None)  # nor the FAISS half to their Milvus
PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "brick.png"]


def photo(name: str) -> Image.Image:
    """A fixture photo as RGB."""
    return Image.open(FIXTURES / name).convert("RGB")


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def tiles(n: int, size: int = 96, seed: int = 0) -> list[Image.Image]:
    """``n`` distinct small photos cut from the fixtures at random places and scales."""
    rng = np.random.default_rng(seed)
    sources = [photo(p) for p in PHOTOS]
    out = []
    for i in range(n):
        src = sources[i % len(sources)]
        side = int(rng.integers(min(src.size) // 4, min(src.size) // 2))
        x = int(rng.integers(0, src.width - side))
        y = int(rng.integers(0, src.height - side))
        tile = src.crop((x, y, x + side, y + side)).resize((size, size))
        # A unique stamp makes every tile a different picture even if crops overlap.
        arr = np.asarray(tile).copy()
        arr[:8, :8] = rng.integers(0, 255, (8, 8, 3))
        out.append(Image.fromarray(arr))
    return out


def bind_catalog(data: Path, url: str | None) -> None:
    """Remember that ``data``'s catalog is at ``url`` (None: the SQLite file in it)."""
    if url:
        CATALOG_OF[Path(data).resolve()] = url


def catalog_of(data: Path) -> str | None:
    """The catalog URL of ``data`` (None: the SQLite file in it), given a database on first use if asked."""
    key = Path(data).resolve()
    if key not in CATALOG_OF and NEW_FOLDERS_ON:
        CATALOG_OF[key] = NEW_FOLDERS_ON[-1].create_database()
    return CATALOG_OF.get(key)


def catalog_rows(data: Path, statement: str) -> list[tuple]:
    """The rows of a read-only SQL statement on ``data``'s catalog, on whichever backend holds it.

    Read-only on SQLite (a missing file is an error, not a new empty catalog), so that a test
    polling a run in progress never creates or locks the catalog under it.
    """
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    url = catalog_of(data) or f"sqlite:///file:{Path(data) / 'catalog.sqlite'}?mode=ro&uri=true"
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sqlalchemy.text(statement))]
    finally:
        engine.dispose()


def vectors_for(catalog_url: str | None) -> str | None:
    """The vectors URL that goes with ``catalog_url``: the run's Milvus for a PostgreSQL catalog
    under ``REUNITE_TEST_VECTORS=milvus``, else None (FAISS files in the data folder)."""
    return VECTORS_ON[-1] if catalog_url and VECTORS_ON else None


def vectors_of(data: Path) -> str | None:
    """The vectors URL of ``data``'s service (None: FAISS files in it); see :func:`vectors_for`."""
    return vectors_for(catalog_of(data))


def catalog_env_of(data: Path) -> dict[str, str]:
    """The environment that points a `reunite` subprocess at ``data``'s catalog and vectors."""
    return catalog_env(catalog_of(data))


def run_reunite(*args: str, data: Path, timeout: float = 300, check: bool = False,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `reunite` command (python -m api.cli) and capture its output."""
    cmd = [sys.executable, "-m", "api.cli", "--data", str(data), *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **catalog_env_of(data), **(env or {})}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=full_env)
    if check and done.returncode != 0:
        raise AssertionError(f"reunite {' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def catalog_sql(data: Path, statement: str, *args: object) -> list[tuple]:
    """Run raw SQL on a data folder's catalog, as an attacker with file access would."""
    with sqlite3.connect(data / "catalog.sqlite") as conn:
        rows = conn.execute(statement, args).fetchall()
        conn.commit()
    return rows


# --- catalog backends ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole run; missing binaries fail the PostgreSQL tests loudly."""
    if opted_out():
        pytest.skip(f"PostgreSQL tests skipped ({OPT_OUT_ENV}=0)")
    bindir = find_bin()
    if bindir is None:
        pytest.fail(MISSING, pytrace=False)
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def milvus_vectors_asked() -> bool:
    """Whether ``REUNITE_TEST_VECTORS=milvus``: the PostgreSQL half runs on Milvus vectors too."""
    value = os.environ.get(TEST_VECTORS_ENV, "").strip().lower()
    if value not in ("", "faiss", "milvus"):
        raise pytest.UsageError(f"{TEST_VECTORS_ENV} must be faiss or milvus, not {value!r}")
    return value == "milvus"


def _on_milvus(item: pytest.Item) -> bool:
    """Whether ``item`` needs the run's Milvus: it asks for it, or it is a PostgreSQL-half test
    under ``REUNITE_TEST_VECTORS=milvus``."""
    if "milvus" in getattr(item, "fixturenames", ()):
        return True
    callspec = getattr(item, "callspec", None)
    return (milvus_vectors_asked() and callspec is not None
            and callspec.params.get("backend") == "postgresql")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The catalog backend of this module's run; modules that use it run once per backend.

    Under ``REUNITE_TEST_VECTORS=milvus`` the PostgreSQL run also sets ``$REUNITE_VECTORS_URL``
    to the run's Milvus for the module (in-process services read it, as `reunite serve` does) and
    gives every folder on PostgreSQL that URL (:func:`catalog_env_of`, :func:`vectors_of`).
    """
    name = str(request.param)
    if name != "postgresql" or not milvus_vectors_asked():
        yield name
        return
    if milvus_server.opted_out():
        pytest.skip(f"{TEST_VECTORS_ENV}=milvus, but the Milvus tests are skipped "
                    f"({milvus_server.OPT_OUT_ENV}=0)")
    if not milvus_server.installed():
        pytest.fail(milvus_server.MISSING, pytrace=False)
    url = _MILVUS.running().url
    old = os.environ.get(VECTORS_URL_ENV)
    os.environ[VECTORS_URL_ENV] = url
    VECTORS_ON.append(url)
    try:
        yield name
    finally:
        VECTORS_ON.pop()
        if old is None:
            os.environ.pop(VECTORS_URL_ENV, None)
        else:
            os.environ[VECTORS_URL_ENV] = old


@pytest.fixture(autouse=True)
def _vectors_only_for_the_postgresql_half(request: pytest.FixtureRequest,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A test of a doubled module that is not on the PostgreSQL backend runs on FAISS, even while
    that module's PostgreSQL run holds ``$REUNITE_VECTORS_URL``."""
    if VECTORS_ON and not _on_milvus(request.node):
        monkeypatch.delenv(VECTORS_URL_ENV, raising=False)


def _database(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    if backend == "sqlite":
        yield None  # the default: catalog.sqlite in the data folder
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)


@pytest.fixture
def catalog_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None (SQLite in the data folder) or the URL of a new PostgreSQL database for this test."""
    yield from _database(backend, request)


@pytest.fixture(scope="module")
def module_catalog_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Like ``catalog_url``, one database for a module's shared service."""
    yield from _database(backend, request)


@pytest.fixture(scope="module")
def every_folder_on_backend(backend: str, request: pytest.FixtureRequest) -> Iterator[None]:
    """Every data folder the test's `reunite` runs use lives on ``backend`` (a new database each).

    For CLI modules whose tests make their folders themselves (``tmp_path / "data"``):
    ``pytestmark = pytest.mark.usefixtures("every_folder_on_backend")`` runs them once per
    backend without threading a URL through every call. Module-scoped fixtures that make
    folders take it as an argument, so that they are made again for each backend.
    """
    if backend == "sqlite":
        yield
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    before = set(CATALOG_OF)
    NEW_FOLDERS_ON.append(server)
    try:
        yield
    finally:
        NEW_FOLDERS_ON.pop()
        for key in set(CATALOG_OF) - before:
            server.drop_database(CATALOG_OF.pop(key))


def catalog_env(url: str | None) -> dict[str, str]:
    """The environment that points a `reunite` subprocess at ``url`` (nothing for SQLite), and at
    the run's Milvus for its vectors under ``REUNITE_TEST_VECTORS=milvus``."""
    if not url:
        return {}
    vectors = vectors_for(url)
    return {CATALOG_URL_ENV: url, **({VECTORS_URL_ENV: vectors} if vectors else {})}


# --- Ray --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def ray_cluster_of_two() -> Iterator[ray_cluster.RayCluster]:
    """One two-node Ray cluster (tests/ray_cluster.py) for the whole run, started on first use."""
    if ray_cluster.opted_out():
        pytest.skip(f"Ray tests skipped ({ray_cluster.OPT_OUT_ENV}=0)")
    ray = ray_cluster.ray_bin()
    if ray is None:
        pytest.fail(ray_cluster.MISSING, pytrace=False)
    cluster = ray_cluster.RayCluster(ray)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# --- Milvus -----------------------------------------------------------------------------------

class _MilvusHolder:
    """The run's one Milvus server (tests/milvus_server.py): started on first use, stopped after
    the last test that needs it (idle, it still costs ~10% of a core), started again if one more does."""

    server: milvus_server.MilvusServer | None = None

    def running(self) -> milvus_server.MilvusServer:
        if self.server is None:
            server = milvus_server.MilvusServer()
            try:
                server.start()
            except BaseException:
                server.stop()
                raise
            self.server = server
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server, server = None, self.server
            server.stop()


_MILVUS = _MilvusHolder()


@pytest.fixture
def milvus() -> Iterator[milvus_server.MilvusServer]:
    """The Milvus server of the run (one for the whole session unless tests not needing it come between)."""
    if milvus_server.opted_out():
        pytest.skip(f"Milvus tests skipped ({milvus_server.OPT_OUT_ENV}=0)")
    if not milvus_server.installed():
        pytest.fail(milvus_server.MISSING, pytrace=False)
    yield _MILVUS.running()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # Under REUNITE_TEST_VECTORS=milvus every doubled module's PostgreSQL half needs it (and may
    # hold services on it across its tests): kept to the end of the run rather than restarted.
    if nextitem is None or (not _on_milvus(nextitem) and not milvus_vectors_asked()):
        _MILVUS.stop()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """An interrupted run (Ctrl-C) never reaches the last test's teardown: the server stops here."""
    _MILVUS.stop()

