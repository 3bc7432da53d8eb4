"""The audit head is overwritten in place once it has its fixed width, and still verifies.

Appending used to write a temporary file and rename it over the head for every
event; now a head of the fixed form is overwritten with one ``pwrite``. A head
an older release wrote (unpadded) is replaced atomically the first time, and a
head that is newer than this writer's event is left alone.
"""

from __future__ import annotations

from pathlib import Path

from api.audit import HEAD_FILE, AuditLog, read_head
from indexer.store.catalog import Catalog


def test_head_is_rewritten_in_place_and_verifies(tmp_path: Path) -> None:
    log = AuditLog(Catalog.open(tmp_path), tmp_path, {})
    log.append("tester", "admin", "x.test", "obj", "ok", {})
    head = tmp_path / HEAD_FILE
    inode = head.stat().st_ino
    for n in range(5):
        last = log.append("tester", "admin", "x.test", f"obj-{n}", "ok", {"n": n})
    assert head.stat().st_ino == inode  # overwritten, not replaced
    seq, digest, mac = read_head(head)
    assert (seq, digest) == (last.seq, last.hash) and mac is not None
    assert log.verify().ok, log.verify().problems


def test_an_unpadded_head_is_replaced_and_a_newer_one_kept(tmp_path: Path) -> None:
    log = AuditLog(Catalog.open(tmp_path), tmp_path, {})
    first = log.append("tester", "admin", "x.test", "obj", "ok", {})
    head = tmp_path / HEAD_FILE
    fields = head.read_text().split()
    head.write_text(" ".join([str(int(fields[0])), *fields[1:]]) + "\n")  # as an older release wrote it
    second = log.append("tester", "admin", "x.test", "obj", "ok", {})
    assert read_head(head)[:2] == (second.seq, second.hash)
    assert head.read_text().startswith(f"{second.seq:020d} ")
    assert log.verify().ok, log.verify().problems
    # Another process's newer head is not overwritten by an older event.
    log._write_head(first.seq, first.hash)
    assert read_head(head)[:2] == (second.seq, second.hash)
