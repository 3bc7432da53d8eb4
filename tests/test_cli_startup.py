"""Light verbs load only what they use: the heavy libraries stay out of `--help`, `banks` and `keys list`.

Pinned by the imports themselves (``python -X importtime`` of the real command), not by a clock:
these verbs are typed many times a day and must start at once, so FAISS, OpenCV, the face and
scene models and SQLAlchemy's ORM are loaded by the verbs that need them, on first use.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_reunite, tiles

HEAVY = ("cv2", "faiss", "dlib", "torch", "onnxruntime", "sqlalchemy", "fastapi", "numpy", "ray", "pyarrow",
         "pydantic")


def imported(*args: str, data: Path) -> set[str]:
    """Top-level packages the real ``reunite`` command imported while running ``args``."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "api.cli", "--data", str(data), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with a bank of a few photos and one API key."""
    root = tmp_path_factory.mktemp("startup")
    photos = root / "photos"
    photos.mkdir()
    for i, tile in enumerate(tiles(3)):
        tile.save(photos / f"p{i}.png")
    data = root / "data"
    run_reunite("index", str(photos), "--bank", "crawl", "--signals", "hashes", "--quiet", data=data,
                check=True)
    run_reunite("keys", "create", "--role", "reviewer", "--name", "rev", data=data, check=True)
    return data


@pytest.mark.parametrize("args", [("--help",), ("banks",), ("keys", "list")])
def test_light_verbs_do_not_import_heavy_libraries(filled: Path, args: tuple[str, ...]) -> None:
    loaded = imported(*args, data=filled)
    assert "api" in loaded  # the parse saw the command's own modules
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_light_verbs_answer_from_the_catalog(filled: Path) -> None:
    banks = run_reunite("banks", data=filled, check=True).stdout
    assert banks.splitlines() == ["bank\tkind\titems", "crawl\tads\t3 items"]
    listed = json.loads(run_reunite("banks", "--json", data=filled, check=True).stdout)
    assert listed == [{"name": "crawl", "kind": "ads", "items": 3, "verified": True}]
    header, row = run_reunite("keys", "list", data=filled, check=True).stdout.splitlines()
    assert header == "name\trole\tstate\tcreated\tlast used"
    name, role, status, created, used = row.split("\t")
    assert (name, role, status, used) == ("rev", "reviewer", "active", "never")
    assert re.fullmatch(r"20\d\d-\d\d-\d\d \d\d:\d\d", created), created
    run_reunite("keys", "revoke", "rev", data=filled, check=True)
    row = run_reunite("keys", "list", data=filled, check=True).stdout.splitlines()[1]
    assert row.split("\t")[2].startswith("revoked 20")
    [listed_key] = json.loads(run_reunite("keys", "list", "--json", data=filled, check=True).stdout)
    assert listed_key["state"] == "revoked" and listed_key["last_used"] is None
    assert listed_key["created"].startswith(created.replace(" ", "T"))


def test_banks_of_an_empty_folder_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "nothing"
    assert imported("banks", data=data).isdisjoint(HEAVY)
    assert run_reunite("banks", "--json", data=data, check=True).stdout.strip() == "[]"
    human = run_reunite("banks", data=data, check=True).stdout.splitlines()
    assert human[0] == "bank\tkind\titems" and human[1].startswith("no banks yet in ")
    assert not data.exists()


def test_index_does_not_import_the_web_framework(tmp_path: Path) -> None:
    """A crawl's `index` needs the catalog and the key table, never FastAPI's routes (about 0.25 s)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, tile in enumerate(tiles(2)):
        tile.save(photos / f"p{i}.png")
    loaded = imported("index", str(photos), "--bank", "crawl", "--signals", "hashes", "--quiet",
                      data=tmp_path / "data")
    assert "sqlalchemy" in loaded  # it did open the catalog
    web = {"fastapi", "starlette", "limits"}
    assert not loaded & web, sorted(loaded & web)
    # A new folder's catalog comes from the schema snapshot (no Alembic), and a crawl without
    # phone numbers in the default region needs no libphonenumber (issue 21: the first run's start).
    deferred = {"alembic", "mako", "phonenumbers"}
    assert not loaded & deferred, sorted(loaded & deferred)


def test_index_on_an_up_to_date_catalog_does_not_import_alembic(filled: Path, tmp_path: Path) -> None:
    """Opening a catalog at this release's head is one read of its version table: Alembic (and
    Mako, its dialect modules) is imported only to upgrade one."""
    photos = tmp_path / "photos"
    photos.mkdir()
    tiles(1)[0].save(photos / "again.png")
    loaded = imported("index", str(photos), "--bank", "crawl", "--signals", "hashes", "--quiet", data=filled)
    assert "sqlalchemy" in loaded
    assert not loaded & {"alembic", "mako"}, sorted(loaded & {"alembic", "mako"})


def test_index_of_hashes_imports_no_pydantic_face_or_model_libraries(tmp_path: Path) -> None:
    """`index --signals hashes` loads the catalog, NumPy, Pillow, OpenCV and FAISS, and nothing for
    other verbs: no pydantic (Typer's coercion of plain values, api/cli/coercion.py), no review
    queue or alert tables (api.application makes them on first use), no model runtimes."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, tile in enumerate(tiles(2)):
        tile.save(photos / f"p{i}.png")
    done = subprocess.run(
        [sys.executable, "-c", "import runpy, sys; sys.argv = ['reunite', *sys.argv[1:]]\n"
         "try:\n    runpy.run_module('api.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         "print(' '.join(sorted(sys.modules)))", "--data", str(tmp_path / "data"), "index", str(photos),
         "--bank", "crawl", "--signals", "hashes", "--quiet", "--workers", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    modules = set(done.stdout.split("\n")[-2].split())
    assert {"sqlalchemy", "numpy", "faiss", "api.application"} <= modules  # it did index and link
    unused = {"pydantic", "scipy", "numpy.ma", "matcher.review.queue", "matcher.review.outbox",
              "matcher.review.cases", "onnxruntime", "dlib", "torch", "fastapi", "alembic"}
    assert not modules & unused, sorted(modules & unused)


def test_plain_option_values_coerce_as_typers_own_adapter() -> None:
    """api/cli/coercion.py returns what Typer's pydantic adapter returns, value and type, for every
    value it takes; the values it leaves (refusals, odd spellings) go to that adapter."""
    from typer._coercion import build_runtime_param, resolve_type_descriptor
    from typer.models import OptionInfo

    from api.cli.coercion import _NOT_PLAIN, plain_value

    table = [
        (str, {}, ["x", "", "ads,venue", "é"]),
        (bool, {}, [True, False, "true"]),
        (Path, {}, ["x", "a/b/", "/tmp", "", Path("y"), "-"]),
        (int, {}, ["5", "05", "-5", "+5", " 5", "5_0", "5.0", 7, "1e3", "x", True]),
        (int, {"min": 1}, ["0", "1", "3", -2, 2]),
        (int, {"max": 100}, ["100", "101", 99]),
        (float, {}, ["0.5", "1", "-1.5", ".5", "5.", "1e-3", "nan", 1, 0.5, " 0.5"]),
        (float, {"min": 0.0, "max": 1.0}, ["0.5", "1.5", "-0.1", 1, 0.0]),
        (float, {"min": 0.01}, ["0.001", "0.01", "2"]),
    ]
    taken = 0
    for annotation, info, values in table:
        parameter_info = OptionInfo(**info)
        typers = build_runtime_param(resolve_type_descriptor(annotation, parameter_info))
        for value in values:
            ours = plain_value(annotation, parameter_info, value)
            if ours is _NOT_PLAIN:
                continue
            taken += 1
            theirs = typers._coerce_value(value, param=None, ctx=None)
            assert (ours, type(ours)) == (theirs, type(theirs)), (annotation, info, value)
    assert taken >= 30
    assert plain_value(int, OptionInfo(min=1), "0") is _NOT_PLAIN  # Typer's own words for a refusal
    assert plain_value(float, OptionInfo(), "nan") is _NOT_PLAIN


@pytest.mark.parametrize("engine", ["pool", "nonsense"])
def test_index_resumes_garbage_collection_after_its_start(tmp_path: Path, engine: str) -> None:
    """`index` collects no garbage while it imports and opens the catalog (api.cli.main.startup_without_gc),
    and collection is on again for the run and after it, also when the start is refused (exit 2)."""
    import gc

    from api.cli.main import app

    photos = tmp_path / "photos"
    photos.mkdir()
    tiles(1)[0].save(photos / "p.png")
    states: list[bool] = []
    real = gc.freeze

    def freeze() -> None:
        states.append(gc.isenabled())  # still paused when the start ends
        real()

    gc.freeze = freeze
    try:
        with pytest.raises(SystemExit) as done:
            app(["--data", str(tmp_path / "data"), "index", str(photos), "--bank", "crawl", "--signals",
                 "hashes", "--quiet", "--workers", "1", "--engine", engine], standalone_mode=True)
    finally:
        gc.freeze = real
        gc.unfreeze()
    assert done.value.code == (0 if engine == "pool" else 2)
    assert states == [False] and gc.isenabled()
