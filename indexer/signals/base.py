"""The shape every signal family shares, and the registry that finds them.

A signal is one way of describing an image so that similar images can be found
again: a perceptual hash, a face embedding, a room descriptor. Like the hashers
of Thorn's ``perception`` and the signal types of Meta's ThreatExchange, each
signal declares what it is (name, family, vector kind, dimension, distance,
default thresholds) so that storage, search and the conformance tests can treat
every signal the same way. Adding a signal means one module plus a call to
:func:`register`.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from indexer.images import Picture


class VectorKind(enum.StrEnum):
    """How vectors of a signal are stored and compared."""

    BINARY = "binary"  # packed bits (uint8), Hamming distance
    FLOAT = "float"  # L2-normalised float32, distance = 1 - cosine similarity


@dataclass(frozen=True)
class SignalVector:
    """One vector extracted from one picture.

    ``quality`` is in [0, 1] where the signal can judge it (PDQ quality / 100,
    face detection confidence); ``box`` is (left, top, right, bottom) in the
    picture's original pixel coordinates for signals that describe a region.
    """

    signal: str
    vector: np.ndarray
    quality: float | None = None
    box: tuple[int, int, int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def hex(self) -> str:
        return self.vector.tobytes().hex()


@dataclass(frozen=True)
class Thresholds:
    """Distances at or below which a pair is a ``match`` or worth a ``review``."""

    match: float
    review: float


class Signal(ABC):
    """A registered way of turning a picture into zero, one or many vectors."""

    name: str
    family: str
    kind: VectorKind
    dim: int  # bits for binary signals, floats for float signals
    # The smallest long side the signal needs; the pipeline decodes once at the
    # largest size any selected signal needs (JPEG draft makes that cheap).
    decode_side: int = 512
    # False for signals that only look at luma (hashes): when no chosen signal
    # needs colour, JPEGs are decoded as their Y channel alone (twice as fast).
    needs_color: bool = True
    # False for signals whose vectors are records searched by an index of their own
    # (local features: a 67 KB keypoint record per image, searched by descriptor in
    # indexer.store.features). A generic FAISS index of such records would cost
    # as much memory and disk again as the catalog (6.8 GB at 100,000 photos) and
    # answer nothing anyone asks.
    vector_index: bool = True
    default_thresholds: Thresholds

    @abstractmethod
    def extract(self, picture: Picture) -> list[SignalVector]:
        """Vectors of ``picture`` (an empty list when the signal finds nothing)."""

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Distance between two vectors of this signal, as the index computes it."""
        if self.kind is VectorKind.BINARY:
            return float(np.unpackbits(np.bitwise_xor(a, b)).sum())
        return float(1.0 - np.dot(a.astype(np.float32), b.astype(np.float32)))

    @property
    def nbytes(self) -> int:
        return self.dim // 8 if self.kind is VectorKind.BINARY else self.dim * 4

    def to_bytes(self, vector: np.ndarray) -> bytes:
        return np.ascontiguousarray(vector, dtype=self.dtype).tobytes()

    def from_bytes(self, data: bytes) -> np.ndarray:
        if len(data) != self.nbytes:
            raise ValueError(f"{self.name}: expected {self.nbytes} bytes, got {len(data)}")
        return np.frombuffer(data, dtype=self.dtype).copy()

    def to_hex(self, vector: np.ndarray) -> str:
        return self.to_bytes(vector).hex()

    def from_hex(self, text: str) -> np.ndarray:
        try:
            data = bytes.fromhex(text.strip())
        except ValueError:
            raise ValueError(f"{self.name}: not a hexadecimal string") from None
        return self.from_bytes(data)

    @property
    def dtype(self) -> type:
        return np.uint8 if self.kind is VectorKind.BINARY else np.float32

    def max_distance(self) -> float:
        return float(self.dim) if self.kind is VectorKind.BINARY else 2.0


class Annotator(ABC):
    """A registered way of reading *records* (not vectors) from a picture: text lines and their boxes.

    Why a second kind of plug-in: what OCR reads is searched by value ("which
    photos show this number"), not by distance, so it has no vector kind,
    dimension or thresholds and no FAISS index; its records live in a table of
    their own (:mod:`indexer.store.annotations`). It is chosen with the same
    ``--signals`` list and computed from the same single decode as the signals.
    """

    name: str
    family: str
    decode_side: int | None = 1280
    needs_color: bool = True

    @abstractmethod
    def annotate(self, picture: Picture) -> list[Annotation]:
        """Records of ``picture`` (an empty list when there is nothing to read)."""


@dataclass(frozen=True)
class Annotation:
    """One record read from a picture: a line of text, its box in original pixels, its confidence."""

    annotator: str
    text: str
    confidence: float
    box: tuple[int, int, int, int]  # left, top, right, bottom in the picture's original pixels
    extra: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, Signal] = {}
_ANNOTATORS: dict[str, Annotator] = {}


def register_annotator(annotator: Annotator) -> Annotator:
    """Make ``annotator`` available by name and family (``--signals``) to indexing and tests."""
    if annotator.name in _REGISTRY or (annotator.name in _ANNOTATORS
                                       and _ANNOTATORS[annotator.name] is not annotator):
        raise ValueError(f"a signal or annotator named {annotator.name!r} is already registered")
    _ANNOTATORS[annotator.name] = annotator
    return annotator


def all_annotators() -> list[Annotator]:
    _load_builtin_signals()
    return list(_ANNOTATORS.values())


def get_annotator(name: str) -> Annotator | None:
    _load_builtin_signals()
    return _ANNOTATORS.get(name)


def resolve(names_or_families: Iterable[str]) -> list[str]:
    """Names of the signals and annotators named directly or by family (``--signals``)."""
    wanted = {n.strip() for n in names_or_families if n.strip()}
    chosen_annotators = [a for a in all_annotators() if a.name in wanted or a.family in wanted]
    rest = wanted - {a.name for a in chosen_annotators} - {a.family for a in chosen_annotators}
    names = [s.name for s in select(rest)] if rest else []
    return names + [a.name for a in chosen_annotators]


def register(signal: Signal) -> Signal:
    """Make ``signal`` available by name to indexing, search and tests."""
    if signal.name in _REGISTRY and _REGISTRY[signal.name] is not signal:
        raise ValueError(f"a signal named {signal.name!r} is already registered")
    _REGISTRY[signal.name] = signal
    return signal


def unregister(name: str) -> None:
    """Remove a signal (plug-ins loaded for one bank, tests)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> Signal:
    _load_builtin_signals()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"unknown signal {name!r} (known: {known})") from None


def all_signals() -> list[Signal]:
    _load_builtin_signals()
    return list(_REGISTRY.values())


def family_of(name: str) -> str | None:
    """The family of the registered signal ``name``, None when no signal has that name.

    Asked for every key of every candidate's evidence (:func:`matcher.search.decide.evidence_score`),
    so it is a dictionary look-up, not a walk over every signal.
    """
    _load_builtin_signals()
    signal = _REGISTRY.get(name)
    return None if signal is None else signal.family


def families() -> list[str]:
    return sorted({s.family for s in all_signals()} | {a.family for a in all_annotators()})


def select(names_or_families: Iterable[str]) -> list[Signal]:
    """Signals named directly or belonging to one of the named families."""
    wanted = {n.strip() for n in names_or_families if n.strip()}
    chosen = [s for s in all_signals() if s.name in wanted or s.family in wanted]
    unknown = wanted - {s.name for s in chosen} - {s.family for s in chosen}
    if unknown:
        raise KeyError(
            f"unknown signal or family: {', '.join(sorted(unknown))} "
            f"(known families: {', '.join(families())})"
        )
    return chosen


def _load_builtin_signals() -> None:
    # Importing a signal module registers its signals. Import lazily so that
    # ``indexer.signals.base`` stays importable from inside signal modules.
    # Called on every look-up: once the import has finished, the flag skips the import machinery.
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    from indexer.signals import builtin  # noqa: F401
    _BUILTIN_LOADED = True


_BUILTIN_LOADED = False
