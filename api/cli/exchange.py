"""``reunite export`` / ``reunite import``: hash lists for partners and the field's tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.main import app, fail, open_app

_EXPORT_HELP = ("pdq (hash,quality,id: the PDQ tools) | hex (bare hashes) | te (`pdq <hash>` lines: "
                "threatexchange's file source) | te-csv (threatexchange dataset CSV) | "
                "csv (id,pdq,quality,phash)")
_IMPORT_HELP = "pdq | hex | te | te-csv | csv | stopncii (default: detected from the file)"


@app.command("export")
def export_cmd(
    bank: Annotated[str, typer.Option("--bank", help="Bank whose hashes to share.")],
    out: Annotated[Path, typer.Option("--out", help="File to write (its signature goes to FILE.sig).")],
    fmt: Annotated[str, typer.Option("--format", help=_EXPORT_HELP)] = "pdq",
    key: Annotated[Path | None, typer.Option(
        "--key", help="Ed25519 private key (PEM) to sign with (default: the data folder's, made once).")
                   ] = None,
) -> None:
    """Write a bank's PDQ hashes (with quality) and pHashes under opaque ids, with a detached signature."""
    from api.application import cli_actor
    from indexer import exchange

    application = open_app()
    store = application.store
    try:
        result = exchange.export_bank(store, store.bank_or_error(bank), fmt, out, key)
    except LookupError as exc:
        raise fail(str(exc.args[0])) from None
    except exchange.ExchangeError as exc:
        raise fail(str(exc)) from None
    application.record(cli_actor(), "bank.export", f"bank:{bank}", rows=result.rows, format=fmt[:16],
                       signer=result.fingerprint, via="cli")
    typer.echo(f"wrote {result.rows} hashes to {result.path}, signed by key {result.fingerprint} "
               f"in {result.signature}")
    if result.skipped_without_pdq:
        typer.echo(f"  {result.skipped_without_pdq} images without a PDQ hash left out (use --format csv "
                   "to share their pHash)", err=True)
    if result.key_created and result.public_key is not None:
        typer.echo(f"new signing key; give partners its public key: {result.public_key}")


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="A hash list: a reunite export, the PDQ tools' output, "
                                              "threatexchange or StopNCII.")],
    bank: Annotated[str, typer.Option("--bank", help="Hashes bank to load it into.")],
    signer: Annotated[Path | None, typer.Option(
        "--signer", help="The signer's public key, for a reunite-signed list (FILE.sig).")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help=_IMPORT_HELP)] = None,
    unsigned: Annotated[bool, typer.Option(
        "--unsigned", help="Load a list that carries no reunite signature; the bank is marked unverified.")
                        ] = False,
) -> None:
    """Load a hash list as a hash-only bank that `match` searches (a signed list is verified first)."""
    from api.application import cli_actor
    from indexer import exchange

    application = open_app()
    actor = cli_actor()
    try:
        result = exchange.import_list(application.store, file, bank, signer, fmt=fmt, unsigned=unsigned)
    except (exchange.ExchangeError, ValueError) as exc:  # ValueError: a bad bank name
        application.record(actor, "hashes.import", f"bank:{bank}", "rejected",
                           format=fmt, signed=signer is not None, unsigned=unsigned, via="cli")
        message = f"{file}: {exc}" if isinstance(exc, exchange.ExchangeError) else str(exc)
        raise fail(message) from None
    application.record(actor, "hashes.import", f"bank:{result.bank}", "ok",
                       format=result.format, rows=result.rows, added=result.added,
                       verified=result.verified, signer=result.fingerprint,
                       left_out=sum(result.left_out.values()), via="cli")
    trust = f"signed by {result.fingerprint}" if result.verified else "UNVERIFIED (no signature)"
    typer.echo(f"imported {result.rows} hashes ({result.format}, {trust}) into bank {result.bank} "
               f"({result.added} new)")
    for why, count in sorted(result.left_out.items()):
        typer.echo(f"  {count} rows left out: {why}", err=True)
