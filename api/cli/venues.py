"""``reunite venues``: maintenance of venue banks (the room-background index).

A venue bank's VLAD vocabulary is trained on the bank the first time it is
searched and retrained automatically only when the bank has doubled since
(indexer/scene/bank.py). After a large enrollment that changed what the bank
holds (a new hotel chain, a new kind of room) an analyst may want the
vocabulary refitted now rather than at the next doubling: ``retrain`` does
that, re-encodes every reference and saves the index, so the next search does
not pay for it.
"""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from api.cli.main import app, bank_or_fail, fail, open_store

venues_app = typer.Typer(no_args_is_help=True, help="Venue banks: room-background index maintenance.")
app.add_typer(venues_app, name="venues")


@venues_app.command("retrain")
def retrain_cmd(
    bank: Annotated[str, typer.Option("--bank", help="Venue bank whose vocabulary to retrain.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Train a new VLAD vocabulary on the bank as it is now and re-encode every reference."""
    from indexer.scene.bank import SceneBankIndex
    from indexer.signals.scene import SCENE

    store = open_store()
    bank_row = bank_or_fail(store, bank)
    if SCENE not in store.index_signals(bank_row):
        raise fail(f"bank {bank!r} holds no {SCENE} vectors (index or enroll venue photos first)")
    started = time.perf_counter()
    folder = store.indexes.root / f"bank-{bank_row.id}"
    index = SceneBankIndex(store.catalog, folder, bank_row.id, SCENE).retrain()
    result = {"bank": bank, "references": len(index), "words": index.meta.words,
              "revision": index.meta.revision, "seconds": round(time.perf_counter() - started, 2)}
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"bank {bank}: vocabulary of {result['words']} words retrained on "
                   f"{result['references']} references ({result['seconds']} s)")
