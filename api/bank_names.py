"""The one rule for naming banks, wherever a caller names them.

Why: the CLI took ``--bank a,b``, ``/v1/match`` a ``banks`` string and
``/v1/match/hashes`` a ``banks`` array, and a caller had to learn three
dialects. Every place now accepts the same thing: the field (``--bank``,
``banks``) repeated, each value a name or several separated by commas; blanks
are dropped, each bank is searched once, in the order first named. No name at
all means every bank the caller may search (the CLI's ``match`` asks for one).
Standard library only: the light CLI verbs import it.
"""

from __future__ import annotations

from collections.abc import Iterable


def bank_names(values: Iterable[str] | None) -> list[str]:
    """The bank names in ``values`` (each a name or comma-separated names), each once, in order."""
    names = (name.strip() for value in values or () for name in value.split(","))
    return list(dict.fromkeys(name for name in names if name))
