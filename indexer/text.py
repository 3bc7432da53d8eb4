"""The one place that decides which text reunite accepts, and how stored text is shown.

Labels, ad fields, key names, notes and manifest columns come from crawls and
from people; they are later printed in terminals, written into GraphML/GEXF and
sent as JSON. Some code points break those outputs or spoof what a person sees:

- lone surrogates (``"\\ud800"`` in JSON) cannot be encoded as UTF-8, so every
  later response or line that carries them fails;
- NUL and other C0/C1 controls are not allowed in XML 1.0 and move the cursor
  or recolour a terminal (ANSI escapes);
- bidi overrides and isolates (U+202A..U+202E, U+2066..U+2069: "Trojan Source")
  and invisible format characters (zero-width space, soft hyphen, BOM, tags)
  make two different labels look alike or one label read backwards.

Every entry point calls :func:`check` (one string) or :func:`check_tree` (a
JSON value) and refuses the input with a message naming the field and the
problem. Text stored before this check existed is passed through
:func:`displayable` wherever it is printed or exported: bad code points become
visible ``\\uXXXX`` escapes, never raw.

Allowed on purpose: ZWNJ/ZWJ (U+200C/U+200D: Persian and Indic spelling,
emoji sequences) and the plain direction marks LRM/RLM/ALM, which Arabic and
Hebrew text needs and which cannot reorder text beyond their own run.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

# Format characters (category Cf) that real text in our languages needs.
_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d", "\u200e", "\u200f", "\u061c"})
# Whitespace controls a multi-line field (a note) may hold.
_MULTILINE = frozenset({"\n", "\r", "\t"})
# Line and paragraph separators act as newlines in terminals, JSON-in-JS and editors.
_SEPARATORS = frozenset({"\u2028", "\u2029"})
MAX_DEPTH = 32


class BadText(ValueError):
    """Text that reunite refuses; ``field`` and ``problem`` are safe to show (no content echoed)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def problem(value: str, *, multiline: bool = False) -> str | None:
    """Why ``value`` is refused (naming the first offending code point and its position), or None."""
    for n, ch in enumerate(value):
        why = _why(ch, multiline)
        if why:
            return f"{why} (U+{ord(ch):04X} at character {n + 1})"
    return None


def _why(ch: str, multiline: bool) -> str | None:
    if ch.isprintable() or ch == " ":
        return None
    if multiline and ch in _MULTILINE:
        return None
    category = unicodedata.category(ch)
    if category == "Cs":
        return "a lone surrogate (not encodable text)"
    if ch == "\x00":
        return "a NUL character"
    if category == "Cc" or ch in _SEPARATORS:
        return "a control character"
    if category == "Cf":
        if ch in _ALLOWED_FORMAT:
            return None
        if "\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069":
            return "a bidirectional override that changes how text is displayed"
        return "an invisible format character"
    code = ord(ch)
    if 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE:
        return "a noncharacter (not allowed in XML)"
    return None  # unassigned or private-use: printable enough, nothing to spoof


def check(value: str, field: str, *, multiline: bool = False) -> str:
    """``value`` unchanged, or :class:`BadText` naming ``field`` and the problem."""
    why = problem(value, multiline=multiline)
    if why:
        raise BadText(field, f"refused: {why}")
    return value


def check_tree(value: Any, field: str, *, depth: int = 0) -> Any:
    """Check every string (keys included) of a JSON value; returns it unchanged."""
    if depth > MAX_DEPTH:
        raise BadText(field, f"refused: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        return check(value, field)
    if isinstance(value, dict):
        for key, item in value.items():
            name = check(str(key), f"{field} key")
            check_tree(item, f"{field}.{name}", depth=depth + 1)
    elif isinstance(value, list | tuple):
        for n, item in enumerate(value):
            check_tree(item, f"{field}[{n}]", depth=depth + 1)
    return value


_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def json_depth(text: str) -> int:
    """How deeply JSON ``text`` nests arrays and objects, found without parsing it.

    Brackets inside strings do not count. Parsers recurse once per level, so
    this is checked first: one form field of 10,000 ``[`` must not reach one.
    """
    depth = deepest = 0
    for match in _BRACKETS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def displayable(value: Any) -> str:
    """``value`` as text that is safe to print, encode and put in XML.

    Stored text from before :func:`check` existed may hold anything; each
    refused code point becomes a visible ``\\uXXXX`` (or ``\\UXXXXXXXX``)
    escape, so a reader sees that something is there and what it was.
    """
    text = value if isinstance(value, str) else str(value)
    if problem(text) is None:
        return text
    return "".join(_escape(ch) if _why(ch, False) else ch for ch in text)


def displayable_tree(value: Any) -> Any:
    """:func:`displayable` over every string (and key) of a JSON value."""
    if isinstance(value, str):
        return displayable(value)
    if isinstance(value, dict):
        return {displayable(k): displayable_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [displayable_tree(v) for v in value]
    return value


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def with_article(word: str) -> str:
    """``word`` after "a" or "an" ("an investigator", "an ads", "a venue").

    Messages name roles and bank kinds chosen at run time; "created a
    investigator key" reads as a bug to the person it is printed for. The
    first letter decides, which is right for every role, kind and record
    format reunite names (none starts with a silent consonant or a "yoo" vowel).
    """
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
