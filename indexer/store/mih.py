"""Exact Hamming radius search over millions of 256-bit hashes: multi-index hashing.

A flat scan reads every stored hash for every query (320 MB per lookup at 10M
PDQ hashes). Multi-index hashing (Norouzi, Punjani and Fleet, 2012) splits each
hash into ``m`` substrings. By pigeonhole, two hashes at distance ``d`` agree in
at least one substring up to ``floor(d / m)`` flipped bits, so probing, in
every substring, each key within ``f`` bits of the query's finds *every* hash
within ``m * (f + 1) - 1`` bits: the search is exact, not approximate.
Candidates are verified by popcount on the packed codes.

The default layout is 12 substrings of 21-22 bits probed at up to two flipped
bits (254 keys each; exact to 35 bits, PDQ's match radius is 31). 16
substrings of 16 bits at one flip (17 keys each, exact to 31) probe fewer keys
but each 16-bit bucket holds ~150 hashes at 10M, so they verify ~5x more
candidates: at 1M the two are even, at 10M the 12-substring layout was 6x
faster (BENCHMARKS.md, bench/hash_scale.py). From :data:`LARGE_LAYOUT_ROWS`
hashes on, a rebuild lays 256-bit hashes out in 11 substrings of 23-24 bits
instead (301 keys each, exact to 32): about one hash per key at 10M where 12
substrings leave five, so 5x fewer candidates to verify and 2.3x less CPU per
lookup at 10M, for 470 MB of offsets instead of 100 (BENCHMARKS.md, hash
lookups over HTTP); below a few million hashes those offsets would be mostly empty.

Layout, chosen because it is small and numpy-only: per substring, the row
numbers sorted by that substring's key (a uint32 permutation) and CSR offsets
(uint32) over its 2^w possible keys, so a probe is two offset reads and a
slice. At 10M hashes in 12 substrings: 320 MB of codes, 80 MB of ids, 480 MB of
permutations and 100 MB of offsets; the process peaked at 1.24 GB. In 11
substrings (the layout rebuilt from 4M hashes on): 440 MB of permutations and
470 MB of offsets, a file of 1.32 GB.
Adds go to a small delta that is scanned flat and merged into the layout when
it grows; deletes clear a row's live flag (consent withdrawal: a deleted hash is
never returned) and are compacted away at the next merge.

Beside each hash the index keeps its owner (item, quality, subject:
:class:`~indexer.store.vectors.VectorOwners`, 24 bytes a hash, 240 MB at 10M)
when every add gave it, as the catalog's rebuild and batch writes do: a
crowded lookup then ranks its hits without reading ~120 random catalog rows
(:meth:`MultiIndexHashIndex.radius_owned`). An add without owners makes the
index stop keeping them, and the searcher reads the catalog as before.

Radii beyond the exact probe radius, and nearest-neighbour search, stay exact
by falling back to a scan of the packed codes; the searcher keeps large banks
to the probe radius (see :mod:`matcher.search.query`), because that scan is what this
index is here to avoid.

The saved form is the whole layout, so a process maps it read-only (``mmap``)
instead of re-sorting: several API workers on one box share one copy of the
pages, and a restart does not rebuild.
"""

from __future__ import annotations

import functools
import mmap
import struct
import threading
from collections.abc import Callable, Iterator
from itertools import combinations
from pathlib import Path

import numpy as np

from indexer.store.vectors import Hit, HitArrays, OwnedHits, VectorIndex, VectorOwners, hits_to_arrays

# Version 2 keeps the vectors' owners; a version-1 file reads as unreadable, so it is rebuilt
# from the catalog once (with its owners).
MAGIC = b"RUNMIH2\0"
# magic, bits, rows in the layout, rows in the delta, substrings, flips probed, owners kept (0/1).
_BODY_HEADER = struct.Struct("<8sIQQIII")
# Candidates verified per numpy pass, so that a batch of queries stays in a few MB.
_CHUNK = 1 << 21
_SCAN_ROWS = 1 << 18  # rows per pass of a flat scan


def substring_widths(bits: int, m: int) -> list[int]:
    """Widths of ``m`` substrings covering ``bits`` bits (the first ``bits % m`` one bit wider)."""
    base, extra = divmod(bits, m)
    return [base + 1 if j < extra else base for j in range(m)]


def _words(codes: np.ndarray) -> np.ndarray:
    """(n, bits/8) uint8 -> (n, bits/64) native uint64, most significant bit first."""
    return np.ascontiguousarray(codes).view(">u8").astype(np.uint64)


def _field(words: np.ndarray, start: int, width: int) -> np.ndarray:
    """Bits ``start .. start+width`` of each row of ``words`` as an unsigned integer."""
    word, off = divmod(start, 64)
    one = np.uint64(1)
    if off + width <= 64:
        return (words[:, word] >> np.uint64(64 - off - width)) & ((one << np.uint64(width)) - one)
    high = 64 - off
    low = width - high
    return (((words[:, word] & ((one << np.uint64(high)) - one)) << np.uint64(low))
            | (words[:, word + 1] >> np.uint64(64 - low)))


def _popcount_rows(codes64: np.ndarray, query64: np.ndarray, scratch: bool = False) -> np.ndarray:
    """Hamming distances between rows of ``codes64`` (k, w) and one query (w,).

    A sum of the word columns: twice as fast as ``.sum(axis=1)`` over rows of four
    words. ``scratch``: ``codes64`` is a gathered copy that may be overwritten.
    """
    x = np.bitwise_xor(codes64, query64, out=codes64) if scratch else codes64 ^ query64
    counts = np.bitwise_count(x)
    total = counts[:, 0].astype(np.int32)
    for c in range(1, counts.shape[1]):
        total += counts[:, c]
    return total


def _probe_masks(width: int, flips: int) -> np.ndarray:
    """XOR masks of every ``width``-bit key within ``flips`` bits of a key (0 first)."""
    masks = [0]
    for f in range(1, flips + 1):
        masks += [sum(1 << b for b in combo) for combo in combinations(range(width), f)]
    return np.array(masks, dtype=np.int64)


def _locked(method: Callable) -> Callable:
    """Run ``method`` under the index's lock: an add or a merge replaces several arrays, and a
    search in another thread (the API's worker threads) must not see half of that."""

    @functools.wraps(method)
    def wrapper(self: MultiIndexHashIndex, *args: object, **kwargs: object) -> object:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


class MultiIndexHashIndex(VectorIndex):
    """Exact radius search over packed binary hashes by multi-index hashing."""

    def __init__(self, bits: int, substrings: int = 12, flips: int = 2) -> None:
        if bits % 64:
            raise ValueError(f"multi-index hashing needs a multiple of 64 bits, not {bits}")
        self.bits = bits
        self.m = substrings
        self.flips = flips
        self.widths = substring_widths(bits, substrings)
        if max(self.widths) > 30:
            raise ValueError("substrings wider than 30 bits need more offsets than memory allows")
        self._starts = np.cumsum([0] + self.widths[:-1]).tolist()
        # One flat table of every probe: its substring, its XOR mask, where its offsets start.
        masks = {w: _probe_masks(w, flips) for w in set(self.widths)}
        self._probe_sub = np.concatenate([np.full(len(masks[w]), j) for j, w in enumerate(self.widths)])
        self._probe_mask = np.concatenate([masks[w] for w in self.widths])
        self._offset_base = np.cumsum([0] + [(1 << w) + 1 for w in self.widths[:-1]]).astype(np.int64)
        self._probe_at = self._offset_base[self._probe_sub]  # each probe's substring's offsets
        self._perm_base_of: tuple[int, np.ndarray] | None = None  # (rows, self._perm_base(rows))
        # Unpacked query bits @ this = every substring key of the query in one product.
        self._key_weights = np.zeros((bits, substrings), dtype=np.int64)
        for j, (start, w) in enumerate(zip(self._starts, self.widths, strict=True)):
            self._key_weights[start:start + w, j] = 1 << np.arange(w - 1, -1, -1)
        width = bits // 8
        self._codes = np.empty((0, width), dtype=np.uint8)
        self._ids = np.empty(0, dtype=np.int64)
        self._perm = np.empty((self.m, 0), dtype=np.uint32)
        self._offsets = np.zeros(sum((1 << w) + 1 for w in self.widths), dtype=np.uint32)
        self._live = np.empty(0, dtype=bool)
        self._delta_codes = np.empty((0, width), dtype=np.uint8)
        self._delta_ids = np.empty(0, dtype=np.int64)
        self._delta_live = np.empty(0, dtype=bool)
        # Owners of the layout's and the delta's rows; both None once an add came without them.
        self._owners: VectorOwners | None = VectorOwners.empty()
        self._delta_owners: VectorOwners | None = VectorOwners.empty()
        self._id_order: np.ndarray | None = None  # argsort of the layout's ids, for deletes
        self._count = 0
        self._lock = threading.RLock()

    def _keys(self, codes: np.ndarray, j: int) -> np.ndarray:
        """Substring ``j`` of each hash, as the smallest unsigned type that holds it."""
        out = np.empty(len(codes), dtype=np.uint16 if self.widths[j] <= 16 else np.uint32)
        for lo in range(0, len(codes), 1 << 20):
            out[lo:lo + (1 << 20)] = _field(_words(codes[lo:lo + (1 << 20)]), self._starts[j],
                                            self.widths[j])
        return out

    # --- what the probe radius is -------------------------------------------

    @property
    def fast_radius(self) -> int:  # type: ignore[override]
        """The largest radius answered by probing, exactly: ``m * (flips + 1) - 1`` (31 for PDQ)."""
        return self.m * (self.flips + 1) - 1

    def __len__(self) -> int:
        return self._count

    # --- writes ------------------------------------------------------------

    @property
    def keeps_owners(self) -> bool:
        """Whether every hash's owner is kept (:meth:`radius_owned` answers them)."""
        return self._owners is not None and self._delta_owners is not None

    @_locked
    def add(self, ids: np.ndarray, vectors: np.ndarray, owners: VectorOwners | None = None) -> None:
        if not len(ids):
            return
        if owners is not None and len(owners) != len(ids):
            raise ValueError(f"{len(owners)} owners for {len(ids)} hashes")
        if owners is None or not self.keeps_owners:
            self._owners = self._delta_owners = None
        else:
            self._delta_owners = VectorOwners.joined([self._delta_owners, owners])
        codes = np.ascontiguousarray(vectors, dtype=np.uint8).reshape(len(ids), self.bits // 8)
        self._delta_codes = np.concatenate([self._delta_codes, codes])
        self._delta_ids = np.concatenate([self._delta_ids, np.asarray(ids, dtype=np.int64)])
        self._delta_live = np.concatenate([self._delta_live, np.ones(len(ids), dtype=bool)])
        self._count += len(ids)
        # The delta is scanned flat; merge it once that scan costs a noticeable share of a probe.
        if len(self._delta_ids) > max(4096, len(self._ids) // 64):
            self.merge()

    @_locked
    def remove(self, ids: np.ndarray) -> int:
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if not len(ids):
            return 0
        removed = 0
        if len(self._ids):
            if self._id_order is None:
                self._id_order = np.argsort(self._ids, kind="stable")
            sorted_ids = self._ids[self._id_order]
            at = np.searchsorted(sorted_ids, ids)
            at = at[at < len(sorted_ids)]
            rows = self._id_order[at[np.isin(sorted_ids[at], ids)]]
            rows = rows[self._live[rows]]
            if len(rows):
                if not self._live.flags.writeable:  # a memory-mapped layout: copy the flags only
                    self._live = self._live.copy()
                self._live[rows] = False
                removed += len(rows)
        if len(self._delta_ids):
            hit = np.isin(self._delta_ids, ids) & self._delta_live
            self._delta_live[hit] = False
            removed += int(hit.sum())
        self._count -= removed
        return removed

    @_locked
    def merge(self) -> None:
        """Fold the delta into the sorted layout and drop deleted rows (a full re-sort)."""
        codes = np.concatenate([self._codes[self._live], self._delta_codes[self._delta_live]])
        ids = np.concatenate([self._ids[self._live], self._delta_ids[self._delta_live]])
        owners = None
        if self._owners is not None and self._delta_owners is not None:
            owners = VectorOwners.joined([self._owners.take(self._live),
                                          self._delta_owners.take(self._delta_live)])
        self._build(codes, ids, owners)

    def _build(self, codes: np.ndarray, ids: np.ndarray, owners: VectorOwners | None = None) -> None:
        n = len(ids)
        if n >= 1 << 32:
            raise ValueError("more than 2^32 hashes in one index")
        perm = np.empty((self.m, n), dtype=np.uint32)
        offsets = np.zeros(len(self._offsets), dtype=np.uint32)
        for j, w in enumerate(self.widths):
            column = self._keys(codes, j)
            perm[j] = np.argsort(column, kind="stable")  # a radix sort for 16-bit keys
            base = int(self._offset_base[j])
            np.cumsum(np.bincount(column, minlength=1 << w), out=offsets[base + 1:base + (1 << w) + 1])
            del column
        self._codes, self._ids, self._perm, self._offsets = codes, ids, perm, offsets
        self._live = np.ones(n, dtype=bool)
        width = self.bits // 8
        self._delta_codes = np.empty((0, width), dtype=np.uint8)
        self._delta_ids = np.empty(0, dtype=np.int64)
        self._delta_live = np.empty(0, dtype=bool)
        self._owners = owners
        self._delta_owners = VectorOwners.empty() if owners is not None else None
        self._id_order = None
        self._count = n

    # --- reads -------------------------------------------------------------

    @_locked
    def radius_search(self, queries: np.ndarray, radius: float) -> list[list[Hit]]:
        q = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, self.bits // 8)
        r = int(np.floor(radius))
        if r > self.fast_radius:
            return self._scan(q, r, None)
        return [_sorted_hits(ids, dist) for ids, dist in self._within(q, r)]

    @_locked
    def radius_arrays(self, queries: np.ndarray, radius: float) -> list[HitArrays]:
        """The hits of :meth:`radius_search` as arrays (no object per hit), same order."""
        q = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, self.bits // 8)
        r = int(np.floor(radius))
        if r > self.fast_radius:
            return [hits_to_arrays(hits) for hits in self._scan(q, r, None)]
        return [(ids, dist) for ids, dist, _rows in self._ordered(q, r)]

    @_locked
    def radius_owned(self, queries: np.ndarray, radius: float) -> tuple[list[HitArrays], OwnedHits | None]:
        """:meth:`radius_arrays` and its hits' owners, when the index keeps them and ``radius``
        is probed (else None: the caller reads the owners from the catalog).

        The owners are read for the hits asked, from the arrays of this search: an add or a
        merge meanwhile (another thread's write) replaces the arrays, never changes them."""
        q = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, self.bits // 8)
        r = int(np.floor(radius))
        main, delta = self._owners, self._delta_owners
        if r > self.fast_radius or main is None or delta is None:
            return self.radius_arrays(q, radius), None
        n = len(self._ids)
        hits, rows_of = [], []
        for ids, dist, rows in self._ordered(q, r):
            hits.append((ids, dist))
            rows_of.append(rows)

        def read(rows: np.ndarray) -> VectorOwners:
            return VectorOwners(_at(main.items, delta.items, rows, n),
                                _at(main.qualities, delta.qualities, rows, n),
                                _at(main.subjects, delta.subjects, rows, n))

        return hits, OwnedHits(rows_of, read)

    def _ordered(self, q: np.ndarray, r: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(ids int64, distances float64, rows) within ``r``, nearest first, ties by id."""
        out = []
        for rows, dist in self._within_rows(q, r):
            ids = _at(self._ids, self._delta_ids, rows, len(self._ids))
            order = np.lexsort((ids, dist))
            out.append((ids[order], dist[order].astype(np.float64), rows[order]))
        return out

    def _within(self, q: np.ndarray, r: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(ids, distances) within ``r`` <= the probe radius, layout and delta, unordered."""
        n = len(self._ids)
        return [(_at(self._ids, self._delta_ids, rows, n), dist) for rows, dist in self._within_rows(q, r)]

    def _within_rows(self, q: np.ndarray, r: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(rows, distances) within ``r``: layout rows as they are, the delta's after them
        (row ``len(layout) + i`` is the delta's ``i``), unordered."""
        out = self._probe(q, r)
        self._add_delta(q, r, out)
        return out

    @_locked
    def search(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """The ``k`` nearest, exactly: from the probe when it found ``k`` within the probe
        radius (then nothing outside can be nearer), else from a full scan."""
        q = np.ascontiguousarray(queries, dtype=np.uint8).reshape(-1, self.bits // 8)
        if k <= 0 or self._count == 0:
            return [[] for _ in range(len(q))]
        near = self.radius_search(q, self.fast_radius)
        short = [i for i, hits in enumerate(near) if len(hits) < min(k, self._count)]
        if short:
            for i, hits in zip(short, self._scan(q[short], self.bits, k), strict=True):
                near[i] = hits
        return [hits[:k] for hits in near]

    def _probe(self, q: np.ndarray, r: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(rows, distances) of the layout's live rows within ``r`` of each query.

        About a millisecond per query at 10M hashes, most of it random reads of the mapping
        (offsets, permutations, codes); the numpy passes around them are kept few: a probe's
        table index and permutation base are precomputed, zero-length slices need no filter
        (``np.repeat`` of a zero count adds nothing), and a hit's distance is the one its
        verification computed, not a second gather and popcount of its code.
        """
        n = len(self._ids)
        empty = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32))  # rows, distances
        if n == 0:
            return [empty for _ in range(len(q))]
        qkeys = np.unpackbits(q, axis=1).astype(np.int64) @ self._key_weights  # (B, m)
        at = self._probe_at + (qkeys[:, self._probe_sub] ^ self._probe_mask)
        starts = self._offsets[at].astype(np.int64)  # (B, P)
        lengths = self._offsets[at + 1].astype(np.int64) - starts
        base = self._perm_base(n) + starts  # into the flattened permutations
        flat_perm = self._perm.reshape(-1)
        # Each row as one opaque item: a gather copies a row at a time (one memcpy), not word by word.
        rows_as_items = self._codes.reshape(-1).view(f"V{self.bits // 8}")
        q64 = q.view(np.uint64)
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for b in range(len(q)):
            ls = lengths[b]
            ends = np.cumsum(ls)
            total = int(ends[-1])
            if total == 0:
                out.append(empty)
                continue
            # The concatenation of every probed slice of the permutations, without a Python loop.
            idx = np.repeat(base[b] - (ends - ls), ls)
            idx += np.arange(total, dtype=np.int64)
            # Sorted, the codes are read in address order (fewer cache and TLB misses) and a
            # row found through several substrings comes out adjacent to itself.
            rows = flat_perm[idx]
            rows.sort()
            if len(rows) > 1:  # each row once, before its code is read (a third are repeats)
                rows = rows[np.concatenate(([True], rows[1:] != rows[:-1]))]
            found_rows, found_dist = [], []
            for lo in range(0, len(rows), _CHUNK):
                part = rows[lo:lo + _CHUNK]
                gathered = rows_as_items[part].view(np.uint64).reshape(len(part), -1)
                d = _popcount_rows(gathered, q64[b], scratch=True)
                near = d <= r
                found_rows.append(part[near])
                found_dist.append(d[near])
            hit_rows = np.concatenate(found_rows) if len(found_rows) > 1 else found_rows[0]
            dist = np.concatenate(found_dist) if len(found_dist) > 1 else found_dist[0]
            alive = self._live[hit_rows]
            if not alive.all():
                hit_rows, dist = hit_rows[alive], dist[alive]
            out.append((hit_rows.astype(np.int64), dist))
        return out

    def _perm_base(self, n: int) -> np.ndarray:
        """Where each probe's substring starts in the flattened permutations of ``n`` rows."""
        held = self._perm_base_of
        if held is None or held[0] != n:
            held = self._perm_base_of = (n, self._probe_sub.astype(np.int64) * n)
        return held[1]

    def _add_delta(self, q: np.ndarray, r: int, out: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Add the delta's live rows within ``r`` to ``out`` (a flat scan of the small delta),
        numbered after the layout's."""
        if not self._delta_live.any():
            return
        codes64 = self._delta_codes.view(np.uint64)
        q64 = q.view(np.uint64)
        n = len(self._ids)
        for b in range(len(q)):
            d = _popcount_rows(codes64, q64[b])
            keep = (d <= r) & self._delta_live
            if keep.any():
                rows, dist = out[b]
                out[b] = (np.concatenate([rows, n + np.flatnonzero(keep)]),
                          np.concatenate([dist, d[keep]]))

    def _scan(self, q: np.ndarray, r: int, k: int | None) -> list[list[Hit]]:
        """Every live row within ``r`` (or the ``k`` nearest) by a scan of all codes."""
        q64 = q.view(np.uint64)
        out = []
        for b in range(len(q)):
            ids_parts, dist_parts = [], []
            for codes, ids, live in self._parts():
                codes64 = codes.view(np.uint64)
                for lo in range(0, len(ids), _SCAN_ROWS):
                    d = _popcount_rows(codes64[lo:lo + _SCAN_ROWS], q64[b])
                    keep = np.flatnonzero((d <= r) & live[lo:lo + _SCAN_ROWS])
                    if k is not None and len(keep) > k:  # only this chunk's k nearest can count
                        keep = keep[np.argpartition(d[keep], k - 1)[:k]]
                    ids_parts.append(ids[lo:lo + _SCAN_ROWS][keep])
                    dist_parts.append(d[keep])
            ids = np.concatenate(ids_parts) if ids_parts else np.empty(0, dtype=np.int64)
            dist = np.concatenate(dist_parts) if dist_parts else np.empty(0, dtype=np.int32)
            if k is not None and len(ids) > k:
                order = np.lexsort((ids, dist))[:k]
                ids, dist = ids[order], dist[order]
            out.append(_sorted_hits(ids, dist))
        return out

    def _parts(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        yield self._codes, self._ids, self._live
        yield self._delta_codes, self._delta_ids, self._delta_live

    # --- persistence -------------------------------------------------------

    def to_bytes(self) -> bytes:
        return b"".join(bytes(p) for p in self.to_parts())

    def to_parts(self) -> Iterator[memoryview]:
        """The saved form, piece by piece (so that saving 1 GB does not copy 1 GB first).

        Deleted rows are kept with their live flag cleared, so that saving after a
        withdrawal does not re-sort; the next merge drops them. The arrays are taken
        under the lock (a merge replaces them all), then written without it.
        """
        with self._lock:
            arrays: tuple[np.ndarray, ...] = (
                self._ids, self._live, self._codes, self._offsets, self._perm,
                self._delta_ids, self._delta_live.copy(), self._delta_codes)
            owned = self._owners is not None and self._delta_owners is not None
            for owners in (self._owners, self._delta_owners) if owned else ():
                arrays += (owners.items, owners.qualities, owners.subjects)
        n, nd = len(arrays[0]), len(arrays[5])
        yield memoryview(_BODY_HEADER.pack(MAGIC, self.bits, n, nd, self.m, self.flips, int(owned)))
        for array in arrays:
            yield memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))

    @classmethod
    def from_buffer(cls, buffer: np.ndarray | bytes) -> MultiIndexHashIndex:
        """The index saved in ``buffer`` (a mapping of the file is used in place, not copied)."""
        # A plain ndarray (of the mapped file's pages, no copy), never a np.memmap: every slice of one
        # runs its Python __getitem__ and __array_finalize__, about 70 µs of a lookup's seven gathers.
        raw = np.frombuffer(buffer, dtype=np.uint8) if isinstance(buffer, bytes) else np.asarray(buffer)
        if len(raw) < _BODY_HEADER.size:
            raise ValueError("truncated multi-index hash file")
        magic, bits, n, nd, m, flips, owned = _BODY_HEADER.unpack_from(bytes(raw[:_BODY_HEADER.size]))
        if magic != MAGIC:
            raise ValueError("not a multi-index hash file")
        index = cls(bits, m, flips)
        width = bits // 8
        at = _BODY_HEADER.size

        def take(dtype: type, shape: tuple[int, ...]) -> np.ndarray:
            nonlocal at
            size = int(np.prod(shape)) * np.dtype(dtype).itemsize
            if at + size > len(raw):
                raise ValueError("truncated multi-index hash file")
            array = raw[at:at + size].view(dtype).reshape(shape)
            at += size
            return array

        index._ids = take(np.int64, (n,))
        index._live = take(np.bool_, (n,))
        index._codes = take(np.uint8, (n, width))
        index._offsets = take(np.uint32, (len(index._offsets),))
        index._perm = take(np.uint32, (index.m, n))
        # The delta is small and written to in place: private copies.
        index._delta_ids = take(np.int64, (nd,)).copy()
        index._delta_live = take(np.bool_, (nd,)).copy()
        index._delta_codes = take(np.uint8, (nd, width)).copy()
        if owned:
            index._owners = VectorOwners(take(np.int64, (n,)), take(np.float64, (n,)), take(np.int64, (n,)))
            index._delta_owners = VectorOwners(take(np.int64, (nd,)).copy(), take(np.float64, (nd,)).copy(),
                                               take(np.int64, (nd,)).copy())
        else:
            index._owners = index._delta_owners = None
        if at != len(raw):
            raise ValueError("trailing bytes after a multi-index hash file")
        ends = index._offset_base + np.array([1 << w for w in index.widths])
        if n and not (index._offsets[ends] == n).all():
            raise ValueError("damaged multi-index hash offsets")
        index._count = int(index._live.sum()) + int(index._delta_live.sum())
        return index

    @classmethod
    def from_vectors(cls, bits: int, ids: np.ndarray, vectors: np.ndarray,
                     substrings: int | None = None, flips: int = 2,
                     owners: VectorOwners | None = None) -> MultiIndexHashIndex:
        """An index of ``vectors`` built in one sort (what a rebuild from the catalog uses);
        ``substrings`` defaults to :func:`default_substrings` for that many hashes; ``owners``:
        theirs, kept beside them (none given: none kept)."""
        if owners is not None and len(owners) != len(ids):
            raise ValueError(f"{len(owners)} owners for {len(ids)} hashes")
        index = cls(bits, substrings or default_substrings(bits, len(ids), flips), flips)
        index._build(np.ascontiguousarray(vectors, dtype=np.uint8).reshape(len(ids), bits // 8),
                     np.asarray(ids, dtype=np.int64).copy(), owners)
        return index


# Hashes from which a rebuild uses the 11-substring layout (see the module's docstring).
LARGE_LAYOUT_ROWS = 1 << 22


def default_substrings(bits: int, rows: int, flips: int = 2) -> int:
    """Substrings of a new layout for ``rows`` hashes: 11 for millions of 256-bit hashes, else 12.

    Both are exact to PDQ's radius 31 at two flips (32 and 35); the layout of an
    index is saved with it, so a change here applies from the next rebuild.
    """
    return 11 if bits == 256 and flips == 2 and rows >= LARGE_LAYOUT_ROWS else 12


def load_mapped(path: Path, offset: int) -> MultiIndexHashIndex:
    """The index saved in ``path`` after ``offset`` header bytes, memory-mapped read-only.

    The mapping's page tables are filled at once (``MAP_POPULATE``, Linux): a fresh worker
    otherwise took a page fault for most of the pages its first hundred lookups touched
    (at 10M hashes 160 faults and +0.9 ms of CPU per lookup, BENCHMARKS.md). The pages are
    the page cache's, shared with every process mapping the file, as before.
    """
    with path.open("rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                           prot=mmap.PROT_READ)
    return MultiIndexHashIndex.from_buffer(np.frombuffer(mapped, dtype=np.uint8, offset=offset))


def _at(layout: np.ndarray, delta: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    """A per-row column at ``rows`` numbered as :meth:`MultiIndexHashIndex._within_rows` numbers
    them: the ``n`` layout rows, then the delta's."""
    if not len(delta) or not len(rows) or int(rows.max()) < n:
        return layout[rows]
    in_layout = rows < n
    out = np.empty(len(rows), dtype=layout.dtype)
    out[in_layout] = layout[rows[in_layout]]
    out[~in_layout] = delta[rows[~in_layout] - n]
    return out


def _sorted_hits(ids: np.ndarray, dist: np.ndarray) -> list[Hit]:
    order = np.lexsort((ids, dist))
    return [Hit(int(i), float(d)) for i, d in zip(ids[order].tolist(), dist[order].tolist(),
                                                 strict=True)]
