"""Ad images pushed over HTTP: the pipeline and idempotency of `reunite index`.

An image whose sha256 is already in the bank is answered with its existing
item and not stored again, so crawlers can retry freely. In a batch every file
stands alone: a bad file is reported with its reason and the others are
indexed, each one whole or not at all. Photos are kept (plain: ad banks hold
no consented references) so that reviewers can look at them later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from api.enrollment import PHOTO_ATTR
from api.errors import ApiError
from api.service import Service
from api.uploads import Upload, api_error, signal_names
from indexer import images, pipeline
from indexer.store.catalog import Bank
from indexer.store.photos import bank_namespace, needs_encryption
from indexer.store.store import NewImage
from indexer.text import with_article

INGEST_KINDS = ("ads", "hashes")


@dataclass(frozen=True)
class AdRecord:
    """What a crawler says about one image."""

    label: str | None = None
    source: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    index: int
    sha256: str | None = None
    item: int | None = None
    created: bool | None = None
    error: str | None = None
    detail: str | None = None


def check_bank(bank: Bank) -> None:
    if bank.kind not in INGEST_KINDS:
        raise ApiError(409, "wrong_bank_kind", f"bank {bank.name!r} is {with_article(bank.kind)} "
                       f"bank; ingest goes into {' or '.join(INGEST_KINDS)} banks (references are enrolled)")


def ingest(svc: Service, bank: Bank, uploads: list[Upload], records: list[AdRecord],
           *, strict: bool) -> list[Outcome]:
    """Index uploads into ``bank``; ``strict`` raises on the first bad file (single upload)."""
    check_bank(bank)
    names = signal_names(bank)
    existing = svc.store.catalog.known_sha256(bank.id)
    outcomes = [Outcome(index=n) for n in range(len(uploads))]
    todo: list[tuple[int, Upload, pipeline.Extraction, AdRecord]] = []
    seen: dict[str, int] = {}
    for n, (up, rec) in enumerate(zip(uploads, records, strict=True)):
        sha = up.sha256
        outcomes[n].sha256 = sha
        if sha in existing or sha in seen:
            outcomes[n].created = False
            continue
        try:
            extraction = pipeline.extract(up.data, names)
        except images.ImageError as exc:
            if strict:
                raise api_error(exc, up.where) from None
            outcomes[n].error, outcomes[n].detail = exc.code, f"{up.where}: {exc}"
            continue
        seen[sha] = n
        todo.append((n, up, extraction, rec))

    namespace = bank_namespace(bank.id)
    encrypt = needs_encryption(bank.kind, bank.policy)
    tokens: list[str] = []
    try:
        batch = []
        for _n, up, extraction, rec in todo:
            token = svc.photos.put(namespace, up.data, encrypt=encrypt, durable=False)
            tokens.append(token)
            batch.append(NewImage(extraction, rec.label or f"ad-{extraction.sha256[:16]}", rec.source,
                                  {**rec.attributes, PHOTO_ATTR: token}))
        # The request's photos on disk together (one fsync per file, one for the folder) before
        # the rows naming them commit (indexer.store.photos).
        svc.photos.sync(svc.photos.path(namespace, t) for t in tokens)
        results = svc.store.add_images(bank, batch) if batch else []
    except BaseException:
        for token in tokens:
            svc.photos.delete(namespace, token)
        raise
    for (n, _up, _ex, _rec), (item, created), token in zip(todo, results, tokens, strict=True):
        outcomes[n].item, outcomes[n].created = item.id, created
        if not created:
            svc.photos.delete(namespace, token)
    missing = {o.sha256 for o in outcomes if o.item is None and o.error is None}
    if missing:  # already indexed: answer with the existing items
        with svc.store.catalog.session() as s:
            by_sha = {sha: svc.store.catalog.item_by_sha(s, bank.id, sha) for sha in missing if sha}
        for o in outcomes:
            found = by_sha.get(o.sha256 or "")
            if o.item is None and o.error is None and found is not None:
                o.item = found.id
    _watch(svc, bank, [o.item for o in outcomes if o.item is not None],
           {o.item for o in outcomes if o.item is not None and o.created}, names)
    return outcomes


def _watch(svc: Service, bank: Bank, item_ids: list[int], created: set[int], names: list[str]) -> None:
    """Check the ads of this request against the banks that watch their bank (api/watching.py).

    The ads sent again are included: one whose check a crash interrupted is checked now.
    """
    if not item_ids or bank.kind != "ads":
        return
    from api.watching import SYSTEM_ACTOR, Indexed, check_ads
    check_ads(svc, bank, SYSTEM_ACTOR, item_ids=item_ids,
              indexed=Indexed(frozenset(created), frozenset(names)))
