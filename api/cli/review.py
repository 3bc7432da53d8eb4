"""``reunite review export|reject|reopen``: the queue's bulk and after-the-fact actions from the shell.

Thin fronts on the application layer (:class:`api.application.Application`),
the calls the web pages and HTTP make: ``export`` writes the confirmed
matches (pseudonyms and opaque ids only) as CSV or JSON, ``reject`` rejects
several candidates one decision at a time, ``reopen`` puts a decided
candidate back to pending. Each writes the same audit events with ``via=cli``;
the CLI acts as ``cli:<user>``, an admin (:func:`api.application.cli_actor`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.main import app, fail, open_app

review_app = typer.Typer(help="The review queue: export confirmed matches, reject several, reopen.",
                         no_args_is_help=True)
app.add_typer(review_app, name="review")


@review_app.command("export")
def export_cmd(
    fmt: Annotated[str, typer.Option("--format", help="csv or json.")] = "csv",
    bank: Annotated[str | None, typer.Option("--bank", help="Only this bank's matches.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
) -> None:
    """Confirmed matches as CSV or JSON (pseudonyms and opaque ids, never names or notes)."""
    from api.application import cli_actor
    from matcher.review.export import FORMATS

    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}")
    application = open_app()
    chosen = application.store.catalog.bank(bank) if bank else None
    if bank and chosen is None:
        raise fail(f"unknown bank(s): {bank}")
    body, _media, rows = application.export_confirmed(cli_actor(), fmt, chosen, via="cli")
    if out is None:
        typer.echo(body, nl=False)
    else:
        out.write_text(body, encoding="utf-8")
        typer.echo(f"{rows} confirmed match{'' if rows == 1 else 'es'} written to {out}", err=True)


@review_app.command("reject")
def reject_cmd(
    ids: Annotated[list[int], typer.Argument(help="Candidate ids.")],
    note: Annotated[str, typer.Option("--note", help="One note for all (sealed like every note).")] = "",
) -> None:
    """Reject several candidates, each decided and audited on its own (never a protected child)."""
    from api.application import cli_actor

    application = open_app()
    try:
        outcomes = application.bulk_reject(cli_actor(), ids, note, via="cli")
    except ValueError as exc:
        raise fail(str(exc)) from None
    for o in outcomes:
        typer.echo(f"{o.candidate_id}\t{o.state or 'refused: ' + str(o.error)}")
    if any(o.error for o in outcomes):
        raise typer.Exit(1)


@review_app.command("reopen")
def reopen_cmd(
    candidate: Annotated[int, typer.Argument(help="Candidate id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required; sealed with the decision).")] = "",
) -> None:
    """Put a decided candidate back to pending (an admin's reopen), with a reason."""
    from api.application import cli_actor
    from matcher.review import queue as review

    application = open_app()
    try:
        row = application.reopen(cli_actor(), candidate, reason, via="cli")
    except (review.ReviewError, ValueError) as exc:
        raise fail(getattr(exc, "detail", None) or str(exc)) from None
    typer.echo(f"candidate {row.id} is now {row.state}")
