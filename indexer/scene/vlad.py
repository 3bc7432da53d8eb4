"""VLAD: many local descriptors of a room -> one vector that FAISS can search.

Jegou et al. 2010, with the later fixes that matter for retrieval: residuals
summed per visual word, signed square root (burstiness: a tiled floor or a
patterned bedspread would otherwise dominate), per-word L2 normalisation
(Arandjelovic & Zisserman 2013, "All about VLAD") and a final L2 norm, so that
the inner product of two VLADs is a cosine similarity.

The vocabulary is trained with FAISS k-means on the bank's own descriptors:
a vocabulary fitted to hotel rooms splits "bedspread" space more finely than
a generic one. It is small (64 words) on purpose: small vocabularies are
nearly data-independent, so a vocabulary trained on the first few hundred
references keeps working as the bank grows, and retraining is only a
refinement.

It has 64 words in a bank of three photos too (trained on all their
descriptors, at least :data:`POINTS_PER_WORD` per word), because the number
of words sets the scale of the similarities the venue decision is calibrated
on: with fewer words the residuals of unrelated photos average towards the
same direction. Measured on the venues suite (banks of 3 venues drawn from it):
at 40 descriptors per word (about 30 words) unrelated rooms scored a VLAD
cosine of 0.16 on average instead of 0.03 in the full bank, and 14% of photos
of rooms the bank did not hold were matched; with 64 words, 0.005 and none.
"""

from __future__ import annotations

import numpy as np

from indexer.store.faiss_tuned import faiss

DEFAULT_WORDS = 64
# Fewer descriptors than this per word -> fewer words (a bank of one or two photos).
POINTS_PER_WORD = 8
# Enough to fit 64 centroids well; more only slows training down.
MAX_TRAINING_POINTS = 64 * 256
KMEANS_ITERATIONS = 20


def words_for(n_descriptors: int, wanted: int = DEFAULT_WORDS) -> int:
    """How many visual words ``n_descriptors`` training descriptors support (at least 1)."""
    return int(max(1, min(wanted, n_descriptors // POINTS_PER_WORD)))


def train_vocabulary(descriptors: np.ndarray, words: int = DEFAULT_WORDS, seed: int = 1234) -> np.ndarray:
    """Centroids (words, dim) of FAISS k-means on a deterministic sample of ``descriptors``."""
    x = np.ascontiguousarray(descriptors, dtype=np.float32)
    if len(x) == 0:
        raise ValueError("cannot train a vocabulary without descriptors")
    k = min(words_for(len(x), words), len(x))
    rng = np.random.default_rng(seed)
    if len(x) > MAX_TRAINING_POINTS:
        x = x[np.sort(rng.choice(len(x), MAX_TRAINING_POINTS, replace=False))]
    kmeans = faiss.Kmeans(x.shape[1], k, niter=KMEANS_ITERATIONS, seed=seed,
                          max_points_per_centroid=MAX_TRAINING_POINTS,
                          min_points_per_centroid=POINTS_PER_WORD, verbose=False)
    kmeans.train(x)
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def encode(descriptors: np.ndarray, vocabulary: np.ndarray) -> np.ndarray:
    """The VLAD vector (words * dim, float32, unit norm; zeros without descriptors)."""
    k, dim = vocabulary.shape
    out = np.zeros((k, dim), np.float32)
    x = np.ascontiguousarray(descriptors, dtype=np.float32)
    if len(x):
        index = faiss.IndexFlatL2(dim)
        index.add(vocabulary)
        _dist, assign = index.search(x, 1)
        assign = assign[:, 0]
        np.add.at(out, assign, x - vocabulary[assign])
        out = np.sign(out) * np.sqrt(np.abs(out))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.maximum(norms, 1e-12)
    flat = out.ravel()
    norm = float(np.linalg.norm(flat))
    return flat / norm if norm > 0 else flat
