"""``reunite enroll`` and ``reunite withdraw``: references into a bank, and consent withdrawn.

Both go through the application layer (api/application.py) like their HTTP
routes: the same encryption-key check (exit 2 naming REUNITE_ENCRYPTION_KEY
before anything is stored), the same purge, and one audit event per action.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import api.cli.venues  # noqa: F401 - registers `venues` (venue-bank maintenance)
from api.cli.main import app, fail, open_app


@app.command("enroll")
def enroll_cmd(
    manifest: Annotated[Path, typer.Argument(
        help="CSV/JSONL manifest: path,label (+ consent or venue columns).")],
    bank: Annotated[str, typer.Option("--bank", help="Bank to enroll into.")],
    kind: Annotated[str, typer.Option("--kind", help="missing_person | venue")] = "missing_person",
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    watch: Annotated[bool, typer.Option(
        "--back-search/--no-back-search", help="Search the ads banks this bank watches for the new "
                                               "references and queue the candidates (resumable).")] = True,
    case_owner: Annotated[str | None, typer.Option(
        "--case-owner", help="Investigator key name (or team:NAME) alerted when a subject of this "
                             "manifest is confirmed in an ad (its own case; see `cases`).")] = None,
) -> None:
    """Enroll reference photos. Missing persons need consent_by, consent_date,
    consent_expires and case_ref on every row; one refused row refuses the manifest."""
    from api.cli.main import engine_progress
    from api.progress import Progress
    from indexer import enroll, ingest

    engine_progress(quiet)
    if kind not in enroll.ENROLL_KINDS:
        raise fail(f"--kind must be one of {', '.join(enroll.ENROLL_KINDS)}")
    if case_owner is not None:  # checked before anything is stored
        from matcher.review.cases import CaseError, check_owner
        try:
            case_owner = check_owner(case_owner)
        except CaseError as exc:
            raise fail(f"--case-owner: {exc.detail}") from None
    try:
        records = ingest.read_source(manifest)
    except ingest.ManifestError as exc:
        raise fail(str(exc)) from None
    if manifest.is_dir() or manifest.suffix.lower() not in ingest.MANIFEST_SUFFIXES:
        raise fail("enroll needs a CSV or JSONL manifest (labels and consent are per row)")
    from api.application import cli_actor
    from indexer.crypto import MissingKey

    rows = [{"path": str(r.path), "label": r.label, **r.attributes} for r in records]
    application = open_app()
    existing = application.store.catalog.bank(bank)
    with application.audited(cli_actor(), "subject.enroll", f"bank:{bank}", kind=kind, via="cli") as note:
        try:
            application.require_key(kind, existing.policy if existing is not None else None, bank)
        except MissingKey as exc:
            note.refuse("encryption_key_required")
            raise fail(str(exc)) from None
        bar = Progress("enroll", "img", len(rows), quiet=quiet)  # log lines when stderr is no terminal

        def progress(done: int, total: int) -> None:
            bar.update(done, total)

        try:
            report = enroll.enroll_records(application.store, bank, kind, rows, progress=progress,
                                           photos=application.photos)  # kept for reviewers
        except (enroll.EnrollError, ValueError, MissingKey) as exc:
            bar.close(completed=False)
            note.refuse("refused")
            raise fail(str(exc)) from None
        bar.close()
        note.detail.update(photos=report["enrolled"], already=report["already_enrolled"],
                           subjects=report["subjects"], renewed=report["consent_renewed"])
        if case_owner is not None:
            owned = _own_subjects(application, bank, [r["label"] for r in rows], case_owner)
            if owned is not None:
                note.refuse("subject_in_another_case")
                raise fail(owned)
            note.detail.update(case_owner=True)
    for row in report["no_face_rows"][:20]:
        typer.echo(f"  warning: row {row}: no face found (kept for hash matching only)", err=True)
    typer.echo(f"bank {bank} ({kind}): {report['enrolled']} photos enrolled, "
               f"{report['already_enrolled']} already enrolled, {report['subjects']} subjects, "
               f"{len(report['no_face_rows'])} without a face ({report['seconds']} s)")
    bank_row = application.store.catalog.bank(bank)
    if watch and bank_row is not None:
        for line in back_search_lines(application, bank_row, quiet):
            typer.echo(line)


def _own_subjects(application, bank: str, labels: list[str], owner: str) -> str | None:  # noqa: ANN001
    """Put each enrolled subject of ``labels`` in a case owned by ``owner``; the refusal, if any."""
    from matcher.review.cases import CaseError

    catalog = application.store.catalog
    bank_row = catalog.bank(bank)
    with catalog.session() as s:
        pseudonyms = [subject.pseudonym for label in dict.fromkeys(labels)
                      if (subject := catalog.subject_by_label(s, bank_row.id, label)) is not None]
    for pseudonym in pseudonyms:
        try:
            application.alerts.cases.own_subject(pseudonym, owner)
        except CaseError as exc:
            return exc.detail
    return None


def back_search_lines(application, bank, quiet: bool) -> list[str]:  # noqa: ANN001 - Application, Bank
    """Search the ads banks ``bank`` watches for its references not yet searched for (resumable)."""
    from api.application import cli_actor
    from api.progress import Progress
    from api.watching import back_search

    bar: Progress | None = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:  # a bar on a terminal, log lines for cron jobs (api.progress)
            bar = Progress("back-search", "ad", total, quiet=quiet)
        bar.update(done, total)

    try:
        done = back_search(application, bank, cli_actor(), progress=progress)
    finally:
        if bar is not None:
            bar.close()
    return [f"back-search of {ads}: " + report.summary().removeprefix("watch: ") for ads, report in done]


@app.command("withdraw")
def withdraw_cmd(
    pseudonym: Annotated[str, typer.Argument(help="The subject's pseudonym (S-...).")],
) -> None:
    """Withdraw consent: purge the subject's photos, vectors, personal fields and candidates."""
    from api import consent
    from api.application import cli_actor

    application = open_app()
    with application.audited(cli_actor(), "subject.withdraw", f"subject:{pseudonym}", via="cli") as note:
        done = consent.withdraw(application, pseudonym)
        if done is None:
            note.refuse("subject_not_found")
            raise fail("no subject by that pseudonym")
        note.detail.update(photos=done.photos, vectors=done.vectors, candidates=done.candidates)
    typer.echo(f"withdrawn: {done.photos} photos, {done.vectors} vectors and {done.candidates} candidates "
               "purged")
