"""Ads into networks: the linking step of ``reunite index`` for ads banks, and ``reunite networks``.

``reunite index`` of an ``ads`` bank calls :func:`link_records` after indexing:
it records every (ad, photo) row, including ads that repost a photo the bank
already holds (``index`` stores each image once, so without this the reposting
ad would be lost), and links what is new. ``reunite link`` remains as a hidden
alias. ``networks`` first links whatever was indexed since the last run
(``index --no-link``, the HTTP ingest) and then prints the networks.

Importing this module also registers ``export`` and ``import`` (api.cli.exchange).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

import api.cli.exchange  # noqa: F401 - registers `export` and `import`
from api.cli.main import app, bank_or_fail, engine_progress, fail, index_cmd, open_app, region_or_fail

if TYPE_CHECKING:
    from indexer.ingest import Record
    from indexer.store.catalog import Bank
    from indexer.store.store import Store

REGION_HELP = "Country (ISO 3166 alpha-2) of phone numbers written without +prefix."


def link_records(store: Store, bank: Bank, records: Iterable[Record], region: str = "US",
                 hashed: dict[Path, str] | None = None, *, search: bool = True, quiet: bool = False) -> str:
    """Record every (ad, photo) row of an indexed ads crawl and link what is new; returns a summary.

    ``index`` stores each image once, so the rows of ads that repost a photo
    the bank already holds are recorded here (with their manifest columns),
    or the reposting ad would be lost. ``hashed``: path -> sha256 as indexing read
    them (``index_records(hashed=...)``); other files are read and hashed here.
    ``search=False`` (``index --no-link``)
    records the rows only: the rows are what a later ``reunite networks``
    cannot rebuild (a WARC's spool is gone, a crawl folder may have moved),
    while the search it defers reads only what the catalog keeps (the prints
    staged at indexing, stored features, kept photos), so deferred and
    immediate linking give the same links.
    """
    from indexer import ingest
    from matcher.networks.links import LinkConfig, Linker, Occurrence, file_reader

    paths: dict[str, Path] = {}
    occurrences = []
    for record in records:
        sha = (hashed or {}).get(record.path)
        if sha is None:
            try:
                sha = ingest.file_sha256(record.path)
            except OSError:
                continue  # reported by the indexing step
        paths.setdefault(sha, record.path)
        occurrences.append(Occurrence(record.label, sha, record.attributes))
    linker = Linker(store, config=LinkConfig(region=region))
    recorded = linker.record(bank, occurrences)
    if not search:
        return (f"recorded {recorded} ad photo(s); linking deferred to `reunite networks --bank "
                f"{bank.name}`")
    with link_progress(quiet) as progress:
        summary = linker.update(bank, read=file_reader(paths), progress=progress).summary()
    store.checkpoint()
    return summary


@contextmanager
def link_progress(quiet: bool) -> Iterator[Callable[[str, int, int], None]]:
    """The linker's progress (matcher.networks.links.LinkProgress) on stderr: a bar on a terminal, log
    lines with counts and rates otherwise (api.progress), one per phase."""
    from api.progress import Progress

    bars: dict[str, Progress] = {}
    units = {"occurrences": "ad photo", "images": "img"}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in bars:
            for other in bars.values():
                other.close()
            bars[phase] = Progress("link", units.get(phase, phase), total, quiet=quiet)
        bars[phase].update(done, total)

    try:
        yield progress
    except BaseException:
        for bar in bars.values():
            bar.close(completed=False)
        raise
    for bar in bars.values():
        bar.close()


@app.command("link", hidden=True)
def link_cmd(
    source: Annotated[Path, typer.Argument(help="Folder, CSV/JSONL manifest or image file of ads.")],
    bank: Annotated[str, typer.Option("--bank", help="Ads bank to index into and link.")],
    signals_opt: Annotated[str | None, typer.Option(
        "--signals", help="Signal families or names, comma separated (default: as for ads).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Indexing processes (default: one per core).")] = None,
    region: Annotated[str, typer.Option("--region", help=REGION_HELP)] = "US",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Alias of `reunite index --kind ads` (kept for scripts written before linking moved there)."""
    index_cmd(source, bank, kind="ads", signals_opt=signals_opt, workers=workers, quiet=quiet,
              link=True, region=region)


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
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress of the linking.")] = False,
) -> None:
    """Ads of a bank grouped into networks by shared photos, faces, phones and e-mails."""
    from api.watching import photo_reader
    from indexer.text import with_article
    from matcher.networks import components as networks
    from matcher.networks.links import LinkConfig, Linker

    engine_progress(quiet)
    region = region_or_fail(region)
    application = open_app()  # the kept photos, when linking needs an image the catalog cannot give
    store = application.store
    bank_row = bank_or_fail(store, bank)
    if bank_row.kind != "ads":
        raise fail(f"bank {bank!r} is {with_article(bank_row.kind)} bank; networks are built from ads banks")
    if update:
        with link_progress(quiet) as progress:
            report = Linker(store, config=LinkConfig(region=region)).update(
                bank_row, read=photo_reader(application, bank_row), progress=progress)
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
