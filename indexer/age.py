"""A child's record at enrollment: ``date_of_birth`` / ``minor`` and the coarse end of protection.

Both fields are personal and sealed with the rest (:mod:`indexer.privacy`).
The matcher applies the minors' regime (:mod:`matcher.privacy.minors`) at search time and must not
need the key for it. Reading the sealed fields at search time would mean
decrypting every candidate's record on every query (and a matcher that cannot
work without the key even for the tier cap), and an in-process cache of
decrypted records would go stale when another process enrolls. Instead
enrollment derives one coarse, non-identifying column kept in clear,
``Subject.protected_until``: the first day the subject is no longer protected,
**rounded up to the 1st of January after the 18th birthday**. Trade-off:

- what it reveals to someone who reads the catalog without the key: at most the
  birth *year* of a subject (and that a subject is, or was, a minor): far less
  than the date of birth, and less than the clear ``label`` and ``consent_expires``
  the catalog already holds;
- what it costs: protection lasts up to a year past the 18th birthday. That errs
  on the safe side (the models are no better on an 18-year-old's face), and
  ageing out is still automatic: the comparison is made on the day of each search;
- ``minor: true`` without a date of birth protects for as long as the record
  exists (:data:`UNTIL_FURTHER_NOTICE`): without a birth date there is no day on
  which the person is known to be an adult; enroll again with ``date_of_birth``
  to let the protection end.
"""

from __future__ import annotations

import datetime as dt

ADULT_AGE = 18
UNTIL_FURTHER_NOTICE = dt.date(9999, 12, 31)
TRUE_WORDS = {"true", "yes", "1", "y"}
FALSE_WORDS = {"false", "no", "0", "n", ""}
COLUMNS = ("date_of_birth", "minor")


def eighteenth_birthday(date_of_birth: dt.date) -> dt.date:
    """The day the person turns 18 (a 29 February birthday turns 18 on 1 March)."""
    try:
        return date_of_birth.replace(year=date_of_birth.year + ADULT_AGE)
    except ValueError:
        return dt.date(date_of_birth.year + ADULT_AGE, 3, 1)


def protected_until(date_of_birth: dt.date | None, minor: bool, today: dt.date) -> dt.date | None:
    """The stored, coarse end of protection (see the module docstring), or None for an adult.

    Raises ValueError for a date of birth in the future, or ``minor`` true with a
    date of birth that makes the person an adult today (a contradiction is refused,
    never guessed).
    """
    if date_of_birth is not None:
        if date_of_birth > today:
            raise ValueError("date_of_birth is in the future")
        adult_on = eighteenth_birthday(date_of_birth)
        if minor and adult_on <= today:
            raise ValueError("minor is true but date_of_birth says 18 or older")
        until = dt.date(adult_on.year + 1, 1, 1)  # the same coarse day whenever the record is enrolled
        return until if until > today else None
    return UNTIL_FURTHER_NOTICE if minor else None


def parse_minor_fields(row: dict, today: dt.date) -> tuple[dict[str, object], dt.date | None]:
    """The row's ``date_of_birth`` / ``minor`` as personal fields to seal, and ``protected_until``.

    Raises ValueError (a message without the values: they are personal) for a bad date or flag.
    """
    raw_dob = str(row.get("date_of_birth") or "").strip()
    flag = row.get("minor")
    raw_minor = ("true" if flag else "false") if isinstance(flag, bool) else str(flag or "").strip().lower()
    if raw_minor not in TRUE_WORDS | FALSE_WORDS:
        raise ValueError("minor is not true or false")
    minor = raw_minor in TRUE_WORDS
    dob: dt.date | None = None
    if raw_dob:
        try:
            dob = dt.date.fromisoformat(raw_dob)
        except ValueError:
            raise ValueError("date_of_birth is not an ISO date (YYYY-MM-DD)") from None
    until = protected_until(dob, minor, today)
    personal: dict[str, object] = {}
    if dob is not None:
        personal["date_of_birth"] = dob.isoformat()
    if raw_minor:
        personal["minor"] = minor
    return personal, until
