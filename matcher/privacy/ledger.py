"""The privacy-budget ledger of a data folder: one table in the catalog, one row per release.

Every differentially private release spends epsilon, and the losses add up
(basic composition): whoever collects many releases of the same data learns
more than any one of them tells. So a data folder has a total budget
(``REUNITE_PRIVACY_BUDGET``, default :data:`DEFAULT_BUDGET`), and a release
that would take the sum of every earlier release over it is refused
(:class:`OverBudget`) and never shown.

Safe across processes without a lock: each row carries ``seq`` (unique) and
``spent_after`` (the running total). :func:`publish` reads the last row,
computes the new total, refuses when it is over the budget, and inserts
``seq = last.seq + 1``. Two releases racing read the same last row and insert
the same ``seq``: the unique constraint refuses the later one, whose
transaction is rolled back and run again on the new last row, where its own
check sees the winner's spending (a compare-and-set on ``seq``; SQLite and
PostgreSQL alike).

What "reproduce" means: a row stores the released tables, their parameters,
the epsilon OpenDP's maps stated for each table and the library version, never
an exact figure or a noise seed (a seed would let whoever reads the ledger
subtract the noise). ``reunite stats show ID`` / ``GET /v1/stats/{id}`` reprint
that release exactly as it was published, at no further privacy cost; running
the release again would draw new noise and spend new budget, which is the point.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, String, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapped, mapped_column

from indexer.store.catalog import Base, Catalog, lost_a_race, utcnow
from matcher.privacy import dp_stats

BUDGET_ENV = "REUNITE_PRIVACY_BUDGET"
DEFAULT_BUDGET = 10.0
PUBLISH_ATTEMPTS = 20


class PrivacyRelease(Base):
    """One published release: its parameters, spending and the released tables (never exact ones)."""

    __tablename__ = "privacy_ledger"
    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(120))
    epsilon: Mapped[float] = mapped_column(Float)
    spent_after: Mapped[float] = mapped_column(Float)
    budget: Mapped[float] = mapped_column(Float)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    epsilons: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    tables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    library: Mapped[str] = mapped_column(String(60), default="")


class OverBudget(Exception):
    """The release would take the data folder's spending over its budget; nothing was published."""

    code = "privacy_budget_exhausted"


@dataclass(frozen=True)
class Budget:
    total: float
    spent: float

    @property
    def left(self) -> float:
        return max(0.0, self.total - self.spent)


def configured_budget(environ: Mapping[str, str] | None = None) -> float:
    """The total epsilon of this data folder (``REUNITE_PRIVACY_BUDGET``); ValueError when malformed."""
    raw = (environ if environ is not None else os.environ).get(BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{BUDGET_ENV} is not a number") from None
    if not (0 <= value <= 1000):
        raise ValueError(f"{BUDGET_ENV} must be between 0 and 1000")
    return value


def budget(catalog: Catalog, environ: Mapping[str, str] | None = None) -> Budget:
    with catalog.session() as s:
        last = s.scalar(select(PrivacyRelease).order_by(PrivacyRelease.seq.desc()).limit(1))
    return Budget(configured_budget(environ), float(last.spent_after) if last else 0.0)


def publish(catalog: Catalog, params: dp_stats.ReleaseParams, actor: str,
            environ: Mapping[str, str] | None = None, today: dt.date | None = None) -> PrivacyRelease:
    """Compute a release and record it, or raise OverBudget (nothing shown, nothing stored).

    The noisy tables are computed before the budget check (a release never shown costs no
    privacy) and written in the same insert that claims the budget, so a release is either
    recorded with its spending or does not exist.
    """
    params.check()
    total = configured_budget(environ)
    if params.epsilon > total:
        raise OverBudget(f"epsilon {params.epsilon:g} is more than the whole budget ({total:g})")
    early = budget(catalog, environ)  # a cheap refusal first; the insert below re-checks, authoritatively
    if early.spent + params.epsilon > total + 1e-9:
        raise OverBudget(f"this release needs epsilon {params.epsilon:g} and {early.left:g} of the budget "
                         f"({total:g}) is left; nothing was published")
    exact = dp_stats.exact_tables(catalog, params, today)
    tables, epsilons = dp_stats.release_tables(exact, params)
    del exact  # the exact figures end here
    cost = sum(epsilons.values())
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            with catalog.session() as s:
                last = s.scalar(select(PrivacyRelease).order_by(PrivacyRelease.seq.desc()).limit(1))
                spent = float(last.spent_after) if last else 0.0
                if spent + cost > total + 1e-9:
                    raise OverBudget(f"this release needs epsilon {cost:g} and {max(0.0, total - spent):g} "
                                     f"of the budget ({total:g}) is left; nothing was published")
                row = PrivacyRelease(seq=(last.seq + 1) if last else 1, actor=actor, epsilon=cost,
                                     spent_after=spent + cost, budget=total, params=params.to_json(),
                                     epsilons=epsilons, tables=tables, library=dp_stats.library_version())
                s.add(row)
                s.flush()
            return row
        except DBAPIError as exc:
            if attempt == PUBLISH_ATTEMPTS or not lost_a_race(exc):
                raise
    raise AssertionError("unreachable")


def entries(catalog: Catalog) -> list[PrivacyRelease]:
    with catalog.session() as s:
        return list(s.scalars(select(PrivacyRelease).order_by(PrivacyRelease.seq)))


def entry(catalog: Catalog, release_id: int) -> PrivacyRelease | None:
    with catalog.session() as s:
        return s.get(PrivacyRelease, release_id)


def to_json(row: PrivacyRelease, with_tables: bool = True) -> dict[str, Any]:
    """A ledger row as published (the released numbers and how they were made)."""
    out: dict[str, Any] = {
        "id": row.id, "at": row.at.replace(tzinfo=dt.UTC).isoformat(), "actor": row.actor,
        "epsilon": round(row.epsilon, 6), "spent_after": round(row.spent_after, 6),
        "budget": row.budget, "params": row.params, "epsilons": row.epsilons, "library": row.library,
        "mechanisms": {"counts": "discrete Laplace (OpenDP make_laplace)",
                       "response_hours": "exponential mechanism (OpenDP make_private_quantile)"},
        "suppression": f"cells whose noisy count is below {row.params.get('threshold')} are null",
    }
    if with_tables:
        out["tables"] = row.tables
    return out
