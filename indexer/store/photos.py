"""Image bytes kept in the data folder so that a reviewer can look at them later.

Signals are enough to *find* a match, but a person deciding it needs the
pictures: the reference photo of a missing person and the ad that matched it.
Photos of banks that hold people (``missing_person``) and the query images
kept for review are sealed with :mod:`indexer.crypto`; other banks' photos
(ads, venues) are stored as they came.

Files are named by an opaque random token, never by a label or a content
hash. Callers write the file *before* committing the catalog row that points
at it and remove it again when that commit fails: a stray file is harmless, a
row that points at nothing is not.

One photo at a time (:meth:`PhotoStore.put`), the file is written atomically
and durably: two fsyncs (the file, its folder). A batch run writes a batch's
photos with ``durable=False`` and makes them durable together with
:meth:`PhotoStore.sync` just before the batch's catalog commit: each file's
fsync, then one fsync per folder, instead of two per photo (issue 21: 9 ms a
photo on a loaded machine). The order is what keeps a crash harmless: every
file is on disk before the row naming it commits; a crash before the sync
leaves at most unnamed files (a token no row holds, possibly short), never a
row without its photo.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from indexer.crypto import Cipher, is_sealed
from indexer.store.atomic import write_atomically

ENCRYPTED_KINDS = frozenset({"missing_person"})
# Threads that write and fsync a batch's photos side by side (I/O waits, not CPU work).
SYNC_THREADS = 4


def needs_encryption(bank_kind: str, policy: dict | None = None) -> bool:
    """Whether a bank's photos and personal fields must be encrypted at rest."""
    return bank_kind in ENCRYPTED_KINDS or bool((policy or {}).get("encrypt"))


class PhotoStore:
    """``<data>/photos/<namespace>/<token>``: sealed or plain image bytes."""

    def __init__(self, data_dir: Path, cipher: Cipher | None) -> None:
        self.root = Path(data_dir) / "photos"
        self.cipher = cipher

    def _path(self, namespace: str, token: str) -> Path:
        if not token.isalnum() or not namespace.replace("-", "").isalnum():
            raise ValueError("malformed photo reference")
        return self.root / namespace / token

    def put(self, namespace: str, data: bytes, *, encrypt: bool, durable: bool = True) -> str:
        """Store ``data`` and return its token (raises MissingKey-like errors first).

        ``durable=False`` writes the file without syncing it: the caller must pass
        :meth:`path` of the token to :meth:`sync` before committing a row that names it.
        """
        token = secrets.token_hex(16)
        self.write(namespace, token, data, encrypt=encrypt, durable=durable)
        return token

    def write(self, namespace: str, token: str, data: bytes, *, encrypt: bool, durable: bool = True,
              fsync: bool = False) -> None:
        """Write the photo of a new ``token`` (:meth:`put` draws one); ``fsync``: sync the file
        itself, not its folder (a batch syncs each folder once, :meth:`sync_folders`)."""
        payload = self._sealed(namespace, token, data) if encrypt else data
        path = self._path(namespace, token)
        if durable:
            write_atomically(path, payload)
        else:
            _write_new(path, payload, fsync=fsync)

    def _sealed(self, namespace: str, token: str, data: bytes) -> bytes:
        if self.cipher is None:
            from indexer.crypto import require_cipher
            require_cipher()  # raises with the clear message
        assert self.cipher is not None
        return self.cipher.encrypt(data, _context(namespace, token))

    def path(self, namespace: str, token: str) -> Path:
        """Where the photo of ``token`` lives (for :meth:`sync`)."""
        return self._path(namespace, token)

    @staticmethod
    def sync(paths: Iterable[Path]) -> None:
        """Make photos written with ``durable=False`` durable: each file, then each folder once.

        The files are synced side by side (a few threads: each fsync waits on the disk, not
        the CPU, and the filesystem's journal commits concurrent ones together), all of
        them before any folder. A file gone meanwhile (discarded by its writer) is skipped.
        Raises OSError when a sync fails: the caller must then not commit the rows that
        name these photos.
        """
        paths = [Path(p) for p in paths]
        if len(paths) > 1:
            with ThreadPoolExecutor(min(SYNC_THREADS, len(paths))) as pool:
                list(pool.map(_fsync_file, paths))  # re-raises the first failure
        else:
            for path in paths:
                _fsync_file(path)
        PhotoStore.sync_folders({p.parent for p in paths})

    @staticmethod
    def sync_folders(folders: Iterable[Path]) -> None:
        """fsync each folder once (the new files' names), after the files themselves."""
        for folder in sorted(set(folders)):
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def get(self, namespace: str, token: str) -> bytes:
        """The original bytes (raises FileNotFoundError, DecryptionFailed or MissingKey)."""
        blob = self._path(namespace, token).read_bytes()
        if not is_sealed(blob):
            return blob
        if self.cipher is None:
            from indexer.crypto import require_cipher
            require_cipher()
        assert self.cipher is not None
        return self.cipher.decrypt(blob, _context(namespace, token))

    def delete(self, namespace: str, token: str) -> None:
        """Remove a photo, overwriting its bytes first (best effort below the filesystem)."""
        path = self._path(namespace, token)
        with contextlib.suppress(FileNotFoundError):
            size = path.stat().st_size
            with path.open("r+b") as f:
                f.write(b"\0" * size)
                f.flush()
                os.fsync(f.fileno())
            path.unlink()

    def exists(self, namespace: str, token: str) -> bool:
        return self._path(namespace, token).exists()


def _write_new(path: Path, payload: bytes, fsync: bool = False) -> None:
    """Write a new file under its final name (a fresh token: nobody reads it before the commit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def bank_namespace(bank_id: int) -> str:
    return f"bank-{int(bank_id)}"


QUERY_NAMESPACE = "queries"


def _context(namespace: str, token: str) -> bytes:
    return f"photo:{namespace}:{token}".encode()


PHOTO_ATTR = "photo"  # the Item.attributes key holding the photo-store token (as api.enrollment)


class FileKeeper:
    """Keeps the photos of a batch run (``reunite index`` / ``enroll``) as HTTP ingest keeps uploads.

    ``keep`` copies a file's bytes into the bank's namespace (sealed when the
    bank needs it) and returns the attributes that point at it, but only when
    the bytes are still those that were indexed (a file replaced meanwhile is
    not kept under another image's name). Files are written and fsynced by
    background threads while the run goes on; :meth:`sync` waits for the
    batch's files, syncs their folder once, and must run before the commit
    (``index`` and ``enroll`` call it just before ``add_images``); ``discard``
    removes those whose row was not created (a duplicate, a failed commit).
    """

    def __init__(self, photos: PhotoStore, bank_id: int, encrypt: bool, *, keep: bool = True) -> None:
        self.photos = photos
        self.namespace = bank_namespace(bank_id)
        self.encrypt = encrypt
        self.keeps = keep
        # sha256 -> file of this run: what the watch reads when the bank's policy keeps no photos
        self.paths: dict[str, Path] = {}
        self._unsynced: list[tuple[Path, Future[None]]] = []
        self._pool: ThreadPoolExecutor | None = None

    def keep_bytes(self, data: bytes) -> dict[str, str]:
        """The attributes naming the photo of ``data``; the file is written (and synced) by a
        background thread meanwhile, so the disk's waits overlap the run's decoding and
        catalog work: :meth:`sync` waits for it before the rows naming it may commit."""
        token = secrets.token_hex(16)
        path = self.photos.path(self.namespace, token)
        if self.encrypt and self.photos.cipher is None:  # the missing key raises here, not in a thread
            from indexer.crypto import require_cipher
            require_cipher()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="reunite-photos")
        self._unsynced.append((path, self._pool.submit(
            self.photos.write, self.namespace, token, data, encrypt=self.encrypt, durable=False, fsync=True)))
        return {PHOTO_ATTR: token}

    def sync(self) -> None:
        """Every photo kept since the last sync on disk: call before committing rows that name them.

        Waits for every write of the batch, then syncs each folder once. A failed write
        raises here, and again on the next call, so the rows naming it never commit.
        The threads stay for the next batch (starting them was 3 ms a photo on a loaded
        machine when each batch started its own) until :meth:`close`.
        """
        pending = self._unsynced
        failure: BaseException | None = None
        for _path, future in pending:
            error = future.exception()
            failure = failure or error
        if failure is not None:
            raise failure
        self.photos.sync_folders(path.parent for path, _future in pending)
        self._unsynced = []

    def close(self) -> None:
        """Wait for the writes still running and stop the threads (the run is over: none is
        left behind, so a later run in this process may fork its workers safely)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def keep(self, path: Path, sha256: str) -> dict[str, str]:
        import hashlib

        if not self.keeps:
            self.paths[sha256] = Path(path)
            return {}

        from indexer import images
        try:
            data = images._read_bytes(path, images.DEFAULT_MAX_BYTES)
        except (OSError, images.ImageError):
            return {}
        if hashlib.sha256(data).hexdigest() != sha256:
            return {}
        return self.keep_bytes(data)

    def discard(self, attributes: dict | None) -> None:
        token = (attributes or {}).get(PHOTO_ATTR)
        if token:
            self.photos.delete(self.namespace, str(token))
