"""The evidence report of one confirmed match: what a case file cites (JSON, and printable HTML).

It holds both photos' SHA-256 and perceptual hashes (from the catalog: the
indexed ad or the reference; a query photo that was only submitted is hashed
again from its kept, encrypted copy), the evidence in words
(:func:`api.web.evidence.explain`, the sentences the reviewer read), each
review decision with its time (reviewer names only for roles that may see
them: :mod:`api.visibility`), the alert's timeline, and the audit-chain
events about this candidate and its alert with their chain hashes and the
result of verifying the whole chain at the moment of the report
(:meth:`api.audit.AuditLog.verify`). Personal fields and notes are never in it.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from sqlalchemy import or_, select

from api import visibility
from api.application import Application
from api.audit import AuditEvent
from api.web.evidence import explain
from indexer import pipeline
from indexer.images import ImageError
from indexer.signals import base as signals
from indexer.store.catalog import Bank, Item, Subject, Vector
from indexer.store.photos import QUERY_NAMESPACE
from matcher.review import outbox
from matcher.review.queue import StoredCandidate


def _iso(value: dt.datetime | None) -> str | None:
    return visibility.iso(value)


def _hash_names() -> list[str]:
    return sorted(s.name for s in signals.all_signals() if s.family == "hashes")


def _stored_hashes(s: Any, item_id: int) -> dict[str, str]:
    names = _hash_names()
    rows = s.scalars(select(Vector).where(Vector.item_id == item_id, Vector.signal.in_(names))
                     .order_by(Vector.id))
    out: dict[str, str] = {}
    for v in rows:
        out.setdefault(v.signal, bytes(v.data).hex())
    return out


def _query_photo(app: Application, s: Any, cand: StoredCandidate) -> dict[str, Any]:
    """The query side: the indexed ad with that SHA-256 when there is one, else the kept query photo."""
    item = s.scalar(select(Item).join(Bank, Bank.id == Item.bank_id)
                    .where(Item.sha256 == cand.query_sha256, Bank.kind == "ads").order_by(Item.id))
    out: dict[str, Any] = {"sha256": cand.query_sha256, "hashes": {}, "source": "not kept (hash-only query)"}
    if item is not None:
        ad = s.get(Subject, item.subject_id) if item.subject_id is not None else None
        out.update(item=item.id, ad=ad.label if ad else None, first_seen_at=_iso(item.created_at),
                   hashes=_stored_hashes(s, item.id), source="indexed ad")
        return out
    if cand.query_photo:
        try:
            data = app.photos.get(QUERY_NAMESPACE, cand.query_photo)
            extracted = pipeline.extract(data, _hash_names())
            out["hashes"] = {v.signal: v.hex() for v in extracted.vectors}
            out["source"] = "submitted query photo (hashed again for this report)"
        except (OSError, ImageError, ValueError) as exc:
            out["source"] = f"submitted query photo, unreadable now ({type(exc).__name__})"
    return out


def build(app: Application, alert_id: int, role: str, owned_by: str | None = None) -> dict[str, Any]:
    """The report of ``alert_id`` as ``role`` may read it; AlertError 404 when not theirs."""
    view = app.alerts.get(alert_id, owned_by=owned_by)
    with app.store.catalog.session() as s:
        cand = s.get(StoredCandidate, view.candidate_id)
        assert cand is not None
        bank = s.get(Bank, cand.bank_id)
        ref = s.get(Item, cand.ref_item_id)
        subject = s.get(Subject, cand.subject_id) if cand.subject_id is not None else None
        assert bank is not None
        query = _query_photo(app, s, cand)
        reference = {"item": cand.ref_item_id, "sha256": ref.sha256 if ref else None,
                     "hashes": _stored_hashes(s, ref.id) if ref else {}}
        events = list(s.scalars(select(AuditEvent).where(or_(
            AuditEvent.object == f"candidate:{cand.id}", AuditEvent.object == f"alert:{alert_id}"))
            .order_by(AuditEvent.seq)))
    _row, decisions = app.review.get(view.candidate_id)
    explained = explain(cand.evidence or {}, cand.score, cand.tier, policy=bank.policy)
    check = app.audit.verify()
    label = visibility.candidate_view(cand, bank, subject, role)["label"]
    return {
        "report": "reunite evidence report", "generated_at": _iso(outbox.utcnow()),
        "alert": {"id": view.id, "event_id": view.event_id, "case": view.case_ref},
        "candidate": {"id": cand.id, "bank": bank.name, "kind": bank.kind, "pseudonym": view.pseudonym,
                      "label": label, "score": round(cand.score, 4), "tier": cand.tier,
                      "state": cand.state},
        "query_photo": query,
        "reference_photo": reference,
        "evidence": {"sentences": explained.sentences, "families": explained.families,
                     "raw": cand.evidence or {}},
        "reviews": [visibility.decision_view(d, role) | {"role": d.role} for d in decisions],
        "timeline": timeline(view),
        "audit": {"events": [{"seq": e.seq, "at": e.at, "actor": e.actor, "role": e.role,
                              "action": e.action, "object": e.object, "result": e.result,
                              "hash": e.hash, "prev_hash": e.prev_hash} for e in events],
                  "verification": {"ok": check.ok, "events": check.events, "problems": check.problems,
                                   "line": verification_line(check.ok, check.events, check.problems)}},
    }


def verification_line(ok: bool, events: int, problems: list[str]) -> str:
    if ok:
        return (f"Audit chain verified at the time of this report: {events} events, every link and the "
                f"signed head intact (HMAC-SHA256; `reunite audit verify`).")
    return f"Audit chain verification FAILED over {events} events: {'; '.join(problems[:5])}"


def timeline(view: outbox.AlertView) -> list[dict[str, Any]]:
    steps = [("first sighting (ad indexed)", view.first_seen_at), ("candidate", view.candidate_at),
             ("confirmed", view.confirmed_at), ("alert delivered", view.delivered_at),
             ("acknowledged", view.acked_at), ("outcome: " + (view.outcome or "none yet"), view.outcome_at)]
    return [{"step": name, "at": _iso(at)} for name, at in steps]


STYLE = ("body{font:14px/1.4 sans-serif;max-width:60em;margin:2em auto}"
         "table{border-collapse:collapse;width:100%;margin-bottom:1em}"
         "th,td{border:1px solid #999;padding:.2em .5em;text-align:left;vertical-align:top;"
         "word-break:break-all}th{width:14em}")


def to_html(report: dict[str, Any], stylesheet: str | None = None) -> str:
    """A printable page of ``report`` (no script, no external resource; every value escaped).

    The style is inline, or with ``stylesheet`` a link to it (the reviewer pages' CSP allows no
    inline style; their review.css carries the same rules under ``body.report``).
    """
    e = html.escape

    def rows(pairs: list[tuple[str, Any]]) -> str:
        return "".join(f"<tr><th>{e(str(k))}</th><td>{e('' if v is None else str(v))}</td></tr>"
                       for k, v in pairs)

    def photo(title: str, p: dict[str, Any]) -> str:
        pairs = [("SHA-256", p.get("sha256"))] + [(k, v) for k, v in sorted(p.get("hashes", {}).items())]
        pairs += [(k, p[k]) for k in ("item", "ad", "first_seen_at", "source") if k in p]
        return f"<h2>{e(title)}</h2><table>{rows(pairs)}</table>"

    c = report["candidate"]
    audit = report["audit"]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Evidence report, alert "
        f"{e(str(report['alert']['id']))}</title>"
        + (f'<link rel="stylesheet" href="{e(stylesheet)}">' if stylesheet else f"<style>{STYLE}</style>")
        + '</head><body class="report">',
        f"<h1>Evidence report</h1><p>Generated {e(str(report['generated_at']))}.</p>",
        "<table>" + rows([("Alert", report["alert"]["id"]), ("Event id", report["alert"]["event_id"]),
                          ("Case", report["alert"]["case"]), ("Candidate", c["id"]), ("Bank", c["bank"]),
                          ("Kind", c["kind"]), ("Subject", c["pseudonym"]), ("Label", c["label"]),
                          ("Score", c["score"]), ("Tier", c["tier"]), ("State", c["state"])]) + "</table>",
        photo("Query photo (the ad)", report["query_photo"]),
        photo("Reference photo", report["reference_photo"]),
        "<h2>Evidence</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in report["evidence"]["sentences"])
        + "</ul>",
        "<h2>Reviews</h2><table>" + rows([(f"{r['action']} \u2192 {r['state_after']}",
                                           f"{r['at']} by {r['reviewer'] or 'a ' + r['role']}")
                                          for r in report["reviews"]]) + "</table>",
        "<h2>Timeline</h2><table>" + rows([(t["step"], t["at"] or "\u2014") for t in report["timeline"]])
        + "</table>",
        "<h2>Audit chain</h2><table>" + rows([(f"#{ev['seq']} {ev['action']}",
                                               f"{ev['at']} {ev['actor']} ({ev['role']}) {ev['result']} "
                                               f"hash {ev['hash']}") for ev in audit["events"]])
        + f"</table><p><strong>{e(audit['verification']['line'])}</strong></p></body></html>",
    ]
    return "".join(parts)
