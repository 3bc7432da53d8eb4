"""Crawl indexing on a Ray cluster (``reunite index ... --engine ray``): the pool's work, mapped by Ray Data.

Only the mapping changes. The driver (the ``reunite index`` process) still
walks the crawl, skips what the bank already holds by sha256, and writes every
result into the catalog and the vector indexes in batches
(:func:`indexer.ingest.index_records`); the cluster runs the same per-image
function as the worker pool (:func:`indexer.ingest.work_on`, which calls the
pure :func:`indexer.pipeline.extract`). So a re-run skips what is indexed and a
killed run resumes exactly as with ``--workers``, and the catalog stays the one
writer's.

Why the bytes travel, not the paths: a crawl folder or a WARC spool lives on the
driver's disk, which the other machines of a cluster do not see. The driver
reads each image (it reads it anyway to hash it) and ships it through Ray's
object store; no shared file system is needed.

Why in windows: Ray Data builds a dataset from items held by the driver
(``from_items``), so a crawl of millions is cut into windows of at most
:data:`WINDOW_IMAGES` images or :data:`WINDOW_BYTES` bytes, one dataset each,
and at most two windows are in the object store at a time (a thread reads and
puts the next one while the cluster works on the current one). ``REUNITE_RAY_WINDOW`` changes the image count.

Ray is imported here only, and this module only when ``--engine ray`` is used:
the default install has no Ray and the light verbs never load it.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from indexer import ingest, pipeline

WINDOW_IMAGES = 512
WINDOW_BYTES = 256 << 20
# Images per Ray task: small enough to spread a window over every CPU of the cluster.
TASK_IMAGES = 4
WINDOW_ENV = "REUNITE_RAY_WINDOW"
# Set in every Ray worker of the run, as the CLI does for itself (api.cli.main.single_threaded_libraries).
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class RayUnavailable(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached: said in one line."""


def connect(address: str | None) -> str:
    """Join the Ray cluster at ``address`` (None: ``$RAY_ADDRESS``, else a Ray started for this run).

    Returns a one-line description of the cluster (nodes and CPUs). Ray's own
    log lines and progress bars are silenced: the CLI prints one progress form
    (api/progress.py) and errors in one line.
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUnavailable("--engine ray needs Ray: pip install 'reunite[ray]'") from None
    if not ray.is_initialized():
        options: dict[str, Any] = {"address": address or os.environ.get("RAY_ADDRESS") or None,
                                   "log_to_driver": False, "logging_level": logging.WARNING,
                                   "runtime_env": {"env_vars": WORKER_ENV}}
        if options["address"] is None:
            options["include_dashboard"] = False
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = options["address"] or "a local Ray"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise RayUnavailable(f"cannot reach the Ray cluster at {where}: {first}") from None
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    alive = [n for n in ray.nodes() if n.get("Alive")]
    cpus = sum(int(n.get("Resources", {}).get("CPU", 0)) for n in alive)
    return f"ray: {len(alive)} node(s), {cpus} CPU(s)"


def window_images() -> int:
    """Images per window: ``$REUNITE_RAY_WINDOW`` when it is a positive integer, else the default."""
    try:
        value = int(os.environ.get(WINDOW_ENV, ""))
    except ValueError:
        return WINDOW_IMAGES
    return value if value > 0 else WINDOW_IMAGES


class RayEngine:
    """Maps :func:`indexer.ingest.work_on` over the images to index with Ray Data.

    Call :func:`connect` first. ``nodes`` counts the images each node extracted
    (by Ray node id), for the run's report.
    """

    name = "ray"

    def __init__(self, window: int | None = None) -> None:
        self.window = window or window_images()
        self.nodes: dict[str, int] = {}

    def run(self, todo: list[tuple[int, str]], signal_names: list[str],
            extras: dict[str, pipeline.PictureExtra] | None) -> Iterator[ingest.Outcome]:
        if not todo:
            return
        windows = self._windows(todo)
        # The next window is read and put by a thread while the cluster works on this one.
        with ThreadPoolExecutor(1, thread_name_prefix="reunite-ray-window") as reader:
            upcoming = reader.submit(_put_next, windows)
            while (current := upcoming.result()) is not None:
                upcoming = reader.submit(_put_next, windows)
                dataset, failed = current
                yield from failed  # unreadable on the driver: the same outcome a pool worker gives
                if dataset is not None:
                    yield from self._drain(dataset, signal_names, extras)

    def _windows(self, todo: list[tuple[int, str]]
                 ) -> Iterator[tuple[list[dict[str, Any]], list[ingest.Outcome]]]:
        window: list[dict[str, Any]] = []
        failed: list[ingest.Outcome] = []
        size = 0
        for position, path in todo:
            try:
                data = ingest.read_image_file(path)
            except Exception as exc:  # mapped to its error code exactly as in a pool worker
                failed.append(ingest.work_on(position, _raiser(exc)))
                continue
            window.append({"position": position, "data": data})
            size += len(data)
            if len(window) >= self.window or size >= WINDOW_BYTES:
                yield window, failed
                window, failed, size = [], [], 0
        if window or failed:
            yield window, failed

    def _drain(self, ds: Any, signal_names: list[str],
               extras: dict[str, pipeline.PictureExtra] | None) -> Iterator[ingest.Outcome]:
        mapped = ds.map_batches(_extract_batch, batch_size=TASK_IMAGES, batch_format="numpy",
                                fn_kwargs={"signal_names": signal_names, "extras": extras or {}})
        for row in mapped.iter_rows():
            node = str(row["node"])
            self.nodes[node] = self.nodes.get(node, 0) + 1
            yield pickle.loads(row["outcome"])


def _put_next(windows: Iterator[tuple[list[dict[str, Any]], list[ingest.Outcome]]]
              ) -> tuple[Any, list[ingest.Outcome]] | None:
    """The next window as a Ray dataset in the object store (None after the last)."""
    import ray.data

    item = next(windows, None)
    if item is None:
        return None
    window, failed = item
    if not window:
        return None, failed
    return ray.data.from_items(window, override_num_blocks=-(-len(window) // TASK_IMAGES)), failed


def _raiser(exc: BaseException):  # noqa: ANN202 - a read() for work_on that fails as the read did
    def read() -> bytes:
        raise exc
    return read


def _extract_batch(batch: dict[str, Any], signal_names: list[str],
                   extras: dict[str, pipeline.PictureExtra]) -> dict[str, list[Any]]:
    """One Ray task: :func:`indexer.ingest.work_on` on each image of the batch, and the node that did it."""
    import ray

    ingest._init_worker(signal_names, extras)
    node = ray.get_runtime_context().get_node_id()
    outcomes = [pickle.dumps(ingest.work_on(int(position), lambda data=data: bytes(data)))
                for position, data in zip(batch["position"], batch["data"], strict=True)]
    return {"outcome": outcomes, "node": [node] * len(outcomes)}
