"""Publishable statistics: differential privacy (OpenDP), suppression and the privacy-budget ledger.

The data are real catalogs (SQLite) filled through the review queue; the
releases go through the CLI in subprocesses, the HTTP API on loopback, and the
ledger is raced by real processes.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from api_support import ROOT, live_api, reunite
from conftest import catalog_env
from sqlalchemy import update

from indexer.store.catalog import Item, Subject
from indexer.store.store import Store
from matcher import decide, dp_stats, privacy_ledger, review
from matcher.search import Candidate

UNTIL = dt.date(2026, 11, 29)  # a Sunday: the period's last week is 2026-11-23..29
WEEK = dt.timedelta(weeks=1)
BIG_BUDGET = {"REUNITE_PRIVACY_BUDGET": "100"}


def _confirm(store: Store, bank: str, label: str, at: list[dt.datetime]) -> None:
    """One subject of ``bank`` confirmed once per time in ``at`` (each from its own query image)."""
    queue = review.ReviewQueue(store.catalog)
    bank_row = store.catalog.ensure_bank(bank, "venue")
    with store.catalog.session() as s:
        subject = Subject(bank_id=bank_row.id, label=label)
        s.add(subject)
        s.flush()
        item = Item(bank_id=bank_row.id, subject_id=subject.id, sha256=os.urandom(32).hex())
        s.add(item)
        s.flush()
        sid, iid = subject.id, item.id
    for when in at:
        cand = Candidate(bank, label, sid, None, iid, 0.9, decide.MATCH)
        [cid] = queue.record([cand], {bank: bank_row}, os.urandom(32).hex(), "inv").values()
        queue.decide(cid, "reviewer-1", "reviewer", "confirm")
        with store.catalog.session() as s:
            s.execute(update(review.ReviewDecision).where(review.ReviewDecision.candidate_id == cid)
                      .values(at=when))
            s.execute(update(review.StoredCandidate).where(review.StoredCandidate.id == cid)
                      .values(created_at=when - dt.timedelta(hours=5)))


def _world(path: Path, *, with_extra_subject: bool) -> Store:
    """40 subjects confirmed in the last week, 3 in the week before; optionally one more subject
    confirmed in three different weeks (the neighbouring data set)."""
    store = Store(path)
    last = dt.datetime.combine(UNTIL, dt.time(12)) - dt.timedelta(days=2)
    for n in range(40):
        _confirm(store, "rooms", f"busy-{n}", [last])
    for n in range(3):
        _confirm(store, "rooms", f"quiet-{n}", [last - WEEK])
    if with_extra_subject:
        _confirm(store, "rooms", "extra", [last - 2 * WEEK, last - WEEK, last])
    return store


# --- suppression -----------------------------------------------------------------------

def test_suppression_reads_the_noisy_count_and_merges_what_it_hides() -> None:
    assert dp_stats.suppress([3, 12, 9, 15], 10) == ([None, 12, None, 15], 12)
    assert dp_stats.suppress([3, 12, 4, 15], 10) == ([None, 12, None, 15], None)  # 7: still too small
    assert dp_stats.suppress([10, 11], 10) == ([10, 11], None)


def test_suppressed_cells_never_appear_in_a_release_or_the_ledger(tmp_path: Path) -> None:
    store = _world(tmp_path / "data", with_extra_subject=False)
    params = dp_stats.ReleaseParams(epsilon=3.0, weeks=4, until=UNTIL, threshold=10)
    for _ in range(5):
        row = privacy_ledger.publish(store.catalog, params, "test", environ=BIG_BUDGET)
        stored = privacy_ledger.entry(store.catalog, row.id)
        for table in ("confirmed", "reviewed"):
            for bank_row in stored.tables[table]:
                values = list(bank_row["weeks"].values())
                assert len(values) == 4  # every cell of the grid, whatever the data
                assert all(v is None or v >= 10 for v in values), values
                merged = bank_row["suppressed_weeks"]
                assert merged is None or merged >= 10
    assert privacy_ledger.budget(store.catalog, environ=BIG_BUDGET).spent == pytest.approx(15.0)


# --- the empirical privacy check -------------------------------------------------------------

SAMPLES = 100_000
TOLERANCE = 1.15


def _ratio_bounds(exact_a: int, exact_b: int, sensitivity: int, epsilon: float, *,
                  scale_factor: float = 1.0) -> tuple[float, float]:
    """Smallest and largest P_a(k) / P_b(k) over the outputs both give at least 5% mass.

    ``scale_factor`` < 1 draws with less noise than the stated epsilon needs (the negative control).
    """
    draw_eps = epsilon / scale_factor
    a = Counter(dp_stats.noisy_counts([exact_a] * SAMPLES, sensitivity, draw_eps))
    b = Counter(dp_stats.noisy_counts([exact_b] * SAMPLES, sensitivity, draw_eps))
    ratios = [a[k] / b[k] for k in set(a) | set(b) if min(a[k], b[k]) >= 0.05 * SAMPLES]
    assert ratios, "no output value carries 5% of both distributions"
    return min(ratios), max(ratios)


def test_one_subject_changes_a_released_count_within_e_to_the_epsilon(tmp_path: Path) -> None:
    """Neighbouring catalogs (with and without one subject who was confirmed in three weeks).

    The bound keeps one row of that subject, so the exact tables differ by 1 in one cell;
    the released count's distribution must then change by a factor of at most e^epsilon for
    every output. OpenDP draws its noise from the OS CSPRNG, which cannot be seeded (a seed
    would let its holder subtract the noise), so the test cannot fix seeds; instead its
    tolerance is far outside sampling error: every compared output holds at least 5% of
    100,000 draws (>= 5,000), so the relative standard error of a ratio is below 2% and the
    15% tolerance sits more than 7 standard errors away (a false failure has probability
    below 1e-12). The negative control, drawn with half the noise the epsilon needs, must
    fail the same bound: the check has the power to see a wrong scale.
    """
    params = dp_stats.ReleaseParams(epsilon=3.0, weeks=4, until=UNTIL, contributions=1)
    with_one = dp_stats.exact_tables(_world(tmp_path / "d1", with_extra_subject=True).catalog, params)
    without = dp_stats.exact_tables(_world(tmp_path / "d0", with_extra_subject=False).catalog, params)
    a, b = with_one.vector("confirmed"), without.vector("confirmed")
    diff = [x - y for x, y in zip(a, b, strict=True)]
    assert sum(abs(d) for d in diff) == params.contributions  # the contribution bound holds
    cell = next(i for i, d in enumerate(diff) if d)
    epsilon = params.split()["confirmed"]
    low, high = _ratio_bounds(a[cell], b[cell], params.contributions, epsilon)
    assert high <= math.exp(epsilon) * TOLERANCE and low >= math.exp(-epsilon) / TOLERANCE, (low, high)
    assert high >= math.exp(epsilon) / TOLERANCE  # and it is not far noisier than stated
    _low, leaky = _ratio_bounds(a[cell], b[cell], params.contributions, epsilon, scale_factor=0.5)
    assert leaky > math.exp(epsilon) * TOLERANCE


# --- the ledger ---------------------------------------------------------------------------

RACER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from indexer.store.store import Store
    from matcher import dp_stats, privacy_ledger
    store = Store(Path(sys.argv[1]), os.environ.get("REUNITE_CATALOG_URL"))
    go = Path(sys.argv[2])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    try:
        row = privacy_ledger.publish(store.catalog, dp_stats.ReleaseParams(epsilon=3.0, weeks=2),
                                     sys.argv[3], environ={"REUNITE_PRIVACY_BUDGET": "10"})
        print("published", row.seq, flush=True)
    except privacy_ledger.OverBudget:
        print("refused", flush=True)
""")


def test_the_ledger_refuses_a_release_over_budget_across_processes(tmp_path: Path,
                                                                   catalog_url: str | None) -> None:
    """Four processes release epsilon 3 each at the same moment on a budget of 10: three win."""
    data = tmp_path / "data"
    _confirm(Store(data, catalog_url), "rooms", "s", [dt.datetime(2026, 11, 20, 12)])
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(data), str(go), f"racer-{n}"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1", **catalog_env(catalog_url)})
             for n in range(4)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outcomes.append(out.split()[0])
    assert sorted(outcomes) == ["published"] * 3 + ["refused"]
    rows = privacy_ledger.entries(Store(data, catalog_url).catalog)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[-1].spent_after == pytest.approx(9.0)
    assert sum(r.epsilon for r in rows) <= 10


def test_cli_release_is_recorded_audited_and_reproduced_by_show(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _world(data, with_extra_subject=False)
    env = {"REUNITE_PRIVACY_BUDGET": "5"}
    made = reunite("stats", "release", "--epsilon", "3", "--weeks", "4", "--until", UNTIL.isoformat(),
                   "--json", data=data, env=env)
    assert made.returncode == 0, made.stderr
    released = json.loads(made.stdout)
    assert released["epsilon"] == pytest.approx(3.0) and released["library"].startswith("opendp")
    assert [r["bank"] for r in released["tables"]["confirmed"]] == ["rooms"]
    shown = reunite("stats", "show", str(released["id"]), "--json", data=data, env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == released  # the same numbers: no new noise, no new budget
    over = reunite("stats", "release", "--epsilon", "3", data=data, env=env)
    assert over.returncode == 2 and len(over.stderr.strip().splitlines()) == 1
    assert "2 of the budget (5) is left" in over.stderr
    ledger = json.loads(reunite("stats", "ledger", "--json", data=data, env=env).stdout)
    assert ledger["spent"] == pytest.approx(3.0) and len(ledger["releases"]) == 1
    missing = reunite("stats", "show", "99", data=data, env=env)
    assert missing.returncode == 2
    from api.application import Application
    events = [(e.action, e.result) for e in Application(data).audit.events(limit=1000)
              if e.action.startswith("stats.")]
    assert ("stats.release", "ok") in events and ("stats.release", "rejected") in events
    assert ("stats.show", "ok") in events and ("stats.show", "rejected") in events


def test_http_release_ledger_and_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    _world(data, with_extra_subject=False)
    monkeypatch.setenv("REUNITE_PRIVACY_BUDGET", "4")
    with live_api(data) as api:
        admin = api.as_("admin")
        made = admin.post("/v1/stats", json={"epsilon": 3, "weeks": 4, "until": UNTIL.isoformat()})
        assert made.status_code == 201, made.text
        released = made.json()
        assert admin.get(f"/v1/stats/{released['id']}").json() == released
        over = admin.post("/v1/stats", json={"epsilon": 2})
        assert over.status_code == 409 and over.json()["error"] == "privacy_budget_exhausted"
        assert admin.post("/v1/stats", json={"epsilon": 0}).status_code == 422
        assert admin.get("/v1/stats/99").status_code == 404
        ledger = admin.get("/v1/stats").json()
        assert ledger["left"] == pytest.approx(1.0)
        assert [r["id"] for r in ledger["releases"]] == [released["id"]]
        assert api.as_("investigator").post("/v1/stats", json={}).status_code == 403
        events = [e for e in api.service.audit.events(limit=1000) if e.action == "stats.release"]
        assert [e.result for e in events] == ["ok", "conflict", "rejected", "denied"]
        assert events[0].detail["release"] == released["id"]
