"""Phone numbers and e-mail addresses of an ad, normalised so that equal contacts compare equal.

Why normalise: the same trafficker writes one number as ``(212) 555-0143``,
``212.555.0143`` and ``+1 212 555 0143`` across ads (often on purpose, to
dodge exact-text filters); only E.164 (``+12125550143``) makes them one
value. Numbers without a country prefix are read in ``region`` (the crawl's
country, ISO 3166 alpha-2). Strings that are not a valid number are dropped:
a half-typed or obfuscated number must not link unrelated ads by chance.

E-mail addresses are lower-cased and trimmed; ``+tags`` are removed, and for
Gmail the dots of the local part as well, because those providers deliver
all such variants to one mailbox.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

DEFAULT_REGION = "US"
PHONE_FIELDS = ("phones", "phone")
EMAIL_FIELDS = ("emails", "email")
_SPLIT = re.compile(r"[;\n|]+")
_EMAIL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$")
_DOTLESS_DOMAINS = {"gmail.com", "googlemail.com"}


def check_region(region: str) -> str:
    """The code upper-cased, or ValueError naming it: a typo would silently drop every local number."""
    code = region.strip().upper()
    if code == DEFAULT_REGION:  # libphonenumber's own default region: no need to load it to know
        return code
    import phonenumbers  # 0.1-0.5 s: loaded by the runs that read a phone number, not by every index

    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown phone region {region!r} (an ISO 3166 alpha-2 code such as US, GB, DE)")
    return code


def normalise_phone(text: str, region: str = DEFAULT_REGION) -> str | None:
    """The E.164 form of ``text``, or None when it is not a valid number."""
    raw = text.strip()
    if not raw or len(raw) > 40:
        return None
    import phonenumbers

    try:
        number = phonenumbers.parse(raw, region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(text: str) -> str | None:
    """A canonical mailbox for ``text``, or None when it is not an address."""
    value = text.strip().lower().removeprefix("mailto:")
    if len(value) > 254 or not _EMAIL.match(value):
        return None
    local, domain = value.rsplit("@", 1)
    local = local.split("+", 1)[0]
    if domain in _DOTLESS_DOMAINS:
        domain = "gmail.com"
        local = local.replace(".", "")
    if not local:
        return None
    return f"{local}@{domain}"


def _values(attributes: dict[str, Any], fields: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in fields:
        value = attributes.get(name)
        if isinstance(value, str):
            out.extend(v for v in _SPLIT.split(value) if v.strip())
        elif isinstance(value, list):
            out.extend(str(v) for v in value if str(v).strip())
    return out


def contacts_of(attributes: dict[str, Any], region: str = DEFAULT_REGION) -> set[tuple[str, str]]:
    """(kind, normalised value) pairs of an ad's manifest columns ``phones`` and ``emails``.

    Several values are separated by ``;`` (as the manifest documents); a JSON
    list works too. Invalid values are dropped silently: they are not contacts.
    """
    found: set[tuple[str, str]] = set()
    for raw in _values(attributes, PHONE_FIELDS):
        phone = normalise_phone(raw, region)
        if phone:
            found.add(("phone", phone))
    for raw in _values(attributes, EMAIL_FIELDS):
        email = normalise_email(raw)
        if email:
            found.add(("email", email))
    return found
