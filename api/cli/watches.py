"""``reunite watches BANK``: set which ads banks a watcher bank watches (issue 16).

A thin front on :func:`api.watching.set_watches`, the application-layer path
(checked and audited like a policy given at creation).
"""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.main import app, fail, open_app


@app.command("watches")
def watches_cmd(
    bank: Annotated[str, typer.Argument(help="The watcher bank (missing_person, venue or hashes).")],
    ads: Annotated[list[str] | None, typer.Option("--ads", help="An ads bank to watch (repeatable).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Watch every ads bank (the default policy).")] = False,
    none: Annotated[bool, typer.Option("--none", help="Watch no ads bank.")] = False,
) -> None:
    """Set which ads banks BANK watches: --ads NAME (repeatable), --all or --none."""
    from api.application import cli_actor
    from api.watching import WatchPolicyError, set_watches
    from matcher.search.watch import watched_by

    chosen = sum([bool(ads), all_, none])
    if chosen != 1:
        raise fail("give exactly one of --ads NAME (repeatable), --all, --none")
    names = None if all_ else ([] if none else list(ads or []))
    application = open_app()
    try:
        updated = set_watches(application, cli_actor(), bank, names)
    except WatchPolicyError as exc:
        raise fail(str(exc)) from None
    now = [b.name for b in watched_by(application.store.catalog, updated)]
    stored = (updated.policy or {}).get("watches")
    wanted = "every ads bank" if stored is None else (", ".join(stored) or "nothing")
    typer.echo(f"{updated.name} watches {wanted} (now: {', '.join(now) or 'none'})")
