"""``reunite enroll``: consented missing-person references or venue photos into a bank."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

import api.cli_venues  # noqa: F401 - registers `venues` (venue-bank maintenance)
from api.cli import app, fail, open_store


@app.command("enroll")
def enroll_cmd(
    manifest: Annotated[Path, typer.Argument(
        help="CSV/JSONL manifest: path,label (+ consent or venue columns).")],
    bank: Annotated[str, typer.Option("--bank", help="Bank to enroll into.")],
    kind: Annotated[str, typer.Option("--kind", help="missing_person | venue")] = "missing_person",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Enroll reference photos. Missing persons need consent_by, consent_date,
    consent_expires and case_ref on every row; one refused row refuses the manifest."""
    from tqdm import tqdm

    from indexer import enroll, ingest

    if kind not in enroll.ENROLL_KINDS:
        raise fail(f"--kind must be one of {', '.join(enroll.ENROLL_KINDS)}")
    try:
        records = ingest.read_source(manifest)
    except ingest.ManifestError as exc:
        raise fail(str(exc)) from None
    if manifest.is_dir() or manifest.suffix.lower() not in ingest.MANIFEST_SUFFIXES:
        raise fail("enroll needs a CSV or JSONL manifest (labels and consent are per row)")
    rows = [{"path": str(r.path), "label": r.label, **r.attributes} for r in records]
    store = open_store()
    bar = tqdm(total=len(rows), unit="img", disable=quiet or None, file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        bar.n = done
        bar.refresh()

    try:
        report = enroll.enroll_records(store, bank, kind, rows, progress=progress)
    except (enroll.EnrollError, ValueError) as exc:
        bar.close()
        raise fail(str(exc)) from None
    bar.close()
    for row in report["no_face_rows"][:20]:
        typer.echo(f"  warning: row {row}: no face found (kept for hash matching only)", err=True)
    typer.echo(f"bank {bank} ({kind}): {report['enrolled']} photos enrolled, "
               f"{report['already_enrolled']} already enrolled, {report['subjects']} subjects, "
               f"{len(report['no_face_rows'])} without a face ({report['seconds']} s)")
