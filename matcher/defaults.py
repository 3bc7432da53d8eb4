"""Decision thresholds: versioned defaults, calibrated by bench/, overridable per bank.

``defaults.json`` beside this module is written by ``bench/calibrate_hashes.py``
(and the other calibration scripts) and records what it was calibrated on, so
that every decision reunite makes can be traced to a versioned file. A bank's
policy may override any signal's thresholds: ``{"thresholds": {"pdq":
{"match": 20, "review": 60}}}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from indexer.signals import base as signals
from indexer.signals.base import Thresholds

DEFAULTS_PATH = Path(__file__).with_name("defaults.json")


@dataclass(frozen=True)
class Defaults:
    version: str
    signals: dict[str, Thresholds]
    raw: dict[str, Any]

    def thresholds(self, signal: str, policy: dict[str, Any] | None = None) -> Thresholds:
        """Thresholds of ``signal``: bank policy, else this file, else the signal's own."""
        override = ((policy or {}).get("thresholds") or {}).get(signal)
        if override:
            return Thresholds(float(override["match"]), float(override["review"]))
        if signal in self.signals:
            return self.signals[signal]
        return signals.get(signal).default_thresholds

    def policy_for(self, kind: str, policy: dict[str, Any] | None = None) -> dict[str, Any]:
        """A bank's policy with its kind's calibrated hash thresholds beneath its own overrides.

        Why per kind: hash thresholds are calibrated against the impostors a bank
        meets. Copy detection's (``signals``) were fitted on varied ad photos;
        portraits of different people, framed alike, sit much closer (PDQ 58 at
        the nearest on the faces suite, under copy detection's match threshold
        of 70), so a missing-person bank asks its hashes for reposts of the
        reference photo only (``kind_thresholds`` in defaults.json).
        """
        by_kind = (self.raw.get("kind_thresholds") or {}).get(kind) or {}
        if not by_kind:
            return dict(policy or {})
        merged = dict(policy or {})
        merged["thresholds"] = {**by_kind, **((policy or {}).get("thresholds") or {})}
        return merged

    def section(self, name: str) -> dict[str, Any]:
        """A free-form section (for example a stage's own calibrated parameters)."""
        return dict(self.raw.get(name) or {})


@lru_cache(maxsize=4)
def load(path: Path = DEFAULTS_PATH) -> Defaults:
    raw = json.loads(Path(path).read_text(encoding="utf-8")) if Path(path).exists() else {}
    table = {name: Thresholds(float(t["match"]), float(t["review"]))
             for name, t in (raw.get("signals") or {}).items()}
    return Defaults(version=str(raw.get("version", "builtin")), signals=table, raw=raw)
