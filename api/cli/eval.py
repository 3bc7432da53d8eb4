"""``reunite eval SUITE --kind copy|face|venue``: benchmark the engine on a suite folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from api.cli.main import app, fail


@app.command("eval")
def eval_cmd(
    suite: Annotated[Path, typer.Argument(help="Suite folder with gallery.csv and queries.csv.")],
    kind: Annotated[str, typer.Option("--kind", help="copy | face | venue")] = "copy",
    out: Annotated[Path | None, typer.Option("--out", help="JSON summary file.")] = None,
    answers: Annotated[Path | None, typer.Option(
        "--answers", help="Also write the answers as JSON lines (for score.py).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N queries.")
                     ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Indexing processes.")] = 1,
    signals: Annotated[str | None, typer.Option(
        "--signals", help="copy: the gallery's signal families or names, comma separated "
                          "(default: an ads bank's).")] = None,
) -> None:
    """Index the suite's gallery in a temporary data folder, match its queries, print metrics."""
    from api.progress import Progress

    # A bar on a terminal, count lines in a log: a suite takes tens of minutes, its gallery first.
    from matcher.evaluation import metrics
    from matcher.evaluation import suite as evaluate
    bars: dict[str, Progress] = {}

    def tracked(label: str, unit: str):  # noqa: ANN202 - the progress callback of one phase
        def progress(done: int, total: int) -> None:
            if label not in bars:
                for earlier in bars.values():
                    earlier.close()
                bars[label] = Progress(label, unit, total)
            bars[label].update(done, total)
        return progress

    chosen = [n for n in signals.split(",") if n.strip()] if signals else None
    try:
        result = evaluate.run_eval(suite, kind, limit=limit, workers=workers, signal_names=chosen,
                                   progress=tracked("eval", "query"),
                                   index_progress=tracked("eval gallery", "img"))
    except BaseException as exc:
        for bar in bars.values():
            bar.close(completed=False)
        if isinstance(exc, evaluate.SuiteError):
            raise fail(str(exc)) from None
        raise
    for bar in bars.values():
        bar.close()
    typer.echo(f"suite {result.suite} ({kind}): {result.summary['n_queries']} queries, "
               f"gallery {result.timing['gallery_images']} images")
    typer.echo(metrics.format_table(result.summary, with_fnir=kind == "face"))
    if "query_ms_p50" in result.timing:
        typer.echo(f"query time: p50 {result.timing['query_ms_p50']} ms, "
                   f"p95 {result.timing['query_ms_p95']} ms")
    out = out or Path(f"eval-{result.suite}-{kind}.json")
    out.write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
    typer.echo(f"summary: {out}")
    if answers is not None:
        with answers.open("w", encoding="utf-8") as f:
            for line in result.answers:
                f.write(json.dumps(line) + "\n")
        typer.echo(f"answers: {answers}")
