"""Hash lists shared with partners and with the field's own tools.

Organisations that may not pass victims' photos to each other pass their
perceptual hashes, as StopNCII and Meta's ThreatExchange do. This package
reads and writes the lists those tools use, so a list made by the PDQ
reference hashers, ``threatexchange dataset`` or StopNCII loads here, and a
list written here loads there:

- ``signing``: Ed25519 keys, the detached ``FILE.sig`` (and the legacy inline
  trailer that older reunite exports carry), opaque ids;
- ``formats``: one parser per peer format, with the peers' own rules, and the
  writers of the formats we export;
- ``importer``: a list (signed and verified, or explicitly unsigned) into a
  ``hashes`` bank, all or nothing;
- ``exporter``: a bank's hashes under opaque ids, list plus detached signature.
"""

from indexer.exchange.exporter import ExportResult, bank_rows, export_bank
from indexer.exchange.formats import EXPORT_FORMATS, FORMATS, IMPORT_FORMATS, MAX_LINE_BYTES, MAX_ROWS, Row
from indexer.exchange.importer import ImportResult, import_list
from indexer.exchange.signing import (
    ID_SECRET,
    KEYS_DIR,
    PUBLIC_KEY,
    SIGNING_KEY,
    ExchangeError,
    _id_secret,
    fingerprint,
    load_public_key,
    opaque_id,
    signing_key,
)

__all__ = [
    "EXPORT_FORMATS", "FORMATS", "ID_SECRET", "IMPORT_FORMATS", "KEYS_DIR", "MAX_LINE_BYTES", "MAX_ROWS",
    "PUBLIC_KEY", "SIGNING_KEY", "ExchangeError", "ExportResult", "ImportResult", "Row", "_id_secret",
    "bank_rows", "export_bank", "fingerprint", "import_list", "load_public_key", "opaque_id", "signing_key",
]
