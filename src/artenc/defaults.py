"""Every default that more than one place uses, defined once.

The CLI, the web page (`artenc serve`), the HTML report, the demo and the Python API
(`artenc.Collection`) import these, so the same store gives the same answers everywhere.
"""

from __future__ import annotations

# ----- images (artenc.images) ------------------------------------------------------------
MAX_PIXELS = 178_956_970  # decompression-bomb guard, width * height (Pillow's own bomb limit, ~179 MP)

# ----- near-duplicates (artenc.dedup, artenc.verify) --------------------------------------
MIN_INLIERS = 15  # RANSAC inliers that make a geometrically verified match
DEDUP_VERIFY_THRESHOLD = 0.75  # cosine similarity of candidates when verifying
DEDUP_THRESHOLD = 0.9  # cosine similarity of a duplicate without verification (the workshop's)
DEDUP_TOP_M = 5  # verified mode: each work's 5 nearest neighbours are candidates too ...
DEDUP_FLOOR = 0.55  # ... when their cosine similarity is >= 0.55 (chosen on WikiArt dev rows)

# ----- search (artenc.neighbors, artenc.predict, artenc.evaluate) ------------------------
SIMILAR_K = 9  # neighbours per query
VERIFY_TOP = 30  # candidates re-ranked by geometric verification in `similar`
PREDICT_K = 10  # neighbours that vote in kNN label prediction
EVAL_K = 10  # k of P@k, mAP@k, R@k and kNN accuracy
SPLIT_COLUMN = "split"  # the label column that holds a work's split (dev, holdout, train, test...)

# ----- clustering (artenc.cluster) --------------------------------------------------------
K_RANGE = "5:100:2"  # k swept by k="auto": START:STOP[:STEP], STOP exclusive
CLUSTER_SAMPLE = 8_000  # most works in the k-medoids distance matrix (4 * s^2 bytes)
