"""``reunite search --phone N | --email E | --handle H``: the ads and images that carry a contact.

Ads banks are first brought up to date (the linking step reads the contacts
painted on new photos), then searched through :mod:`matcher.search.contacts`,
the same search as ``GET /v1/search``. The query is audited by a digest, never
in clear.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from api.bank_names import bank_names
from api.cli.main import app, banks_or_fail, fail, open_app, region_or_fail
from api.cli.networks import REGION_HELP


@app.command("search")
def search_cmd(
    phone: Annotated[str | None, typer.Option("--phone", help="A phone number (any common format).")] = None,
    email: Annotated[str | None, typer.Option("--email", help="An e-mail address.")] = None,
    handle: Annotated[str | None, typer.Option("--handle", help="A messenger handle: @name, t.me/name.")
                      ] = None,
    bank: Annotated[list[str] | None, typer.Option(
        "--bank", help="Ads bank(s): repeat --bank and/or separate names by commas (default: every one).")
                    ] = None,
    region: Annotated[str, typer.Option("--region", help=REGION_HELP)] = "US",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per ad.")] = False,
) -> None:
    """List the ads (and their photos, with the box the text was read in) that carry a contact."""
    from api.application import cli_actor
    from matcher.networks.links import LinkConfig, Linker, file_reader
    from matcher.search import contacts as contact_search

    given = [(k, v) for k, v in (("phone", phone), ("email", email), ("handle", handle)) if v is not None]
    if len(given) != 1:
        raise fail("give exactly one of --phone, --email, --handle")
    kind, raw = given[0]
    region = region_or_fail(region)
    try:
        value = contact_search.normalise_query(kind, raw, region)
    except contact_search.BadContact as exc:
        raise fail(str(exc)) from None
    application = open_app()
    store = application.store
    if bank_names(bank):
        banks = banks_or_fail(store, bank_names(bank))
        wrong = [b.name for b in banks if b.kind != "ads"]
        if wrong:
            raise fail(f"bank {wrong[0]!r} is not an ads bank; contacts are searched in ads banks")
    else:
        banks = [b for b in store.catalog.banks() if b.kind == "ads"]
    linker = Linker(store, config=LinkConfig(region=region))
    for b in banks:
        linker.update(b, read=file_reader())
    store.checkpoint()
    with application.audited(cli_actor(), "search.contact", f"contact:{kind}",
                             ref=contact_search.query_ref(kind, value), via="cli") as note:
        hits = contact_search.search(store.catalog, kind, value, banks)
        note.detail.update(ads=len(hits))
    if as_json:
        for h in hits:
            typer.echo(json.dumps(h.to_json()))
        return
    from indexer.text import displayable

    if not hits:
        typer.echo(f"no ads carry {value}")
    for h in hits:
        where = (["text"] if h.in_text else []) + [f"photo item {p['item']} box {p['box']}" for p in h.photos]
        typer.echo(f"{h.bank}/{displayable(h.ad)}  {'; '.join(where)}")
