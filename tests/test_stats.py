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
from api_support import ROOT, encryption_key, live_api, reunite
from conftest import catalog_env, photo, png_bytes, vectors_for
from sqlalchemy import select, update

from indexer.store.catalog import Item, Subject
from indexer.store.store import Store
from matcher.privacy import dp_stats
from matcher.privacy import ledger as privacy_ledger
from matcher.review import queue as review
from matcher.search import decide
from matcher.search.query import Candidate

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
    from matcher.privacy import dp_stats
    from matcher.privacy import ledger as privacy_ledger
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
    _confirm(Store(data, catalog_url, vectors_for(catalog_url)), "rooms", "s",
             [dt.datetime(2026, 11, 20, 12)])
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
    rows = privacy_ledger.entries(Store(data, catalog_url, vectors_for(catalog_url)).catalog)
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


# --- by site and by region (issue 20) ---------------------------------------------------------

SITE_A, SITE_B, TINY = "escort-a.example", "escort-b.example", "tiny.example"
BY_PLACE = dict(sites=(f"www.{SITE_A.upper()}", SITE_B), regions=("NL-NH", "DE-BE"))


def _place_event(store: Store, bank: str, kind: str, label: str, at: list[dt.datetime], *,
                 subject_attrs: dict | None = None, item_attrs: dict | None = None,
                 context: dict | None = None) -> int:
    """One subject of ``bank`` confirmed once per time in ``at``; returns its item id."""
    queue = review.ReviewQueue(store.catalog)
    bank_row = store.catalog.ensure_bank(bank, kind)
    with store.catalog.session() as s:
        subject = Subject(bank_id=bank_row.id, label=label, attributes=subject_attrs or {})
        s.add(subject)
        s.flush()
        item = Item(bank_id=bank_row.id, subject_id=subject.id, sha256=os.urandom(32).hex(),
                    attributes=item_attrs or {})
        s.add(item)
        s.flush()
        sid, iid = subject.id, item.id
    for when in at:
        cand = Candidate(bank, label, sid, None, iid, 0.9, decide.MATCH)
        [cid] = queue.record([cand], {bank: bank_row}, os.urandom(32).hex(), "inv", context=context).values()
        for reviewer in ("reviewer-1", "reviewer-2")[:2 if kind == "missing_person" else 1]:  # two for people
            queue.record_reveal([cid], reviewer)  # a person is confirmed only by who saw her photo
            queue.decide(cid, reviewer, "reviewer", "confirm")
        with store.catalog.session() as s:
            s.execute(update(review.ReviewDecision).where(review.ReviewDecision.candidate_id == cid)
                      .values(at=when))
    return iid


def _places(path: Path, *, with_extra_subject: bool = False) -> Store:
    """Last week: 30 ads found in an ads bank (site A, region NL-NH, from the ad's manifest columns),
    25 watched ads of site B against missing persons (region DE-BE from the watched ad's item), 20 venues
    in nl-nh (venue attribute) watched on site A (context url only), 3 ads of a tiny unnamed site."""
    store = Store(path)
    last = dt.datetime.combine(UNTIL, dt.time(12)) - dt.timedelta(days=2)
    for n in range(30):
        _place_event(store, "ads-eu", "ads", f"ad-{n}", [last],
                     item_attrs={"site": SITE_A, "region": "NL-NH", "url": f"https://{SITE_A}/{n}"})
    watched = [_place_event(store, "crawl", "ads", f"w-{n}", [], item_attrs={"region": "DE-BE"})
               for n in range(25)]
    for n, item in enumerate(watched):
        _place_event(store, "missing", "missing_person", f"case-{n}", [last],
                     context={"watched": True, "ad_item": item, "site": SITE_B})
    for n in range(20):
        _place_event(store, "rooms", "venue", f"hotel-{n}", [last], subject_attrs={"region": " nl-NH "},
                     context={"watched": True, "url": f"https://www.{SITE_A}/ad/{n}"})
    for n in range(3):
        _place_event(store, "ads-eu", "ads", f"tiny-{n}", [last], item_attrs={"site": TINY})
    if with_extra_subject:
        _place_event(store, "ads-eu", "ads", "extra", [last - 2 * WEEK, last - WEEK, last],
                     item_attrs={"site": SITE_A, "region": "NL-NH"})
    return store


def _last_week(exact: dp_stats.ExactTables, table: str) -> dict[str, int]:
    week = exact.weeks[-1]
    return {key: exact.counts[table].get((key, week), 0) for key in exact.row_keys(table)}


def test_site_and_region_of_a_candidate_come_from_the_ad_and_the_venue(tmp_path: Path) -> None:
    params = dp_stats.ReleaseParams(epsilon=3.0, weeks=4, until=UNTIL, **BY_PLACE)
    exact = dp_stats.exact_tables(_places(tmp_path / "data").catalog, params)
    assert _last_week(exact, "confirmed_by_site") == {SITE_A: 50, SITE_B: 25, "(other)": 3}
    assert _last_week(exact, "confirmed_by_region") == {"NL-NH": 50, "DE-BE": 25, "(other)": 3}
    assert _last_week(exact, "reviewed_by_site") == _last_week(exact, "confirmed_by_site")
    assert _last_week(exact, "confirmed") == {"ads-eu": 33, "crawl": 0, "missing": 25, "rooms": 20}
    assert params.count_tables() == ["confirmed", "reviewed", "confirmed_by_site", "reviewed_by_site",
                                     "confirmed_by_region", "reviewed_by_region"]
    assert sum(params.split().values()) == pytest.approx(3.0)
    plain = dp_stats.exact_tables(Store(tmp_path / "data").catalog,
                                  dp_stats.ReleaseParams(epsilon=3.0, weeks=4, until=UNTIL))
    assert set(plain.counts) == {"confirmed", "reviewed"}  # no site or region stated: no such tables


def test_one_subject_changes_each_site_and_region_table_by_at_most_its_bound(tmp_path: Path) -> None:
    params = dp_stats.ReleaseParams(epsilon=3.0, weeks=4, until=UNTIL, **BY_PLACE)
    with_one = dp_stats.exact_tables(_places(tmp_path / "d1", with_extra_subject=True).catalog, params)
    without = dp_stats.exact_tables(_places(tmp_path / "d0").catalog, params)
    for table in params.count_tables():
        diff = sum(abs(a - b) for a, b in zip(with_one.vector(table), without.vector(table), strict=True))
        assert diff == params.contributions, table


def test_release_params_refuse_bad_keys() -> None:
    for bad, message in (({"sites": ("a.example", "A.example")}, "stated twice"),
                         ({"regions": ("",)}, "empty or reserved"),
                         ({"regions": ("(other)",)}, "empty or reserved"),
                         ({"sites": tuple(f"s{n}.example" for n in range(51))}, "at most 50"),
                         ({"sites": ("x" * 121,)}, "at most 120"),
                         ({"regions": ("NL\x00NH",)}, "refused")):
        with pytest.raises(ValueError, match=message):
            dp_stats.ReleaseParams(**bad).check()


def test_site_and_region_releases_suppress_small_cells_and_name_no_unstated_site(tmp_path: Path) -> None:
    store = _places(tmp_path / "data")
    params = dp_stats.ReleaseParams(epsilon=3.0, weeks=4, until=UNTIL, threshold=10, **BY_PLACE)
    for _ in range(4):
        row = privacy_ledger.publish(store.catalog, params, "test", environ=BIG_BUDGET)
        stored = privacy_ledger.entry(store.catalog, row.id)
        assert TINY not in json.dumps(stored.tables)
        assert [r["site"] for r in stored.tables["confirmed_by_site"]] == [SITE_A, SITE_B, "(other)"]
        assert [r["region"] for r in stored.tables["reviewed_by_region"]] == ["NL-NH", "DE-BE", "(other)"]
        for table in params.count_tables():
            for key_row in stored.tables[table]:
                values = list(key_row["weeks"].values())
                assert len(values) == 4
                assert all(v is None or v >= 10 for v in values), (table, values)
                assert key_row["suppressed_weeks"] is None or key_row["suppressed_weeks"] >= 10
        assert sum(stored.epsilons.values()) == pytest.approx(3.0) and stored.epsilon == pytest.approx(3.0)
        assert dp_stats.ReleaseParams.from_json(stored.params) == params  # the same release, asked again
    assert privacy_ledger.budget(store.catalog, environ=BIG_BUDGET).spent == pytest.approx(12.0)
    with pytest.raises(privacy_ledger.OverBudget):
        privacy_ledger.publish(store.catalog, params, "test", environ={"REUNITE_PRIVACY_BUDGET": "14"})
    assert len(privacy_ledger.entries(store.catalog)) == 4  # the refused one left nothing


def test_cli_site_and_region_release_is_shown_and_reproduced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _places(data)
    env = {"REUNITE_PRIVACY_BUDGET": "5"}
    args = ["--epsilon", "3", "--weeks", "4", "--until", UNTIL.isoformat(), "--site", f"www.{SITE_A}",
            "--site", SITE_B, "--region", "NL-NH", "--region", "DE-BE"]
    made = reunite("stats", "release", *args, "--json", data=data, env=env)
    assert made.returncode == 0, made.stderr
    released = json.loads(made.stdout)
    assert released["params"]["sites"] == [f"www.{SITE_A}", SITE_B]
    assert [r["site"] for r in released["tables"]["confirmed_by_site"]] == [SITE_A, SITE_B, "(other)"]
    assert [r["region"] for r in released["tables"]["confirmed_by_region"]] == ["NL-NH", "DE-BE", "(other)"]
    shown = reunite("stats", "show", str(released["id"]), "--json", data=data, env=env)
    assert json.loads(shown.stdout) == released
    text = reunite("stats", "show", str(released["id"]), data=data, env=env)
    assert text.returncode == 0, text.stderr
    for line in ("confirmed by bank", "confirmed by site", "reviewed by region", f"  {SITE_A}: ",
                 "  NL-NH: ", "  (other): "):
        assert line in text.stdout, line
    assert TINY not in made.stdout + text.stdout
    bad = reunite("stats", "release", "--site", SITE_A, "--site", SITE_A.upper(), data=data, env=env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "stated twice" in bad.stderr
    over = reunite("stats", "release", *args, data=data, env=env)
    assert over.returncode == 2 and "2 of the budget (5) is left" in over.stderr


def test_http_site_and_region_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    _places(data)
    monkeypatch.setenv("REUNITE_PRIVACY_BUDGET", "4")
    body = {"epsilon": 3, "weeks": 4, "until": UNTIL.isoformat(), "sites": [SITE_A, SITE_B],
            "regions": ["NL-NH", "DE-BE"]}
    with encryption_key(), live_api(data) as api:  # the data folder holds a missing-person bank
        admin = api.as_("admin")
        made = admin.post("/v1/stats", json=body)
        assert made.status_code == 201, made.text
        released = made.json()
        assert {"confirmed_by_site", "reviewed_by_site", "confirmed_by_region",
                "reviewed_by_region"} <= set(released["tables"])
        assert [r["site"] for r in released["tables"]["reviewed_by_site"]] == [SITE_A, SITE_B, "(other)"]
        assert TINY not in made.text
        assert admin.get(f"/v1/stats/{released['id']}").json() == released
        for bad in ({"sites": [SITE_A, SITE_A]}, {"regions": [""]}, {"sites": ["x"] * 51},
                    {"regions": ["r" * 121]}):
            r = admin.post("/v1/stats", json={"epsilon": 0.5, **bad})
            assert r.status_code == 422, (bad, r.text)
        over = admin.post("/v1/stats", json=body)
        assert over.status_code == 409 and over.json()["error"] == "privacy_budget_exhausted"
        assert api.as_("reviewer").post("/v1/stats", json=body).status_code == 403
    assert len(privacy_ledger.entries(Store(data).catalog)) == 1


def test_a_venues_region_column_is_kept_by_cli_and_http_enrolment_and_locates_its_candidates(
        tmp_path: Path) -> None:
    from matcher.privacy import dp_groups

    data = tmp_path / "data"
    room = tmp_path / "room.png"
    room.write_bytes(png_bytes(photo("brick.png")))
    manifest = tmp_path / "venues.csv"
    manifest.write_text(f"path,label,name,region\n{room},hotel-1,Hotel One,NL-NH\n")
    done = reunite("enroll", str(manifest), "--bank", "rooms", "--kind", "venue", data=data)
    assert done.returncode == 0, done.stderr
    with live_api(data) as api:
        admin = api.as_("admin")
        record = {"label": "hotel-2", "name": "Hotel Two", "region": "DE-BE"}
        made = admin.post("/v1/banks/rooms/subjects", data={"record": json.dumps(record)},
                          files=[("photos", ("r.png", png_bytes(photo("coffee.png")), "image/png"))])
        assert made.status_code == 201, made.text
        assert made.json()["subject"]["attributes"]["region"] == "DE-BE"
        listed = admin.get("/v1/banks/rooms/subjects").json()["subjects"]
        assert {s["label"]: s["attributes"].get("region") for s in listed} == {"hotel-1": "NL-NH",
                                                                             "hotel-2": "DE-BE"}
    store = Store(data)
    bank = store.catalog.bank("rooms")
    queue = review.ReviewQueue(store.catalog)
    with store.catalog.session() as s:
        subjects = {x.label: x for x in s.scalars(select(Subject).where(Subject.bank_id == bank.id))}
        items = {x.subject_id: x.id for x in s.scalars(select(Item).where(Item.bank_id == bank.id))}
    ids = [queue.record([Candidate("rooms", label, subjects[label].id, None, items[subjects[label].id],
                                   0.9, decide.MATCH)], {"rooms": bank}, os.urandom(32).hex(), "inv",
                        context={"watched": True, "url": "https://www.Escort-A.example/ad/9"})[0]
           for label in ("hotel-1", "hotel-2")]
    with store.catalog.session() as s:
        rows = list(s.scalars(select(review.StoredCandidate).order_by(review.StoredCandidate.id)))
        where = dp_groups.locate(s, rows, {bank.id: bank})
    assert [where[i] for i in ids] == [dp_groups.Where("escort-a.example", "nl-nh"),
                                       dp_groups.Where("escort-a.example", "de-be")]
