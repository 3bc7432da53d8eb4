"""The candidate page's reading of evidence (api/web/evidence.py), without a browser.

tests/test_web_candidate.py checks the drawings on real matches in Chromium; this
checks the rules on small hand-made evidence: only the signals that spoke are
named, the silent hashes share one line, outlines win over boxes, and the
side-by-side drawing puts each pair where its pictures are.
"""

from __future__ import annotations

from api.web import evidence


def test_only_the_signals_that_spoke_are_named() -> None:
    ex = evidence.explain({"scene_inliers": 40, "scene_matches": 90, "scene_similarity": 0.3,
                           "scene_colour": 0.8, "scene_evidence": 55.5, "scene_margin": 25.5,
                           "pdq": 120, "phash": 30, "venue": {"name": "Cafe", "address": "1 Road"}},
                          0.9, "match")
    assert ex.families == ["Room: room descriptor (VLAD), geometric inliers, background colour"]
    assert not any("hash" in s.lower() for s in ex.sentences)
    assert ex.quiet.startswith("Not similar by the perceptual hashes") and "PDQ 120 of 256" in ex.quiet
    assert any("one 3-D scene" in s for s in ex.sentences)
    assert ex.other == []  # the venue is shown in words elsewhere, not as a raw dict


def test_a_mapped_outline_replaces_the_axis_aligned_box() -> None:
    ev = {"local_inliers": 60, "local_matches": 70, "local_region": [0, 0, 100, 80],
          "local_query_region": [10, 10, 120, 100],
          "local_quad": [[0, 0], [100, 0], [100, 80], [0, 80]],
          "local_query_quad": [[30, 5], [125, 40], [95, 120], [0, 85]],
          "local_pairs": [[40, 40, 20, 30], [90, 60, 70, 50]]}
    ex = evidence.explain(ev, 1.0, "match")
    assert ex.query_shapes == [] and ex.reference_shapes == []
    assert [o.points for o in ex.query_outlines] == [((30, 5), (125, 40), (95, 120), (0, 85))]
    assert ex.query_points == [(40, 40), (90, 60)] and ex.reference_points == [(20, 30), (70, 50)]
    assert ex.pairs_label == "2 of the 60 inlier correspondences (the most similar keypoints)"
    drawing = ex.correspondences((200, 100), (100, 50))
    assert drawing is not None
    # Both pictures scaled to one height: the query by 6, the reference by 12, set side by side.
    assert (drawing.query_width, drawing.reference_x, drawing.reference_width) == (1200, 1224, 1200)
    assert drawing.lines[0] == (240.0, 240.0, 1224 + 240.0, 360.0)
    assert ex.correspondences(None, (100, 50)) is None


def test_malformed_drawings_are_dropped_not_drawn() -> None:
    ex = evidence.explain({"local_inliers": 9, "local_quad": [[0, 0], [1]], "local_pairs": "x",
                           "local_region": [0, 0, 10, 10]}, 0.6, "review")
    assert ex.reference_outlines == [] and ex.pairs == []
    assert [s.kind for s in ex.reference_shapes] == ["region"]  # the box is the fallback
