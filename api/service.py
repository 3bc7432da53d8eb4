"""Everything one running service holds: the application layer plus what only HTTP needs.

:class:`Service` is an :class:`api.application.Application` (store, cipher,
audit log, review queue, photos, matcher: the rules the CLI obeys too) with the
service's configuration, its index checkpoints and its partner-id secret.
Built once by :func:`api.http.app.create_app` and reached by routes through
``request.app.state.service``; nothing here is global, so tests can run
several services over different data folders in one process.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from api.application import Application
from api.budgets import BudgetConfig, Budgets
from indexer.store.catalog import Bank

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Index files are saved at most this often after HTTP writes; a crash in
# between loses nothing (the catalog is ahead and the index is rebuilt).
CHECKPOINT_SECONDS = 10.0
SECRET_FILE = "service-secret"


@dataclass
class ServiceConfig:
    """Settings of one service; each can also come from the environment."""

    data_dir: Path
    catalog_url: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    second_review_missing_person: bool = True
    max_batch_files: int = 100
    budgets: BudgetConfig = field(default_factory=BudgetConfig)  # api.budgets: REUNITE_BUDGET_*
    metrics_token: str | None = None  # REUNITE_METRICS_TOKEN: a Bearer token for Prometheus scrapers
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def from_env(cls, data_dir: Path, **overrides: object) -> ServiceConfig:
        env = dict(os.environ)
        config = cls(data_dir=Path(data_dir), environ=env)
        if env.get("REUNITE_MAX_UPLOAD_BYTES"):
            config.max_upload_bytes = int(env["REUNITE_MAX_UPLOAD_BYTES"])
        if env.get("REUNITE_SECOND_REVIEW"):
            config.second_review_missing_person = env["REUNITE_SECOND_REVIEW"] not in ("0", "false", "no")
        config.budgets = BudgetConfig.from_env(env)
        config.metrics_token = env.get("REUNITE_METRICS_TOKEN") or None
        config.catalog_url = env.get("REUNITE_CATALOG_URL") or None  # default: catalog.sqlite in the folder
        for name, value in overrides.items():
            if value is not None:
                setattr(config, name, value)
        return config


class Service(Application):
    """The objects every route shares; refuses to start on a bank that needs a missing key."""

    def __init__(self, config: ServiceConfig) -> None:
        super().__init__(config.data_dir, config.catalog_url, config.environ,
                         second_review_missing_person=config.second_review_missing_person)
        self.config = config
        self.refuse_without_key()
        _ = self.matcher  # built at start, not raced for by the first concurrent requests
        self.budgets = Budgets(config.budgets)
        self._secret = _service_secret(Path(config.data_dir))
        # The keyed HMAC state, copied for each reference: a crowded partner lookup makes 100 of them.
        self._ref_mac = hmac.new(self._secret, digestmod="sha256")
        self._checkpoint_lock = threading.Lock()
        self._last_checkpoint = time.monotonic()

    def maybe_checkpoint(self) -> None:
        """Save changed indexes when the last save is older than CHECKPOINT_SECONDS."""
        if time.monotonic() - self._last_checkpoint < CHECKPOINT_SECONDS:
            return
        if self._checkpoint_lock.acquire(blocking=False):
            try:
                self.store.checkpoint()
                self._last_checkpoint = time.monotonic()
            finally:
                self._checkpoint_lock.release()

    def warm(self) -> None:
        """Load (or rebuild) every vector index before the first request needs it."""
        for bank in self.store.catalog.banks():
            for name in self.store.index_signals(bank):
                self.store.indexes.get(bank.id, name)

    def opaque_ref(self, bank: Bank, subject_id: int | None, item_id: int) -> str:
        """A stable id for partners that reveals nothing about the catalog."""
        key = f"{bank.id}:{subject_id if subject_id is not None else 'item-' + str(item_id)}"
        mac = self._ref_mac.copy()
        mac.update(key.encode())
        return "R-" + mac.hexdigest()[:24]


def _service_secret(data_dir: Path) -> bytes:
    """A random secret kept in the data folder (0600) for opaque partner ids."""
    path = data_dir / SECRET_FILE
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    secret = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process was first
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret.hex())
    return secret
