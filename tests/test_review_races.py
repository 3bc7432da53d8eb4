"""Review decisions under real concurrency: every candidate ends in a state its history explains.

Two reviewers who press a button on one candidate at the same moment must not
both win when the state machine allows only one of them: the loser gets 409
and the decision history stays a path of the state machine. The races run
for real: several httpx clients in threads, released together by a barrier,
against a real uvicorn on loopback (and, below the HTTP layer, several
threads calling ``ReviewQueue.decide`` on one catalog file).

The expected transitions are written out here again (``_spec``) rather than
imported, so that the test checks the code against the documented machine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import LiveApi, encryption_key, live_api, queued_candidates, web_session
from conftest import jpeg_bytes, png_bytes, tiles, vectors_for

from indexer import pipeline
from indexer.signals import base as signals
from indexer.store.store import NewImage, Store
from matcher.review import queue as review
from matcher.search.query import Candidate

HASHES_ONLY = {"signals": ["hashes"]}
ROUNDS = 24  # candidates per scenario: the unserialised code lost at least one race in 24


def _spec(state: str, required: int, action: str, reviewer: str, history: list[dict[str, Any]]
          ) -> str | None:
    """The next state the documented machine gives, or None where the decision is refused."""
    if state in ("confirmed", "rejected"):
        return None
    if action == "escalate":
        return None if state == "escalated" else "escalated"
    if action == "reject":
        return "escalated" if state == "awaiting_second" else "rejected"
    if required <= 1:
        return "confirmed"
    if state == "awaiting_second":
        first = next(d["reviewer"] for d in reversed(history) if d["state_after"] == "awaiting_second")
        return None if first == reviewer else "confirmed"
    return "awaiting_second"


def _assert_valid_path(required: int, history: list[dict[str, Any]], final: str) -> None:
    state = "pending"
    for n, d in enumerate(history):
        expected = _spec(state, required, d["action"], d["reviewer"], history[:n])
        assert expected == d["state_after"], (
            f"decision {n} ({d['action']} by {d['reviewer']} on {state}) recorded {d['state_after']}, "
            f"the state machine gives {expected}: {history}")
        state = expected
    assert final == state, f"final state {final} but the history ends in {state}: {history}"


# --- over HTTP ------------------------------------------------------------------

@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, module_catalog_url: str | None) -> Iterator[LiveApi]:
    with encryption_key(), live_api(tmp_path_factory.mktemp("races") / "data",
                                    catalog_url=module_catalog_url) as running:
        admin = running.as_("admin")
        for name, policy in (("single", HASHES_ONLY), ("double", {**HASHES_ONLY, "second_review": True})):
            r = admin.post("/v1/banks", json={"name": name, "kind": "ads", "policy": policy})
            assert r.status_code == 201, r.text
        yield running


@pytest.fixture(scope="module")
def reviewers(api: LiveApi) -> Iterator[list[str]]:
    yield [api.key("reviewer", f"race-reviewer-{n}") for n in range(3)]


def _together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads released at the same moment; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = calls[n]()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            results[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


def _race(api: LiveApi, cid: int, moves: list[tuple[str, str]]) -> list[httpx.Response]:
    """``moves`` ((key, action) each) sent at once, one connection per reviewer."""
    clients = [api.client(key) for key, _action in moves]
    try:
        return _together([
            (lambda c=c, a=a: c.post(f"/v1/review/candidates/{cid}/decision",
                                     json={"action": a, "note": ""}))
            for c, (_key, a) in zip(clients, moves, strict=True)])
    finally:
        for c in clients:
            c.close()


def _stored(api: LiveApi, cid: int) -> dict[str, Any]:
    """The candidate and its whole history as the queue keeps them (an admin reading over HTTP
    is shown no decision while the candidate awaits its second reviewer: blind review)."""
    row, decisions = api.service.review.get(cid)
    return {"state": row.state, "required_reviews": row.required_reviews,
            "decisions": [{"reviewer": d.reviewer, "action": d.action, "state_after": d.state_after}
                          for d in decisions]}


def _check(api: LiveApi, cid: int, responses: list[httpx.Response], before: int) -> dict[str, Any]:
    """What must hold after any race; returns the candidate as stored."""
    stored = _stored(api, cid)
    history = stored["decisions"]
    _assert_valid_path(stored["required_reviews"], history, stored["state"])
    won = [r for r in responses if r.status_code == 200]
    for r in responses:
        assert r.status_code in (200, 409), r.text
        if r.status_code == 409:
            body = r.json()
            assert set(body) >= {"error", "detail"} and body["error"], body
    new = history[before:]
    assert len(won) == len(new), f"{len(won)} answers of 200 for {len(new)} recorded decisions: {history}"
    # Each winner was answered with the state its own decision produced.
    assert sorted(r.json()["state"] for r in won) == sorted(d["state_after"] for d in new), history
    return stored


def test_simultaneous_confirms_on_a_single_review_candidate_record_one_decision(
        api: LiveApi, reviewers: list[str]) -> None:
    for cid in queued_candidates(api, "single", ROUNDS, seed=31):
        responses = _race(api, cid, [(key, "confirm") for key in reviewers])
        stored = _check(api, cid, responses, before=0)
        assert [r.status_code for r in responses].count(200) == 1, [r.text for r in responses]
        assert stored["state"] == "confirmed" and len(stored["decisions"]) == 1
        assert {r.json()["error"] for r in responses if r.status_code == 409} <= {
            "already_decided", "decided_meanwhile"}


def test_confirm_and_reject_at_once_on_a_single_review_candidate_one_wins(
        api: LiveApi, reviewers: list[str]) -> None:
    for cid in queued_candidates(api, "single", ROUNDS, seed=32):
        responses = _race(api, cid, [(reviewers[0], "confirm"), (reviewers[1], "reject")])
        stored = _check(api, cid, responses, before=0)
        assert [r.status_code for r in responses].count(200) == 1, [r.text for r in responses]
        winner = next(r for r in responses if r.status_code == 200).json()
        assert stored["state"] == winner["state"] in ("confirmed", "rejected")


def test_second_confirm_racing_a_reject_never_confirms_over_the_disagreement(
        api: LiveApi, reviewers: list[str]) -> None:
    for cid in queued_candidates(api, "double", ROUNDS, seed=33):
        first = api.client(reviewers[0])
        assert first.post(f"/v1/review/candidates/{cid}/decision",
                          json={"action": "confirm"}).json()["state"] == "awaiting_second"
        first.close()
        responses = _race(api, cid, [(reviewers[1], "confirm"), (reviewers[2], "reject")])
        stored = _check(api, cid, responses, before=1)
        # Confirmed only when the confirm came first and the reject was then refused.
        if stored["state"] == "confirmed":
            assert [d["action"] for d in stored["decisions"]] == ["confirm", "confirm"]


def test_two_first_confirms_at_once_follow_the_two_person_rule(
        api: LiveApi, reviewers: list[str]) -> None:
    for cid in queued_candidates(api, "double", ROUNDS, seed=34):
        responses = _race(api, cid, [(reviewers[0], "confirm"), (reviewers[1], "confirm"),
                                     (reviewers[2], "escalate")])
        _check(api, cid, responses, before=0)


# --- ReviewQueue.decide from threads, one catalog file ------------------------------

def _queue_with_candidates(data_dir: Path, n: int, second_review: bool, catalog_url: str | None = None
                           ) -> tuple[Store, review.ReviewQueue, list[int]]:
    store = Store(data_dir, catalog_url, vectors_for(catalog_url))
    bank = store.catalog.ensure_bank("ads", "ads", {"second_review": second_review})
    names = [s.name for s in signals.select(["hashes"])]
    added = store.add_images(bank, [NewImage(pipeline.extract(jpeg_bytes(t), names), f"ad-{k}")
                                    for k, t in enumerate(tiles(n, seed=40))])
    queue = review.ReviewQueue(store.catalog)
    ids = []
    for k, (item, _created) in enumerate(added):
        cand = Candidate(bank="ads", label=f"ad-{k}", subject_id=item.subject_id, pseudonym=None,
                         item=item.id, score=0.9, decision="match")
        ids.append(queue.record([cand], {"ads": bank}, f"query-{k}", "investigator")[0])
    return store, queue, ids


def _direct_race(queue: review.ReviewQueue, cid: int, moves: list[tuple[str, str]]) -> list[str]:
    def attempt(reviewer: str, action: str) -> str:
        try:
            row, _view = queue.decide(cid, reviewer, "reviewer", action)
            return row.state
        except review.Conflict as exc:
            return f"409:{exc.code}"
    return _together([(lambda r=r, a=a: attempt(r, a)) for r, a in moves])


def _direct_history(queue: review.ReviewQueue, cid: int) -> tuple[int, str, list[dict[str, Any]]]:
    row, decisions = queue.get(cid)
    return row.required_reviews, row.state, [
        {"reviewer": d.reviewer, "action": d.action, "state_after": d.state_after} for d in decisions]


@pytest.mark.parametrize("second_review", [False, True])
def test_decide_from_threads_keeps_every_history_a_path_of_the_machine(
        tmp_path: Path, second_review: bool, catalog_url: str | None) -> None:
    store, queue, ids = _queue_with_candidates(tmp_path / "data", 40, second_review, catalog_url)
    moves = [("r1", "confirm"), ("r2", "confirm"), ("r3", "reject"), ("r4", "confirm")]
    for cid in ids:
        outcomes = _direct_race(queue, cid, moves)
        required, state, history = _direct_history(queue, cid)
        _assert_valid_path(required, history, state)
        wins = [o for o in outcomes if not o.startswith("409:")]
        assert len(wins) == len(history), (outcomes, history)
        if not second_review:
            assert len(wins) == 1 and state in ("confirmed", "rejected"), (outcomes, history)
    store.catalog.engine.dispose()


def test_two_investigators_matching_one_image_at_once_share_one_candidate(api: LiveApi) -> None:
    pictures = tiles(ROUNDS, seed=35)
    r = api.as_("ingest").post("/v1/banks/single/items/batch",
                               files=[("images", (f"{k}.png", png_bytes(p), "image/png"))
                                      for k, p in enumerate(pictures)])
    assert r.status_code == 200, r.text
    keys = [api.key("investigator", f"race-investigator-{n}") for n in range(3)]
    for picture in pictures:
        query = jpeg_bytes(picture, 80)
        clients = [api.client(key) for key in keys]
        try:
            answers = _together([
                (lambda c=c, query=query: c.post("/v1/match", data={"banks": "single"},
                                    files={"image": ("q.jpg", query, "image/jpeg")}))
                for c in clients])
            assert [a.status_code for a in answers] == [200] * len(clients), [a.text for a in answers]
            ids = {a.json()["candidates"][0]["candidate_id"] for a in answers}
            assert len(ids) == 1 and None not in ids
            [cid] = ids
            for c in clients:  # and each of them may read its outcome
                assert c.get(f"/v1/review/candidates/{cid}").status_code == 200
        finally:
            for c in clients:
                c.close()


# --- the reviewer pages take the same path ------------------------------------------

def _page_token(client: httpx.Client, cid: int) -> str:
    """The session's CSRF token, from the candidate page as a browser would read it."""
    import re

    page = client.get(f"/review/candidates/{cid}")
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def test_web_decisions_racing_api_decisions_record_one(api: LiveApi, reviewers: list[str]) -> None:
    web = [web_session(api, key) for key in reviewers[:2]]
    refusals: list[str] = []
    try:
        for cid in queued_candidates(api, "single", ROUNDS // 2, seed=36):
            tokens = [_page_token(c, cid) for c in web]
            api_client = api.client(reviewers[2])
            calls = [(lambda c=c, t=t, cid=cid: c.post(f"/review/candidates/{cid}/decision",
                                              data={"action": "confirm", "csrf": t}))
                     for c, t in zip(web, tokens, strict=True)]
            calls.append(lambda a=api_client, cid=cid: a.post(f"/v1/review/candidates/{cid}/decision",
                                                              json={"action": "reject"}))
            *pages, answer = _together(calls)
            api_client.close()
            assert all(p.status_code == 303 for p in pages), [p.text for p in pages]
            where = [p.headers["location"] for p in pages]
            web_wins = [w for w in where if f"decided={cid}" in w]
            refused = [w for w in where if "error=decided_meanwhile" in w or "error=already_decided" in w]
            assert len(web_wins) + len(refused) == len(pages), where
            assert answer.status_code in (200, 409), answer.text
            assert len(web_wins) + (answer.status_code == 200) == 1, (where, answer.text)
            stored = api.as_("admin").get(f"/v1/review/candidates/{cid}").json()
            _assert_valid_path(1, stored["decisions"], stored["state"])
            assert len(stored["decisions"]) == 1
            refusals += refused
        assert refusals
        shown = web[0].get(refusals[0]).text  # a refused page says why, in words
        assert "already decided" in shown or "decided this candidate while you were deciding" in shown
    finally:
        for c in web:
            c.close()


# --- PostgreSQL: a decision in flight holds the row; the other waits for it, then loses ------------

def test_a_decision_waits_on_the_row_lock_of_one_in_flight_and_then_is_refused(
        tmp_path: Path, pg_server: Any) -> None:
    """The compare-and-set of ``decide`` relies on PostgreSQL's row lock: shown step by step.

    Reviewer A's confirm is held right after its UPDATE, before its commit. Reviewer B's reject,
    computed from the same committed state, must then *wait* on A's row lock (seen in
    pg_stat_activity, not guessed from timing); once A commits, B's UPDATE re-reads the row,
    no longer matches the version it was computed from, and B is refused: one decision stored.
    """
    import psycopg
    from sqlalchemy import event

    url = pg_server.create_database()
    store, queue, [cid] = _queue_with_candidates(tmp_path / "data", 1, False, url)
    in_update, release = threading.Event(), threading.Event()

    def hold(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.current_thread().name == "reviewer-a" and statement.startswith("UPDATE candidates"):
            in_update.set()
            assert release.wait(60), "the test never released reviewer A"

    event.listen(store.catalog.engine, "after_cursor_execute", hold)
    outcome: dict[str, str] = {}

    def decide(name: str, action: str) -> None:
        try:
            outcome[name] = queue.decide(cid, name, "reviewer", action)[0].state
        except review.Conflict as exc:
            outcome[name] = f"409:{exc.code}"

    a = threading.Thread(target=decide, args=("reviewer-a", "confirm"), name="reviewer-a")
    b = threading.Thread(target=decide, args=("reviewer-b", "reject"), name="reviewer-b")
    try:
        a.start()
        assert in_update.wait(60)
        b.start()
        database = url.rsplit("/", 1)[1]
        with psycopg.connect(host="127.0.0.1", port=pg_server.port, user="postgres", dbname=database,
                             autocommit=True) as watcher:
            for _ in range(3000):  # until B's UPDATE is seen waiting for A's lock (at most ~30 s)
                waiting = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                    "AND query LIKE 'UPDATE candidates%%'", (database,)).fetchone()[0]
                if waiting or not b.is_alive():
                    break
                threading.Event().wait(0.01)
        assert waiting == 1 and b.is_alive(), "reviewer B's UPDATE did not wait on reviewer A's row lock"
    finally:
        release.set()
        a.join(60)
        b.join(60)
        event.remove(store.catalog.engine, "after_cursor_execute", hold)
    assert outcome == {"reviewer-a": "confirmed", "reviewer-b": "409:decided_meanwhile"}, outcome
    required, state, history = _direct_history(queue, cid)
    assert state == "confirmed" and [d["reviewer"] for d in history] == ["reviewer-a"]
    store.catalog.engine.dispose()
    pg_server.drop_database(url)
