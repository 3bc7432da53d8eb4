"""FAISS as reunite runs it: one OpenMP thread per process, so many-query float searches go to BLAS.

Why: FAISS 1.15 moved the switch from its own distance loops to BLAS from "20 queries or
more" to "queries x dimension >= 128,000", tuned for many OpenMP threads. reunite runs FAISS
on one thread per process (its workers are processes; ``reunite index`` sets
``OMP_NUM_THREADS=1``), where BLAS wins from about four queries of any dimension. Measured on
the 2-core machine (BENCHMARKS.md, ingest): 512 RootSIFT query descriptors against the
51,200 of a 100-photo bank took 1.6 s on the loops and 0.22 s on BLAS, exact either way;
that search is what linking and copy search spend their time in. One query stays on the
loops (BLAS took 2x as long for it), so single face and room lookups are as before.

Import FAISS from here (``from indexer.store.faiss_tuned import faiss``) wherever float
indexes are built or searched, so that the setting is made before the first search.
"""

from __future__ import annotations

import faiss

# BLAS from queries x dimension >= this (FAISS >= 1.15 reads the product): 40 RootSIFT
# descriptors (128-d), 10 PDQ-float or 4 room descriptors (1280-d) and up; one query of up to
# 5,120 dimensions stays on FAISS's own loops.
BLAS_FROM_QUERY_VALUES = 4 * 1280
faiss.cvar.distance_compute_blas_threshold = BLAS_FROM_QUERY_VALUES

__all__ = ["BLAS_FROM_QUERY_VALUES", "faiss"]
