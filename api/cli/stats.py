"""``reunite stats``: publishable statistics with differential privacy, and their ledger.

``release`` computes and records a release (spending budget; refused when over
it), ``show ID`` reprints a recorded release exactly as published (no new
noise, no budget), ``ledger`` lists the releases and the budget left. Every
verb is audited through :meth:`api.application.Application.audited` as
``cli:<user>``. The rules live in :mod:`matcher.privacy.dp_stats` and
:mod:`matcher.privacy.ledger`; the HTTP routes (api/http/routes/stats.py) call the same.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer

from api.cli.main import app, fail, open_app

stats_app = typer.Typer(help="Publishable statistics with differential privacy (OpenDP) and their "
                             "privacy-budget ledger.", no_args_is_help=True)
app.add_typer(stats_app, name="stats")


def _print_release(entry: dict[str, Any], as_json: bool) -> None:
    from matcher.privacy import dp_stats

    if as_json:
        typer.echo(json.dumps(entry, sort_keys=True))
        return
    p = entry["params"]
    typer.echo(f"release {entry['id']} at {entry['at']} by {entry['actor']}: epsilon {entry['epsilon']:g} "
               f"({entry['library']}), budget spent {entry['spent_after']:g} of {entry['budget']:g}")
    typer.echo(f"  {p['weeks']} weeks until {p['until'] or entry['at'][:10]}, at most {p['contributions']} "
               f"row(s) per subject, cells below {p['threshold']} (noisy) suppressed")
    for grouping in dp_stats.GROUPINGS:
        for count in dp_stats.COUNT_TABLES:
            table = dp_stats.table_name(count, grouping)
            if table not in entry["tables"]:
                continue
            typer.echo(f"{count} by {grouping} (per week, noisy):")
            for row in entry["tables"][table]:
                cells = " ".join(f"{w[5:]}:{'-' if v is None else v}" for w, v in row["weeks"].items())
                merged = row.get("suppressed_weeks")
                typer.echo(f"  {row[grouping]}: {cells}" + (f" | suppressed weeks together: {merged}"
                                                             if merged is not None else ""))
    typer.echo("response hours to a first decision (private quantiles):")
    for row in entry["tables"].get("response_hours", []):
        typer.echo(f"  {row['bank']}: median {row['median'] if row['median'] is not None else '-'}, "
                   f"p90 {row['p90'] if row['p90'] is not None else '-'}")


@stats_app.command("release")
def release_cmd(
    epsilon: Annotated[float, typer.Option(help="Privacy loss of this release (split over its tables).")]
    = 1.0,
    weeks: Annotated[int, typer.Option(help="Weeks covered, ending with the week of --until.")] = 12,
    until: Annotated[str | None, typer.Option(help="Last day of the period (YYYY-MM-DD; default today).")]
    = None,
    contributions: Annotated[int, typer.Option(help="Rows one subject may add to each table (bound).")] = 1,
    threshold: Annotated[int, typer.Option(help="Cells whose noisy count is below this are suppressed.")]
    = 10,
    sites: Annotated[list[str] | None, typer.Option(
        "--site", help="Also publish by site: a host to name (repeatable; every other site, or none, "
                       "is counted as '(other)'). The list is public: never read from the data.")] = None,
    regions: Annotated[list[str] | None, typer.Option(
        "--region", help="Also publish by region: a region to name (repeatable; venue or ad manifest "
                         "column 'region'; every other region, or none, is '(other)').")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Publish a differentially private release and record it in the ledger (spends budget)."""
    from api.application import cli_actor
    from matcher.privacy import dp_stats
    from matcher.privacy import ledger as privacy_ledger

    try:
        last_day = dt.date.fromisoformat(until) if until else None
    except ValueError:
        raise fail("--until is not an ISO date (YYYY-MM-DD)") from None
    params = dp_stats.ReleaseParams(epsilon=epsilon, weeks=weeks, until=last_day,
                                    contributions=contributions, threshold=threshold,
                                    sites=tuple(sites or ()), regions=tuple(regions or ()))
    application = open_app()
    actor = cli_actor()
    with application.audited(actor, "stats.release", "stats", epsilon=epsilon, weeks=weeks,
                             contributions=contributions, threshold=threshold,
                             sites=len(params.sites), regions=len(params.regions)) as note:
        try:
            params.check()
            row = privacy_ledger.publish(application.store.catalog, params, actor.name,
                                         application.environ)
        except privacy_ledger.OverBudget as exc:
            note.refuse(exc.code)
            raise fail(str(exc)) from None
        except ValueError as exc:
            note.refuse("bad_parameters")
            raise fail(str(exc)) from None
        note.obj = f"stats:{row.id}"
        note.detail.update(release=row.id, spent=round(row.epsilon, 6), spent_after=round(row.spent_after, 6))
    _print_release(privacy_ledger.to_json(row), as_json)


@stats_app.command("show")
def show_cmd(release_id: Annotated[int, typer.Argument(help="The release's ledger id.")],
             as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """Reprint a recorded release exactly as it was published (no new noise, no budget spent)."""
    from api.application import cli_actor
    from matcher.privacy import ledger as privacy_ledger

    application = open_app()
    with application.audited(cli_actor(), "stats.show", f"stats:{release_id}") as note:
        row = privacy_ledger.entry(application.store.catalog, release_id)
        if row is None:
            note.refuse("release_not_found")
            raise fail(f"no release {release_id} in the ledger")
    _print_release(privacy_ledger.to_json(row), as_json)


@stats_app.command("ledger")
def ledger_cmd(as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False) -> None:
    """The releases of this data folder and the privacy budget left."""
    from api.application import cli_actor
    from matcher.privacy import ledger as privacy_ledger

    application = open_app()
    with application.audited(cli_actor(), "stats.ledger", "stats"):
        try:
            left = privacy_ledger.budget(application.store.catalog, application.environ)
        except ValueError as exc:
            raise fail(str(exc)) from None
        rows = privacy_ledger.entries(application.store.catalog)
    if as_json:
        typer.echo(json.dumps({"budget": left.total, "spent": round(left.spent, 6),
                               "left": round(left.left, 6),
                               "releases": [privacy_ledger.to_json(r, with_tables=False) for r in rows]},
                              sort_keys=True))
        return
    typer.echo(f"budget {left.total:g}, spent {left.spent:g}, left {left.left:g}")
    for r in rows:
        typer.echo(f"  {r.id}: {r.at:%Y-%m-%d %H:%M} {r.actor} epsilon {r.epsilon:g} "
                   f"(total {r.spent_after:g})")
