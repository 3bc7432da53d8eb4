"""Changing a bank's review requirement after it exists: one audited path for the CLI and the web pages.

``second_review`` (two different reviewers must confirm) is read when a
candidate enters the queue (:func:`matcher.review.queue.second_review_required`),
so a change applies to candidates stored from then on; those already in the
queue keep the number of reviews they were stored with, and a protected
child's candidate always needs two (:mod:`matcher.privacy.minors`) whatever the bank
says. Watches have their own path, :func:`api.watching.set_watches`.
"""

from __future__ import annotations

from api.application import Actor, Application
from indexer.store.catalog import Bank

SECOND_REVIEW_KEY = "second_review"


class PolicyError(ValueError):
    """A policy change that cannot be made (a message safe to show)."""


def set_second_review(application: Application, actor: Actor, bank_name: str, value: bool | None,
                      via: str = "cli") -> Bank:
    """Set (True / False) or clear (None: the kind's default) a bank's ``second_review``; audited."""
    problem: str | None = None
    with application.audited(actor, "bank.policy", f"bank:{bank_name[:120]}", via=via,
                             second_review="default" if value is None else value) as note:
        catalog = application.store.catalog
        bank = catalog.bank(bank_name)
        if bank is None:
            note.refuse("unknown_bank")
            problem = f"no bank named {bank_name!r}"
        else:
            policy = {k: v for k, v in (bank.policy or {}).items() if k != SECOND_REVIEW_KEY}
            if value is not None:
                policy[SECOND_REVIEW_KEY] = bool(value)
            with catalog.session() as s:
                s.get(Bank, bank.id).policy = policy  # a new dict: the JSON column sees the change
    if problem is not None:
        raise PolicyError(problem)
    return catalog.bank(bank_name)
