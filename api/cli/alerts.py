"""``reunite cases ...`` and ``reunite alerts ...``: the admin's side of "from match to action".

Cases and owners are set here (never by an API key itself): ``cases create``
makes a case owned by an investigator key name or ``team:NAME``, ``cases add``
puts subjects (by pseudonym) in it, ``cases team`` manages a team's members.
Webhook subscribers are operator-configured too (``alerts subscribe``): a URL
comes from the operator, never from a partner or a request, and only http(s)
is accepted. ``alerts deliver`` runs one delivery pass (for cron; ``reunite
serve`` also delivers in the background). Every action is an audit event of
``cli:<user>`` (admin).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer

from api.cli.main import app, fail, open_app

cases_app = typer.Typer(no_args_is_help=True, help="Cases and their owners (who is alerted).")
alerts_app = typer.Typer(no_args_is_help=True, help="Alerts of confirmed matches: webhooks, delivery.")
app.add_typer(cases_app, name="cases")
app.add_typer(alerts_app, name="alerts")


def _case_line(c) -> str:  # noqa: ANN001 - matcher.review.cases.CaseView
    return json.dumps({"ref": c.ref, "title": c.title, "owner": c.owner, "subjects": c.subjects})


def _case_change(action: str, obj: str, change: Callable[[Any], Any], **detail: Any) -> None:
    """One change of the case book as an audited CLI action; a refusal exits 2 with its reason."""
    from api.application import cli_actor
    from matcher.review.cases import CaseError

    application = open_app()
    with application.audited(cli_actor(), action, obj, via="cli", **detail) as note:
        try:
            case = change(application.alerts.cases)
        except CaseError as exc:
            note.refuse(exc.code)
            raise fail(exc.detail) from None
    typer.echo(_case_line(case))


@cases_app.command("create")
def cases_create(
    title: Annotated[str, typer.Argument(help="The admin's working title (no names of persons).")],
    owner: Annotated[str, typer.Option("--owner", help="Investigator key name, or team:NAME.")],
    subjects: Annotated[list[str] | None, typer.Option("--subject", help="Pseudonym to add (repeat).")
                        ] = None,
) -> None:
    """Make a case; prints it as one JSON line (its ref, C-..., names it everywhere)."""
    from api.application import cli_actor
    from matcher.review.cases import CaseError

    application = open_app()
    with application.audited(cli_actor(), "case.create", "case:new", via="cli") as note:
        try:
            case = application.alerts.cases.create(title, owner)
            note.obj = f"case:{case.ref}"
            if subjects:
                case = application.alerts.cases.add_subjects(case.ref, subjects)
        except CaseError as exc:
            note.refuse(exc.code)
            raise fail(exc.detail) from None
    typer.echo(_case_line(case))


@cases_app.command("add")
def cases_add(case_ref: Annotated[str, typer.Argument(help="Case ref (C-...).")],
              pseudonyms: Annotated[list[str], typer.Argument(help="Subjects to add.")]) -> None:
    """Put subjects (missing persons, venues) in a case."""
    _case_change("case.add", f"case:{case_ref[:20]}", lambda cases: cases.add_subjects(case_ref, pseudonyms),
                 subjects=len(pseudonyms))


@cases_app.command("owner")
def cases_owner(case_ref: Annotated[str, typer.Argument(help="Case ref (C-...).")],
                owner: Annotated[str, typer.Argument(help="Investigator key name, or team:NAME.")]) -> None:
    """Hand a case to another owner (alerts confirmed from now on go to the new owner)."""
    _case_change("case.owner", f"case:{case_ref[:20]}", lambda cases: cases.set_owner(case_ref, owner))


@cases_app.command("team")
def cases_team(team: Annotated[str, typer.Argument(help="Team name (owner team:NAME).")],
               member: Annotated[str, typer.Argument(help="Investigator key name.")],
               remove: Annotated[bool, typer.Option("--remove", help="Take the member out.")] = False
               ) -> None:
    """Add a key name to a team (or take it out with --remove)."""
    from api.application import cli_actor
    from matcher.review.cases import CaseError

    application = open_app()
    with application.audited(cli_actor(), "team.remove" if remove else "team.add", f"team:{team[:120]}",
                             via="cli") as note:
        try:
            if remove:
                application.alerts.cases.remove_member(team, member)
            else:
                application.alerts.cases.add_member(team, member)
        except CaseError as exc:
            note.refuse(exc.code)
            raise fail(exc.detail) from None
    typer.echo(f"team {team}: {'removed' if remove else 'added'} {member}")


@cases_app.command("list")
def cases_list() -> None:
    """Every case, one JSON line each."""
    for case in open_app().alerts.cases.list():
        typer.echo(_case_line(case))


@alerts_app.command("subscribe")
def alerts_subscribe(
    owner: Annotated[str, typer.Option("--owner", help="Investigator key name, or team:NAME.")],
    url: Annotated[str, typer.Option("--url", help="The receiver's http(s) URL.")],
) -> None:
    """Register a webhook receiver for an owner; the signing secret is printed alone on the last line."""
    from api.application import cli_actor
    from matcher.review.cases import CaseError
    from matcher.review.outbox import AlertError

    application = open_app()
    with application.audited(cli_actor(), "webhook.subscribe", "webhook:new", via="cli") as note:
        try:
            sub_id, secret = application.alerts.subscribe(owner, url)
        except (AlertError, CaseError, ValueError) as exc:
            note.refuse(getattr(exc, "code", "bad_url"))
            raise fail(getattr(exc, "detail", str(exc))) from None
        note.obj = f"webhook:{sub_id}"
    typer.echo(f"subscriber {sub_id} for {owner}; store the signing secret now, it is not shown again:")
    typer.echo(secret)


@alerts_app.command("unsubscribe")
def alerts_unsubscribe(subscriber: Annotated[int, typer.Argument(help="Subscriber id.")]) -> None:
    """Stop sending to a subscriber (deliveries already made are kept)."""
    from api.application import cli_actor

    application = open_app()
    with application.audited(cli_actor(), "webhook.unsubscribe", f"webhook:{subscriber}", via="cli") as note:
        if not application.alerts.unsubscribe(subscriber):
            note.refuse("subscriber_not_found")
            raise fail(f"no subscriber {subscriber}")
    typer.echo(f"subscriber {subscriber} stopped")


@alerts_app.command("list")
def alerts_list(failing: Annotated[bool, typer.Option("--failing", help="Only undelivered.")] = False
                ) -> None:
    """Alerts newest first, one JSON line each (the API's shape)."""
    from api.http.routes.alerts import alert_out

    for view in open_app().alerts.list(failing=failing, limit=100_000):
        typer.echo(alert_out(view).model_dump_json())


@alerts_app.command("deliver")
def alerts_deliver() -> None:
    """One delivery pass over the outbox (for cron); exit 1 when a delivery failed."""
    from api.delivery import Deliverer

    report = Deliverer(open_app()).run_once()
    typer.echo(json.dumps({"delivered": report.delivered, "failed": report.failed,
                           "gave_up": report.gave_up}))
    if report.failed:
        raise typer.Exit(1)


@alerts_app.command("retry")
def alerts_retry() -> None:
    """Put deliveries that gave up back in the queue (after the receiver is fixed)."""
    from api.application import cli_actor

    application = open_app()
    with application.audited(cli_actor(), "alert.retry", "alerts", via="cli") as note:
        n = application.alerts.retry_failed()
        note.detail["deliveries"] = n
    typer.echo(f"{n} deliveries queued again")


@alerts_app.command("evidence")
def alerts_evidence(alert_id: Annotated[int, typer.Argument(help="Alert id.")],
                    html: Annotated[bool, typer.Option("--html", help="Printable HTML, not JSON.")] = False
                    ) -> None:
    """The evidence report of a confirmed match (admin view)."""
    from api import evidence_report
    from api.application import cli_actor
    from matcher.review.outbox import AlertError

    application = open_app()
    with application.audited(cli_actor(), "alert.evidence", f"alert:{alert_id}", via="cli") as note:
        try:
            report = evidence_report.build(application, alert_id, "admin")
        except AlertError as exc:
            note.refuse(exc.code)
            raise fail(exc.detail) from None
    typer.echo(evidence_report.to_html(report) if html else json.dumps(report, indent=1))
