"""Abuse budgets: how much one key, one address and one partner may ask of the service.

Every budget is a set of moving-window limits (``limits``, the library behind
slowapi) over one identity, and every refusal is HTTP 429 with
``{"error": "rate_limited", "detail": ...}`` and a ``Retry-After`` header in
whole seconds, so a well-behaved client knows when to come back.

budgets (env variable, default)
    ``address``        every request from one client address (``REUNITE_BUDGET_ADDRESS``):
                       bounds a client that rotates keys or sends none.
    ``key:<role>``     every authenticated request of one key (``REUNITE_BUDGET_<ROLE>``),
                       sized per role: an ingest crawler posts thousands of photos an hour,
                       a partner looks a few hashes up.
    ``auth_address``   wrong keys presented from one address (``REUNITE_BUDGET_AUTH_FAILURES``);
                       once spent, every key from that address is refused until the window
                       frees a slot (a lockout: a right key would otherwise tell a guesser
                       that it is right).
    ``auth_key``       wrong presentations of one key, from anywhere
                       (``REUNITE_BUDGET_AUTH_FAILURES_PER_KEY``): the same lockout for a
                       leaked-then-revoked key replayed from many addresses. Identified by
                       :func:`key_fingerprint`, never by the key.
    ``partner_queue``  review candidates one partner key's hash lookups may add to the
                       human queue (``REUNITE_BUDGET_PARTNER_QUEUE``): see
                       :func:`charge_queue_insertions`.

A value is a ``limits`` string such as ``"600/minute;10000/day"``, or ``off``.
Failed authentication is also what keeps the audit log small under a flood:
a wrong key never writes its own event with the text it came with. Instead
one ``auth.failed`` event per address is written at the 1st, 2nd, 4th, 8th...
failure of a window and at the lockout, naming the address, the count and a
12-hex-digit fingerprint of the last key (:func:`audit_failure`), so 1,000
wrong keys leave about ten fixed-size events.

State lives in this process (``memory://``), which is right for one server
process. Several workers or hosts each keep their own counts (a client gets
N times the budget); point ``REUNITE_BUDGET_STORAGE`` at a shared store that
``limits`` speaks (``redis://host:6379``, with the ``redis`` package
installed) to share them. Behind a reverse proxy the address is the proxy's
unless uvicorn trusts its ``X-Forwarded-For`` (``--forwarded-allow-ips``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from api.errors import ApiError

if TYPE_CHECKING:
    from fastapi import Request

    from api.auth import Principal
    from api.service import Service
    from matcher.search.query import Candidate

OFF = frozenset({"", "off", "none", "0", "false", "no"})
FINGERPRINT_HEX = 12

DEFAULT_ROLE_BUDGETS: dict[str, str] = {
    "admin": "3000/minute",
    "ingest": "6000/minute",  # crawlers: ~100 photos a second
    "reviewer": "1200/minute",  # each candidate page loads two photos and a dashboard or two
    "investigator": "600/minute",
    "partner": "300/minute;5000/day",
}


@dataclass
class BudgetConfig:
    """The limits of every budget (``limits`` strings; ``off`` disables one)."""

    storage: str = "memory://"
    address: str = "10000/minute"
    roles: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLE_BUDGETS))
    auth_failures: str = "30/15 minutes;100/day"
    auth_failures_per_key: str = "10/15 minutes"
    partner_queue: str = "20/hour;100/day"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BudgetConfig:
        config = cls()
        simple = {"REUNITE_BUDGET_STORAGE": "storage", "REUNITE_BUDGET_ADDRESS": "address",
                  "REUNITE_BUDGET_AUTH_FAILURES": "auth_failures",
                  "REUNITE_BUDGET_AUTH_FAILURES_PER_KEY": "auth_failures_per_key",
                  "REUNITE_BUDGET_PARTNER_QUEUE": "partner_queue"}
        for variable, attr in simple.items():
            if variable in env:
                setattr(config, attr, env[variable].strip())
        for role in list(config.roles):
            variable = f"REUNITE_BUDGET_{role.upper()}"
            if variable in env:
                config.roles[role] = env[variable].strip()
        return config

    def limits(self) -> dict[str, list[RateLimitItem]]:
        """Every budget's parsed limits (raises BadBudget on a malformed value)."""
        named = {"address": self.address, "auth_address": self.auth_failures,
                 "auth_key": self.auth_failures_per_key, "partner_queue": self.partner_queue,
                 **{f"key:{role}": value for role, value in self.roles.items()}}
        out: dict[str, list[RateLimitItem]] = {}
        for name, value in named.items():
            if value.strip().lower() in OFF:
                out[name] = []
                continue
            try:
                out[name] = parse_many(value)
            except ValueError:
                raise BadBudget(f"budget {name}: {value!r} is not a rate such as '600/minute;10000/day' "
                                "or 'off' (REUNITE_BUDGET_* variables)") from None
        return out


class BadBudget(ValueError):
    """A budget variable that is not a rate (``reunite serve`` exits 2 naming it)."""


class RateLimited(ApiError):
    """429: a budget is spent; ``retry_after`` says in how many seconds a request may succeed."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(429, "rate_limited", detail)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


@dataclass(frozen=True)
class Refusal:
    """Why a charge was refused: the limit that is spent and when it frees a slot."""

    limit: RateLimitItem
    retry_after: int

    def describe(self) -> str:
        return str(self.limit)  # "30 per 15 minute"


class Budgets:
    """Counts charges against every budget of one service."""

    def __init__(self, config: BudgetConfig | None = None) -> None:
        self.config = config or BudgetConfig()
        self.items = self.config.limits()
        self.limiter = MovingWindowRateLimiter(storage_from_string(self.config.storage))
        self._lock = threading.Lock()  # test-then-hit over several limits is one step

    def charge(self, budget: str, identity: str, cost: int = 1) -> Refusal | None:
        """Take ``cost`` from every limit of ``budget`` for ``identity``; None when admitted.

        A refused charge takes nothing, so a client that waits ``retry_after``
        seconds is admitted; a cost larger than a limit can never be admitted.
        """
        items = self.items.get(budget, [])
        if not items or cost <= 0:
            return None
        with self._lock:
            for item in items:
                if cost > item.amount:
                    return Refusal(item, item.get_expiry())
                if not self.limiter.test(item, budget, identity, cost=cost):
                    return Refusal(item, self._retry_after(item, budget, identity))
            for item in items:
                self.limiter.hit(item, budget, identity, cost=cost)
        return None

    def spent(self, budget: str, identity: str) -> Refusal | None:
        """The refusal a charge of 1 would get now, without charging anything."""
        for item in self.items.get(budget, []):
            if not self.limiter.test(item, budget, identity):
                return Refusal(item, self._retry_after(item, budget, identity))
        return None

    def used(self, budget: str, identity: str) -> int:
        """How much of the tightest limit of ``budget`` ``identity`` has used in its window."""
        items = self.items.get(budget, [])
        if not items:
            return 0
        item = min(items, key=lambda i: i.get_expiry())
        return item.amount - self.limiter.get_window_stats(item, budget, identity).remaining

    def limit_of(self, budget: str) -> int | None:
        items = self.items.get(budget, [])
        return min(i.amount for i in items) if items else None

    def _retry_after(self, item: RateLimitItem, budget: str, identity: str) -> int:
        reset = self.limiter.get_window_stats(item, budget, identity).reset_time
        return max(1, math.ceil(reset - time.time()))


# --- identities -----------------------------------------------------------------


def client_address(scope_or_request: Any) -> str:
    """The caller's address as an IP string, or ``unknown`` (never arbitrary text)."""
    client = scope_or_request.get("client") if isinstance(scope_or_request, dict) \
        else getattr(scope_or_request, "client", None)
    host = client[0] if client else None
    try:
        return str(ipaddress.ip_address(host)) if host else "unknown"
    except ValueError:
        return "unknown"


def key_fingerprint(key: str | None) -> str | None:
    """A fixed-length stand-in for a presented key: the first hex digits of its SHA-256.

    Enough to tell two wrong keys apart in the audit log, nothing an attacker
    can write text into, and useless for finding the key.
    """
    if not key:
        return None
    return hashlib.sha256(key[:1000].encode("utf-8", "replace")).hexdigest()[:FINGERPRINT_HEX]


# --- the checks the request path calls --------------------------------------------


def _budgets(request: Request) -> Budgets:
    return request.app.state.service.budgets


def admit_address(budgets: Budgets, address: str) -> RateLimited | None:
    """The 429 for one more request from ``address``, or None (called by the middleware)."""
    refusal = budgets.charge("address", address)
    if refusal is None:
        return None
    return RateLimited(f"too many requests from this address (limit {refusal.describe()})",
                       refusal.retry_after)


def refuse_if_locked_out(request: Request, key: str | None) -> None:
    """429 before a key is even looked up, while its address or the key is locked out."""
    if not key:
        return
    budgets = _budgets(request)
    address = client_address(request)
    refusal = budgets.spent("auth_address", address) or budgets.spent("auth_key", key_fingerprint(key) or "")
    if refusal is not None:
        request.state.audit_action = None  # counted in the failure events, not one event each
        raise RateLimited("too many failed sign-ins or wrong keys; authentication is locked "
                          f"(limit {refusal.describe()})", refusal.retry_after)


def record_failed_key(request: Request, key: str | None, via: str = "api") -> None:
    """Count a wrong key against its address and itself, and write the aggregated audit event.

    The request's own audit event is dropped: its object (the path) is text
    the caller chose. A missing key is not a guess and is not counted.
    """
    request.state.audit_action = None
    if not key:
        return
    budgets = _budgets(request)
    address = client_address(request)
    fingerprint = key_fingerprint(key) or ""
    by_address = budgets.charge("auth_address", address)
    by_key = budgets.charge("auth_key", fingerprint)
    count = budgets.used("auth_address", address)
    locked = budgets.spent("auth_address", address) or budgets.spent("auth_key", fingerprint)
    audit_failure(request.app.state.service, address, fingerprint, count, via,
                  locked=locked is not None)
    refusal = by_address or by_key
    if refusal is not None:  # only reached when a limit is 0-sized or raced: refuse as locked
        raise RateLimited("too many failed sign-ins or wrong keys; authentication is locked "
                          f"(limit {refusal.describe()})", refusal.retry_after)


def audit_failure(svc: Service, address: str, fingerprint: str, count: int, via: str,
                  locked: bool) -> None:
    """One ``auth.failed`` event at the 1st, 2nd, 4th... failure of a window and at the lockout."""
    if count <= 0 or not (locked or count & (count - 1) == 0):
        return
    limit = svc.budgets.limit_of("auth_address")
    svc.audit.append("anonymous", "none", "auth.failed", f"address:{address}",
                     "locked" if locked else "unauthenticated",
                     {"failures": count, "limit": limit, "key_sha256_prefix": fingerprint, "via": via})


def charge_key(request: Request, principal: Principal) -> None:
    """429 when this key has spent its role's request budget (called once per request)."""
    refusal = _budgets(request).charge(f"key:{principal.role}", str(principal.key_id))
    if refusal is not None:
        raise RateLimited(f"this key has spent its request budget (limit {refusal.describe()})",
                          refusal.retry_after)


def charge_queue_insertions(svc: Service, principal: Principal, candidates: Iterable[Candidate]) -> None:
    """429, before anything is stored, when a partner's lookup would queue more than its budget.

    Why partners may queue at all: a partner's hit is the only trace that a
    platform holds a copy of a photo we know (an ad's, a venue's), and the
    queue is where a person follows it up. Why a budget: each hit costs a
    reviewer's time, and a partner can mint any number of "new" queries by
    flipping one bit of a hash. Missing-person banks are closed to partners
    unless their policy opens them (:func:`api.visibility.partner_may_search`).
    Every hash lookup path (``/v1/match/hashes`` and the HMA-compatible API)
    calls this just before ``svc.review.record``.
    """
    from api.auth import PARTNER
    from matcher.review.queue import QUEUED_TIERS

    if principal.role != PARTNER:
        return
    count = sum(1 for c in candidates if c.decision in QUEUED_TIERS)
    refusal = svc.budgets.charge("partner_queue", str(principal.key_id), count)
    if refusal is not None:
        raise RateLimited(f"this key's lookups may add {refusal.describe()} candidates to the review "
                          f"queue; this one would add {count}", refusal.retry_after)
