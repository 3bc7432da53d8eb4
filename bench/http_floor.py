"""The fixed CPU of one HTTP request on `reunite serve`: a public route and a keyed one.

    python bench/http_floor.py --data /tmp/refs6 [--requests 300]

``GET /healthz`` (no key, no audit) and ``GET /v1/whoami`` (the key guard, no
audit) against one server on loopback, one request after the other: the
server's CPU per request (from /proc) is what uvicorn, FastAPI, the middleware
and the guard cost before any route does work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import httpx

    from bench.hash_http import partner_key, start_server, tree_cpu_seconds

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    key = partner_key(args.data)
    server, url = start_server(args.data, 1)
    out = {}
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": key}) as c:
            for path in ("/healthz", "/v1/whoami"):
                for _ in range(30):
                    c.get(path)
                start = tree_cpu_seconds(server.pid)
                for _ in range(args.requests):
                    if c.get(path).status_code != 200:
                        raise SystemExit(f"{path} did not answer 200")
                out[f"{path}_server_cpu_ms"] = round(
                    (tree_cpu_seconds(server.pid) - start) / args.requests * 1000, 2)
    finally:
        server.terminate()
        server.wait(timeout=60)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
