"""Hash lookups through the FastAPI app over ASGI, without uvicorn or sockets: CPU per request.

    python bench/hash_asgi.py --data /tmp/refs10m [--requests 300] [--route v1|hma] \
        [--profile cumulative|tottime]

``--route v1`` (default) sends ``POST /v1/match/hashes``, ``--route hma`` HMA's ``GET /m/lookup``.

The app of ``reunite serve`` (``api.http.app.create_app``, middleware, guard, route,
application layer) is called directly with the lookups of ``bench/hash_http.py`` (half
near a fixture photo, half unrelated) and a partner key, one after the other; the
process's CPU (every thread: a route's worker thread too) over the requests is what the
app costs without the server and the kernel's sockets. Compare it with
``bench/hash_lookup_inproc.py`` (the application layer alone) and ``bench/hash_http.py
run`` (the real server). ``--profile``: cProfile of the event loop's thread.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _scope(route: str, key: str, h: str, top: int) -> tuple[dict, bytes]:
    """The ASGI scope and body of one lookup of ``h`` through ``route``."""
    from bench.hash_http import BANK

    headers = [(b"host", b"bench"), (b"x-api-key", key.encode())]
    if route == "hma":
        raw, method, path = b"", "GET", "/m/lookup"
        query = f"signal_type=pdq&signal={h}&banks={BANK}".encode()
    else:
        method, path = "POST", "/v1/match/hashes"
        raw = json.dumps({"hashes": {"pdq": h}, "banks": [BANK], "top": top}).encode()
        query = b""
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
            "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80), "state": {},
            "headers": headers}, raw


async def _lookups(app, key: str, hashes: list[str], route: str = "v1",  # noqa: ANN001 - the app
                   top: int = 10) -> None:
    for h in hashes:
        scope, raw = _scope(route, key, h, top)
        sent = False

        async def receive(raw: bytes = raw) -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        status: list[int] = []

        async def send(message: dict, status: list[int] = status) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status != [200]:
            raise SystemExit(f"lookup answered {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--route", choices=["v1", "hma"], default="v1")
    parser.add_argument("--top", type=int, default=10, help="v1's top (HMA's route asks for 100)")
    parser.add_argument("--profile", choices=["cumulative", "tottime"])
    args = parser.parse_args()
    os.environ.update({"REUNITE_BUDGET_ADDRESS": "off", "REUNITE_BUDGET_PARTNER": "off",
                       "REUNITE_BUDGET_PARTNER_QUEUE": "off"})
    from api.http.app import create_app
    from bench.hash_http import lookups, partner_key

    key = partner_key(args.data)
    app = create_app(args.data)
    bodies = lookups(args.requests + 30)

    async def run() -> float:
        async with app.router.lifespan_context(app):
            await _lookups(app, key, bodies[:30], args.route, args.top)
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            if profiler:
                profiler.enable()
            start = time.process_time()
            await _lookups(app, key, bodies[30:], args.route, args.top)
            spent = time.process_time() - start
            if profiler:
                profiler.disable()
                pstats.Stats(profiler).sort_stats(args.profile).print_stats(50)
            return spent

    spent = asyncio.run(run())
    print(json.dumps({"requests": args.requests, "route": args.route, "top": args.top,
                      "asgi_cpu_ms_per_request": round(spent / args.requests * 1000, 2)}))


if __name__ == "__main__":
    main()
