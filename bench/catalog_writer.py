"""Another process committing to a catalog every few milliseconds, as a second API worker does.

    python bench/catalog_writer.py --data /tmp/refs10m --seconds 25 [--every-ms 4]

Appends one audit event (``bench.write``) per period through the service's own
:class:`api.audit.AuditLog`. Run it beside ``bench/hash_lookup_inproc.py`` to see
what a lookup costs when its connection's SQLite page cache is dropped by other
connections' commits (WAL), as it is with several workers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--every-ms", type=float, default=4.0)
    args = parser.parse_args()
    from api.audit import AuditLog
    from indexer.store.catalog import Catalog

    log = AuditLog(Catalog.open(args.data), args.data)
    end, appended = time.monotonic() + args.seconds, 0
    while time.monotonic() < end:
        log.append("bench-writer", "admin", "bench.write", "bench", "ok", {})
        appended += 1
        time.sleep(args.every_ms / 1000)
    print(json.dumps({"appended": appended}))


if __name__ == "__main__":
    main()
