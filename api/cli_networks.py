"""``reunite link`` and ``reunite networks``: ads grouped into networks (and, on import, hash exchange).

``link`` indexes a crawl exactly as ``reunite index`` does and then records
every (ad, photo) row, including ads that repost a photo the bank already
holds (``index`` stores each image once, so without this the reposting ad
would be lost), and links what is new. ``networks`` first links whatever was
indexed since the last run (plain ``index``, the HTTP ingest) and then prints
the networks.

Importing this module also registers ``export`` and ``import`` (api.cli_exchange).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

import api.cli_exchange  # noqa: F401 - registers `export` and `import`
from api.cli import app, fail, open_store, parse_signals, progress_bar

REGION_HELP = "Country (ISO 3166 alpha-2) of phone numbers written without +prefix."


@app.command("link")
def link_cmd(
    source: Annotated[Path, typer.Argument(help="Folder, CSV/JSONL manifest or image file of ads.")],
    bank: Annotated[str, typer.Option("--bank", help="Ads bank to index into and link.")],
    signals_opt: Annotated[str | None, typer.Option(
        "--signals", help="Signal families or names, comma separated (default: as for ads).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Indexing processes.")] = 1,
    region: Annotated[str, typer.Option("--region", help=REGION_HELP)] = "US",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Index a crawl of ads and link its ads into networks (re-running resumes)."""

    from indexer import ingest
    from matcher.links import LinkConfig, Linker, Occurrence, file_reader

    try:
        records = ingest.read_source(source)
    except ingest.ManifestError as exc:
        raise fail(str(exc)) from None
    names = parse_signals(signals_opt, "ads")
    store = open_store()
    try:
        bank_row = store.catalog.ensure_bank(bank, "ads")
    except ValueError as exc:
        raise fail(str(exc)) from None
    bar, progress = progress_bar(len(records), quiet)

    report = ingest.index_records(store, bank_row, records, names, workers=workers,
                                  source=str(source), progress=progress)
    bar.close()
    ingest.write_report(store, report)
    typer.echo(report.summary())
    if report.interrupted:
        typer.echo("interrupted: run the same command again to resume", err=True)
        raise typer.Exit(130)
    paths: dict[str, Path] = {}
    occurrences = []
    for record in records:
        try:
            sha = ingest.file_sha256(record.path)
        except OSError:
            continue  # reported by the indexing step
        paths.setdefault(sha, record.path)
        occurrences.append(Occurrence(record.label, sha, record.attributes))
    linker = Linker(store, config=LinkConfig(region=region))
    linker.record(bank_row, occurrences)
    typer.echo(linker.update(bank_row, read=file_reader(paths)).summary())
    store.checkpoint()


@app.command("networks")
def networks_cmd(
    bank: Annotated[str, typer.Option("--bank", help="Ads bank.")],
    min_size: Annotated[int, typer.Option("--min-size", min=1, help="Smallest network shown.")] = 2,
    min_strength: Annotated[float, typer.Option(
        "--min-strength", min=0.0, max=1.0, help="Weakest link that groups ads (0.8: match tier).")] = 0.8,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per network.")] = False,
    graphml: Annotated[Path | None, typer.Option("--graphml", help="Also write the graph as GraphML.")
                       ] = None,
    gexf: Annotated[Path | None, typer.Option("--gexf", help="Also write the graph as GEXF.")] = None,
    region: Annotated[str, typer.Option("--region", help=REGION_HELP)] = "US",
    update: Annotated[bool, typer.Option(
        "--update/--no-update", help="Link ads indexed since the last run first.")] = True,
) -> None:
    """Ads of a bank grouped into networks by shared photos, faces, phones and e-mails."""
    from matcher import networks
    from matcher.links import LinkConfig, Linker, file_reader

    store = open_store()
    try:
        bank_row = store.bank_or_error(bank)
    except LookupError as exc:
        raise fail(str(exc.args[0])) from None
    if bank_row.kind != "ads":
        raise fail(f"bank {bank!r} is a {bank_row.kind} bank; networks are built from ads banks")
    if update:
        report = Linker(store, config=LinkConfig(region=region)).update(bank_row, read=file_reader())
        if report.occurrences or report.images:
            typer.echo(report.summary(), err=True)
        store.checkpoint()
    found = networks.find_networks(store.catalog, bank_row, min_size=min_size, min_strength=min_strength)
    for fmt, path in (("graphml", graphml), ("gexf", gexf)):
        if path is not None:
            try:
                networks.write_graph(networks.to_graph(found), path, fmt)
            except OSError as exc:
                raise fail(f"cannot write {path}: {exc.strerror or exc}") from None
    for net in found:
        summary = net.summary()
        if as_json:
            typer.echo(json.dumps({"bank": bank_row.name, **summary}))
            continue
        evidence = ", ".join(f"{k} {v}" for k, v in summary["evidence"].items())
        typer.echo(f"{summary['id']}  {summary['size']} ads  {summary['first_seen']} .. "
                   f"{summary['last_seen']}  +{summary['growth_7d']} in 7 days  [{evidence}]")
        typer.echo(f"  ads: {', '.join(summary['ads'][:12])}{' ...' if summary['size'] > 12 else ''}")
        if summary["sites"]:
            typer.echo(f"  sites: {', '.join(summary['sites'])}")
        if summary["phones"]:
            typer.echo(f"  phones: {', '.join(summary['phones'])}")
        if summary["candidates"]:
            typer.echo(f"  candidates: {len(summary['candidates'])} in the review queue")
    if not as_json:
        typer.echo(f"{len(found)} network(s) of at least {min_size} ads in bank {bank_row.name}")
