"""The per-image work as one pure function: bytes in, signals out.

Pure so that it runs unchanged in a worker process, a Ray task or a request
handler: no catalog, no index, no global state beyond the signal registry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from indexer import images
from indexer.signals import base as signals
from indexer.signals.base import Annotation, Annotator, Signal, SignalVector


@dataclass
class Extraction:
    """Everything reunite keeps about one image's content."""

    sha256: str
    width: int
    height: int
    format: str
    frames: int
    vectors: list[SignalVector] = field(default_factory=list)
    # Records of annotators (text lines read by OCR), stored in their own table.
    annotations: list[Annotation] = field(default_factory=list)
    # Query-side extras (dihedral hash variants) that are never stored.
    variants: dict[str, list[tuple[str, SignalVector]]] = field(default_factory=dict)
    # What callers asked to derive from the same decode (``extras``), never stored by the store.
    extras: dict[str, Any] = field(default_factory=dict)


# A computation over the decoded picture that a caller wants done in the worker that decoded it.
PictureExtra = Callable[[images.Picture], Any]


def _split(names: list[str]) -> tuple[list[Signal], list[Annotator]]:
    """The named signals and annotators, in order; KeyError for a name that is neither."""
    chosen: list[Signal] = []
    annotators: list[Annotator] = []
    for name in names:
        annotator = signals.get_annotator(name)
        if annotator is not None:
            annotators.append(annotator)
        else:
            chosen.append(signals.get(name))
    return chosen, annotators


def decode_side_for(chosen: list[Signal] | list[Signal | Annotator]) -> int | None:
    """The smallest decode that serves every chosen signal (None: full size)."""
    sides = [getattr(s, "decode_side", None) for s in chosen]
    if not sides or any(side is None for side in sides):
        return None
    return max(sides)


def extract(data: bytes, signal_names: list[str], *, with_variants: bool = False,
            max_pixels: int = images.DEFAULT_MAX_PIXELS,
            extras: Mapping[str, PictureExtra] | None = None) -> Extraction:
    """Decode ``data`` once and compute every named signal from that one picture.

    ``extras`` (name -> function of the picture) run on the same decode after
    the signals, so they share its cached shrinks and PDQ buffer: the ad
    linker's print costs a fraction of a millisecond here and a second decode
    anywhere else. Raises :class:`indexer.images.ImageError` for input that is
    not a usable image.
    """
    vector_signals, annotators = _split(signal_names)
    chosen = [*vector_signals, *annotators]
    grey = bool(chosen) and not any(getattr(s, "needs_color", True) for s in chosen)
    picture = images.load(data, max_side=decode_side_for(chosen), max_pixels=max_pixels, grey=grey)
    out = extract_picture(data, picture, signal_names, with_variants=with_variants)
    for name, extra in (extras or {}).items():
        out.extras[name] = extra(picture)
    return out


def extract_picture(data: bytes, picture: images.Picture, signal_names: list[str], *,
                    with_variants: bool = False) -> Extraction:
    """Signals of an already decoded ``picture`` of ``data``."""
    chosen, annotators = _split(signal_names)
    out = Extraction(
        sha256=hashlib.sha256(data).hexdigest(),
        width=picture.original_size[0], height=picture.original_size[1],
        format=picture.format, frames=picture.frames,
    )
    for signal in chosen:
        out.vectors.extend(signal.extract(picture))
        if with_variants and hasattr(signal, "variants"):
            out.variants[signal.name] = signal.variants(picture)
    for annotator in annotators:
        out.annotations.extend(annotator.annotate(picture))
    return out
