"""Publishable statistics: aggregate tables with differential privacy (OpenDP).

Counts over a few people identify them ("one confirmed match in bank X in week
Y" is a person), so nothing exact leaves through here. A release is built in
three steps, each with one job:

1. **Exact, bounded aggregates** (:func:`exact_tables`), read from the review
   queue: each count table by bank x week, and, when the release states sites or
   regions, by site x week and by region x week (:mod:`matcher.privacy.dp_groups` says
   where a candidate happened). The *privacy unit* is the subject a candidate is about (the missing
   person, the ad, the venue): one unit may appear in many rows (several
   queries matched the same person, in several weeks), so each unit keeps at
   most ``contributions`` rows per table (its earliest in the period) and
   everything else of it is dropped before counting. That bound is what makes
   the sensitivity finite: adding or removing one unit changes a count table by
   at most ``contributions`` in L1, and adds or removes at most one value of the
   response-time list of its bank. The cells (banks x weeks of the stated
   period; the stated sites or regions, plus one ``(other)`` row, x weeks) are
   fixed by the parameters and the bank list, never by the candidates, so a
   cell's presence tells nothing: a site that is not stated, or not known, is
   counted under ``(other)`` and never named.
2. **Noise from OpenDP**, not hand-rolled: the discrete Laplace (geometric)
   mechanism on each count table (``scale = contributions / epsilon``; the
   library's privacy map states the epsilon spent), and OpenDP's private
   quantile (exponential mechanism over a fixed public grid of hours) for the
   median and 90th percentile of the time to a first review decision per bank
   (banks hold disjoint subjects, so the banks compose in parallel). Noise is
   drawn from the operating system's CSPRNG by OpenDP: a seeded generator would
   let whoever holds the seed subtract the noise.
3. **Suppression** (post-processing, free of privacy cost): a cell whose
   *noisy* count is below ``threshold`` is published as ``null`` and its noisy
   value is never stored or shown; a bank's suppressed weeks are merged into one
   ``suppressed_weeks`` figure, itself published only when it reaches the
   threshold. The rule reads the noisy count, never the exact one: thresholding
   an exact count would leak whether it was small.

The exact tables exist only in memory during a release; the ledger
(:mod:`matcher.privacy.ledger`) stores the released form only.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import opendp.prelude as dp
from sqlalchemy import select

from indexer import text
from indexer.store.catalog import Bank, Catalog
from matcher.privacy import dp_groups
from matcher.review.queue import CONFIRMED, ReviewDecision, StoredCandidate

dp.enable_features("contrib")  # OpenDP's mechanisms are released under its "contrib" flag

COUNT_TABLES = ("confirmed", "reviewed")
# Groupings of the count tables: by bank always; by site / region when the release states their keys.
GROUPINGS = ("bank", "site", "region")
MAX_KEYS = 50  # stated sites or regions per release
MAX_KEY_LENGTH = 120
QUANTILES = {"median": 0.5, "p90": 0.9}
# Public grid of response times (hours) the private quantile chooses from: fixed, never data-driven.
HOURS_GRID = [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0, 48.0, 72.0, 120.0, 168.0, 336.0, 720.0]
MAX_WEEKS = 104
MIN_EPSILON = 0.01
EARLIEST, LATEST = dt.date(2000, 1, 1), dt.date(2200, 12, 31)  # keeps week arithmetic in range


@dataclass(frozen=True)
class ReleaseParams:
    """What a release asks for; stored in the ledger with the release."""

    epsilon: float = 1.0
    weeks: int = 12
    until: dt.date | None = None  # the last day of the period (default: today, UTC)
    contributions: int = 1
    threshold: int = 10
    sites: tuple[str, ...] = ()  # the public list of sites to publish by (host names); others: "(other)"
    regions: tuple[str, ...] = ()  # the public list of regions to publish by; others: "(other)"

    def check(self) -> None:
        if not (MIN_EPSILON <= self.epsilon <= 10):  # below it the noise scale is no longer finite
            raise ValueError(f"epsilon must be between {MIN_EPSILON} and 10")
        if not (1 <= self.weeks <= MAX_WEEKS):
            raise ValueError(f"weeks must be between 1 and {MAX_WEEKS}")
        if not (1 <= self.contributions <= 50):
            raise ValueError("contributions must be between 1 and 50")
        if not (0 <= self.threshold <= 1000):
            raise ValueError("threshold must be between 0 and 1000")
        if self.until is not None and not (EARLIEST <= self.until <= LATEST):
            raise ValueError(f"until must be between {EARLIEST} and {LATEST}")
        for grouping in ("site", "region"):
            self.keys(grouping)  # ValueError naming the problem

    def groupings(self) -> list[str]:
        """The groupings this release publishes its count tables by (bank, then site, region)."""
        return ["bank"] + [g for g, keys in (("site", self.sites), ("region", self.regions)) if keys]

    def keys(self, grouping: str) -> dict[str, str]:
        """The stated keys of ``site`` or ``region``: comparison key -> the key as published.

        Raises ValueError for too many, too long, unprintable, empty or duplicate keys.
        """
        stated = self.sites if grouping == "site" else self.regions
        norm = dp_groups.site_key if grouping == "site" else dp_groups.region_key
        name = f"{grouping}s"
        if len(stated) > MAX_KEYS:
            raise ValueError(f"at most {MAX_KEYS} {name} per release")
        out: dict[str, str] = {}
        for value in stated:
            if not isinstance(value, str) or len(value) > MAX_KEY_LENGTH:
                raise ValueError(f"each of {name} must be text of at most {MAX_KEY_LENGTH} characters")
            text.check(value, name)
            key = norm(value)
            if key is None or key == dp_groups.OTHER.casefold():
                raise ValueError(f"{name}: an empty or reserved name")
            if key in out:
                raise ValueError(f"{name}: {value!r} is stated twice")
            out[key] = key if grouping == "site" else " ".join(value.split())
        return out

    def period(self, today: dt.date | None = None) -> list[dt.date]:
        """The Mondays of the period's weeks, oldest first."""
        last = self.until or today or dt.datetime.now(dt.UTC).date()
        monday = last - dt.timedelta(days=last.weekday())
        return [monday - dt.timedelta(weeks=n) for n in range(self.weeks - 1, -1, -1)]

    def count_tables(self) -> list[str]:
        """Names of the count tables: ``confirmed``, ``reviewed`` (by bank), then ``*_by_site``, ..."""
        return [table_name(t, g) for g in self.groupings() for t in COUNT_TABLES]

    def split(self) -> dict[str, float]:
        """Epsilon per table (basic composition: they add up to ``epsilon``).

        Each count table is a separate query over the same candidates (one subject
        may be in every one of them), so each costs its share; the response-time
        quantiles share one more.
        """
        tables = self.count_tables()
        share = self.epsilon / (len(tables) + 1)
        out = dict.fromkeys(tables, share)
        out.update({f"response_hours.{q}": share / len(QUANTILES) for q in QUANTILES})
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epsilon": self.epsilon, "weeks": self.weeks,
                               "until": self.until.isoformat() if self.until else None,
                               "contributions": self.contributions, "threshold": self.threshold}
        if self.sites:
            out["sites"] = list(self.sites)
        if self.regions:
            out["regions"] = list(self.regions)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReleaseParams:
        """The parameters a ledger entry was released with (to run the same release again, new noise)."""
        until = data.get("until")
        return cls(epsilon=float(data["epsilon"]), weeks=int(data["weeks"]),
                   until=dt.date.fromisoformat(until) if until else None,
                   contributions=int(data["contributions"]), threshold=int(data["threshold"]),
                   sites=tuple(data.get("sites") or ()), regions=tuple(data.get("regions") or ()))


def table_name(count: str, grouping: str) -> str:
    """``confirmed`` for the bank grouping (as releases have always named it), ``confirmed_by_site``..."""
    return count if grouping == "bank" else f"{count}_by_{grouping}"


@dataclass
class ExactTables:
    """Bounded exact aggregates: never stored, never returned by a front end."""

    banks: list[str]
    weeks: list[dt.date]
    counts: dict[str, dict[tuple[str, dt.date], int]] = field(default_factory=dict)
    response_hours: dict[str, list[float]] = field(default_factory=dict)
    # The rows of each grouping, in order: bank names; stated sites / regions, then "(other)".
    rows: dict[str, list[str]] = field(default_factory=dict)

    def row_keys(self, table: str) -> list[str]:
        grouping = table.rpartition("_by_")[2] if "_by_" in table else "bank"
        return self.banks if grouping == "bank" else self.rows.get(grouping, [])

    def vector(self, table: str) -> list[int]:
        cells = self.counts.get(table, {})
        return [cells.get((key, w), 0) for key in self.row_keys(table) for w in self.weeks]


def _week(at: dt.datetime) -> dt.date:
    day = at.date()
    return day - dt.timedelta(days=day.weekday())


def _unit(row: StoredCandidate) -> tuple[Any, ...]:
    """The privacy unit of a candidate: its subject (else its reference item)."""
    return (row.bank_id, "subject", row.subject_id) if row.subject_id is not None \
        else (row.bank_id, "item", row.ref_item_id)


def _bounded(events: list[tuple[tuple[Any, ...], dt.datetime, Any]], k: int) -> list[Any]:
    """At most ``k`` events per unit, its earliest (ties by payload order): the contribution bound."""
    per_unit: dict[tuple[Any, ...], int] = defaultdict(int)
    kept = []
    for unit, _at, payload in sorted(events, key=lambda e: (e[1], repr(e[0]))):
        if per_unit[unit] < k:
            per_unit[unit] += 1
            kept.append(payload)
    return kept


def exact_tables(catalog: Catalog, params: ReleaseParams, today: dt.date | None = None) -> ExactTables:
    """The bounded exact aggregates of the period (see the module docstring, step 1)."""
    weeks = params.period(today)
    start = dt.datetime.combine(weeks[0], dt.time())
    end = dt.datetime.combine(weeks[-1] + dt.timedelta(days=7), dt.time())
    with catalog.session() as s:
        bank_rows = {b.id: b for b in s.scalars(select(Bank).order_by(Bank.name))}
        banks = {i: b.name for i, b in bank_rows.items()}
        rows = {r.id: r for r in s.scalars(select(StoredCandidate))}
        decisions = list(s.scalars(select(ReviewDecision).order_by(ReviewDecision.at, ReviewDecision.id)))
        where = dp_groups.locate(s, rows.values(), bank_rows) if len(params.groupings()) > 1 else {}
    first: dict[int, ReviewDecision] = {}
    confirmed: dict[int, ReviewDecision] = {}
    for d in decisions:
        first.setdefault(d.candidate_id, d)
        if d.state_after == CONFIRMED:
            confirmed.setdefault(d.candidate_id, d)
    out = ExactTables(banks=sorted(banks.values()), weeks=weeks)
    row_of: dict[str, Any] = {"bank": lambda cid: banks[rows[cid].bank_id]}
    for grouping in params.groupings()[1:]:
        stated = params.keys(grouping)
        out.rows[grouping] = [*stated.values(), dp_groups.OTHER]

        def keyed(cid: int, grouping: str = grouping, stated: dict[str, str] = stated) -> str:
            place = where.get(cid, dp_groups.Where())
            return stated.get(getattr(place, grouping) or "", dp_groups.OTHER)
        row_of[grouping] = keyed

    def in_period(at: dt.datetime) -> bool:
        return start <= at < end

    for grouping in params.groupings():
        for count, source in (("confirmed", confirmed), ("reviewed", first)):
            events = [(_unit(rows[cid]), d.at, (row_of[grouping](cid), _week(d.at)))
                      for cid, d in source.items() if cid in rows and in_period(d.at)]
            cells: dict[tuple[str, dt.date], int] = defaultdict(int)
            for cell in _bounded(events, params.contributions):
                cells[cell] += 1
            out.counts[table_name(count, grouping)] = dict(cells)
    events = [(_unit(rows[cid]), d.at,
               (banks[rows[cid].bank_id], max(0.0, (d.at - rows[cid].created_at).total_seconds() / 3600)))
              for cid, d in first.items() if cid in rows and in_period(d.at)]
    hours: dict[str, list[float]] = {name: [] for name in out.banks}
    for bank, value in _bounded(events, 1):  # one value per unit: the quantile's d_in is 1
        hours[bank].append(min(value, HOURS_GRID[-1]))
    out.response_hours = hours
    return out


# --- noise (OpenDP) ----------------------------------------------------------------------

def count_mechanism(sensitivity: int, epsilon: float) -> dp.Measurement:
    """OpenDP's discrete Laplace on a vector of counts, scaled for L1 ``sensitivity`` at ``epsilon``."""
    meas = dp.m.make_laplace(dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int),
                             scale=sensitivity / epsilon)
    if meas.map(sensitivity) > epsilon * (1 + 1e-9):
        raise AssertionError("OpenDP's privacy map exceeds the stated epsilon")
    return meas


def noisy_counts(counts: list[int], sensitivity: int, epsilon: float) -> list[int]:
    """Each count with discrete Laplace noise (one draw per element, independent)."""
    return [int(v) for v in count_mechanism(sensitivity, epsilon)(list(counts))] if counts else []


def quantile_mechanism(alpha: float, epsilon: float) -> dp.Measurement:
    """OpenDP's private quantile over :data:`HOURS_GRID`, for one added/removed value at ``epsilon``."""
    def make(scale: float) -> dp.Measurement:
        return dp.m.make_private_quantile(dp.vector_domain(dp.atom_domain(T=float, nan=False)),
                                          dp.symmetric_distance(), dp.max_divergence(),
                                          candidates=HOURS_GRID, alpha=alpha, scale=scale)
    return make(dp.binary_search_param(make, d_in=1, d_out=epsilon))


def spent(meas: dp.Measurement, d_in: int) -> float:
    """The epsilon OpenDP's privacy map states for ``d_in``."""
    return float(meas.map(d_in))


# --- the released form -----------------------------------------------------------------

def suppress(noisy: list[int], threshold: int) -> tuple[list[int | None], int | None]:
    """Cells below ``threshold`` (noisy) become None; their noisy sum, if it reaches it, is merged."""
    kept = [v if v >= threshold else None for v in noisy]
    merged = sum(v for v in noisy if v < threshold)
    return kept, (merged if merged >= threshold and any(v is None for v in kept) else None)


def release_tables(exact: ExactTables, params: ReleaseParams) -> tuple[dict[str, Any], dict[str, float]]:
    """The published tables and the epsilon spent on each (by OpenDP's maps)."""
    split = params.split()
    tables: dict[str, Any] = {}
    epsilons: dict[str, float] = {}
    n_weeks = len(exact.weeks)
    bank_totals: dict[str, int] = {}
    for grouping in params.groupings():
        for count in COUNT_TABLES:
            table = table_name(count, grouping)
            keys = exact.row_keys(table)
            meas = count_mechanism(params.contributions, split[table])
            epsilons[table] = spent(meas, params.contributions)
            noisy = [int(v) for v in meas(exact.vector(table))] if keys else []
            rows = []
            for k_index, key in enumerate(keys):
                part = noisy[k_index * n_weeks:(k_index + 1) * n_weeks]
                if table == "reviewed":
                    bank_totals[key] = sum(part)  # post-processing of noise: decides if quantiles are shown
                cells, merged = suppress(part, params.threshold)
                rows.append({grouping: key,
                             "weeks": dict(zip([w.isoformat() for w in exact.weeks], cells, strict=True)),
                             "suppressed_weeks": merged})
            tables[table] = rows  # the noisy values of suppressed cells go no further than this function
    quantile_rows = []
    for name, alpha in QUANTILES.items():
        key = f"response_hours.{name}"
        meas = quantile_mechanism(alpha, split[key])
        epsilons[key] = spent(meas, 1)
        for bank in exact.banks:
            value = float(meas(exact.response_hours.get(bank, [])))
            row = next((r for r in quantile_rows if r["bank"] == bank), None)
            if row is None:
                row = {"bank": bank}
                quantile_rows.append(row)
            row[name] = value if bank_totals.get(bank, 0) >= max(params.threshold, 1) else None
    tables["response_hours"] = quantile_rows
    return tables, epsilons


def library_version() -> str:
    import importlib.metadata

    return f"opendp {importlib.metadata.version('opendp')}"
