"""``reunite export`` / ``reunite import``: signed hash lists for partners (see indexer.exchange)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli import app, fail, open_app, open_store


@app.command("export")
def export_cmd(
    bank: Annotated[str, typer.Option("--bank", help="Bank whose hashes to share.")],
    out: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="pdq (hash,quality,id) | csv (id,pdq,quality,phash)")
                   ] = "pdq",
    key: Annotated[Path | None, typer.Option(
        "--key", help="Ed25519 private key (PEM) to sign with (default: the data folder's, made once).")
                   ] = None,
) -> None:
    """Write a bank's PDQ hashes (with quality) and pHashes under opaque ids, signed with Ed25519."""
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
    typer.echo(f"wrote {result.rows} hashes to {result.path}, signed by key {result.fingerprint}")
    if result.skipped_without_pdq:
        typer.echo(f"  {result.skipped_without_pdq} images without a PDQ hash left out (use --format csv "
                   "to share their pHash)", err=True)
    if result.key_created and result.public_key is not None:
        typer.echo(f"new signing key; give partners its public key: {result.public_key}")


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="A signed hash list from `reunite export`.")],
    bank: Annotated[str, typer.Option("--bank", help="Hashes bank to load it into.")],
    signer: Annotated[Path, typer.Option("--signer", help="The signer's public key file.")],
) -> None:
    """Verify a partner's signed hash list and load it as a hash-only bank (refused if altered)."""
    from indexer import exchange

    store = open_store()
    try:
        result = exchange.import_list(store, file, bank, signer)
    except exchange.ExchangeError as exc:
        raise fail(f"{file}: {exc}") from None
    except ValueError as exc:  # a bad bank name
        raise fail(str(exc)) from None
    typer.echo(f"imported {result.rows} hashes signed by {result.fingerprint} into bank {result.bank} "
               f"({result.added} new)")
