"""Default values shared by the library, the CLI, the web page and the report: each defined once.

Library functions use these as their keyword defaults; the CLI's flags, `artenc serve`'s
`ServeSettings` and the report's `ReportOptions` import them rather than repeating the
numbers, so the same store gives the same answers from every face (in particular, the web
page and `artenc dedup` give the same near-duplicate groups). Plain constants (and the one
rule that picks the duplicate threshold), no imports: every layer may import this module.
"""

from __future__ import annotations

# ----- images ---------------------------------------------------------------------------
MAX_PIXELS = 178_956_970  # largest image decoded (width * height, pixels): 2 * PIL.Image.MAX_IMAGE_PIXELS
MAX_ASPECT_RATIO = 100  # longest side / shortest side of an image decoded (ratio); a 1 x 10,000 strip
# has no meaningful centre crop (the crop would show 1% of it), so it is refused from its header size
# before any pixel is decoded: a skip with its reason in `embed`, a 422 from the web page.

# ----- encoder runtimes (artenc.runtime; `--runtime` of embed and predict) ---------------
RUNTIMES = ("auto", "torch", "onnx", "onnx-int8")  # auto: torch on GPU, ONNX Runtime (float32) on CPU

# ----- near-duplicates (artenc.dedup; `artenc dedup`, the web page, the report, the demo) --
VERIFY_DUPLICATES = True  # confirm candidate pairs by geometric verification (SIFT + RANSAC)
DUPLICATE_THRESHOLD = 0.75  # verified mode: cosine similarity of candidate pairs
DUPLICATE_THRESHOLD_UNVERIFIED = 0.9  # embedding-only mode: cosine similarity of duplicates
DUPLICATE_TOP_M = 5  # verified mode: each work's M nearest neighbours are candidates too (count)
DUPLICATE_FLOOR = 0.55  # ... when their cosine similarity is at least this (cosine; WikiArt dev rows)
MIN_INLIERS = 15  # RANSAC inliers (distinct keypoint positions) that make two images one work (count)


def duplicate_threshold(verify: bool) -> float:
    """The default cosine threshold of near-duplicates: DUPLICATE_THRESHOLD when candidates are
    verified geometrically, DUPLICATE_THRESHOLD_UNVERIFIED when the embedding alone decides."""
    return DUPLICATE_THRESHOLD if verify else DUPLICATE_THRESHOLD_UNVERIFIED


# ----- nearest neighbours (artenc.neighbors; `artenc similar`) ---------------------------
SIMILAR_K = 9  # neighbours returned per query (count)
SIMILAR_LIMIT = 1_000  # works listed at most by a radius query (`similar(radius=...)`), most similar first (count)
VERIFY_TOP = 30  # candidates re-ranked by geometric verification when asked (count)
EVALUATION_K = 10  # neighbours behind P@k, mAP@k, R@k and the kNN vote of evaluate / predict (count)

# ----- search indexes (artenc.index; `artenc index`, similar, the web page) --------------
INDEX_KINDS = ("auto", "flat", "hnsw", "ivfpq", "lsh")  # `artenc.index` says what each is
AUTO_EXACT_MAX = 50_000  # kind auto: exact (flat) search up to this many vectors (count)
AUTO_HNSW_MAX = 200_000  # kind auto: HNSW up to this many, IVF-PQ above (HNSW holds a float32 copy of every vector)

# ----- clusters (artenc.cluster; `artenc cluster`, the report, the web page) -------------
CLUSTER_K_RANGE = "5:100:2"  # k swept when k is "auto": START:STOP[:STEP], STOP excluded
CLUSTER_SAMPLE = 8_000  # works clustered at most; the others join their nearest medoid (count)
SERVE_CLUSTER_SAMPLE = 2_000  # the same, on the web page, smaller so the page answers in seconds (count)
CLUSTER_METHOD = "kmedoids"  # kmedoids | kmeans | hdbscan | dbscan (artenc.cluster.METHODS)
CLUSTER_MIN_SAMPLES = 5  # DBSCAN/HDBSCAN: works within reach (itself included) that make a core work (count)
CLUSTER_MIN_CLUSTER_SIZE = 5  # HDBSCAN: the smallest group that counts as a cluster (count)

# ----- audit (artenc.audit; `artenc audit`, the report, the web page) --------------------
AUDIT_K = 10  # neighbours of the kNN label vote and of the outlier score (count)
AUDIT_FOLDS = 5  # stratified folds of the cross-validated linear probe (count)
AUDIT_TOP = 50  # works listed worst-first per list (label issues of a field, outliers) (count)

# ----- maps (artenc.viz.umap_map; `artenc umap`, the report) ------------------------------
UMAP_NEIGHBORS = 15  # UMAP n_neighbors: size of the neighbourhood each point keeps (count)
UMAP_MIN_DIST = 0.1  # UMAP min_dist: how tightly points may pack in the map (map units)

# ----- report (artenc.report; `artenc report`) -------------------------------------------
REPORT_SAMPLES = 6  # sample works shown with their neighbours (count)
REPORT_K = 8  # neighbours shown per sample work (count)

# ----- web page (artenc.serve; `artenc serve`) -------------------------------------------
MAX_UPLOAD_BYTES = 20 * 2**20  # largest upload body accepted, answered 413 above (bytes); not MAX_PIXELS
MAX_K = 100  # most neighbours one query may ask for (count)

# ----- image quality (artenc.quality; `Collection.quality`, the audit) ----------------------
# Scores are measured while embedding (artenc.quality: definitions and units); a work is flagged
# when its score passes the threshold. README "Image quality" says what each flag means.
# The pixel scores stored with the items, in this order (float item columns of every store, read by
# the store without the quality module; definitions and units in artenc.quality's docstring).
SCORE_COLUMNS = ("brightness", "darkness", "overexposure", "sharpness", "entropy", "colourfulness", "hue",
                 "hue_spread", "tone_residual", "border_share")
QUALITY_DARK_SHARE = 0.9  # dark: share of near-black pixels (luma < 0.1) at least this (0..1)
QUALITY_OVEREXPOSED_SHARE = 0.25  # overexposed: share of near-white pixels (luma > 0.95) at least this (0..1)
QUALITY_OVEREXPOSED_BRIGHTNESS = 0.8  # ... and mean luma at least this (0..1; ink on white paper stays below)
QUALITY_BLURRY_SHARPNESS = 8.0  # blurry: variance of the Laplacian of the 256-px grey thumbnail below this
QUALITY_LOW_INFORMATION_ENTROPY = 3.0  # low_information: grey-histogram entropy below this (bits, 0..8)
QUALITY_ODD_ASPECT_RATIO = 3.0  # odd_aspect_ratio: long side / short side above this (ratio)
QUALITY_MIN_SIDE = 128  # odd_size: short side below this (px) ...
QUALITY_MAX_MEGAPIXELS = 60.0  # ... or more megapixels than this (width * height / 1e6)
QUALITY_GRAYSCALE_COLOURFULNESS = 4.0  # grayscale: Hasler-Süsstrunk colourfulness below this (0..255 scale)
QUALITY_SEPIA_TONE_RESIDUAL = 0.012  # sepia: not grayscale, chroma share unexplained by luminance below this ...
QUALITY_SEPIA_HUE_SPREAD = 20.0  # ... hue spread (circular std, degrees) below this ...
QUALITY_SEPIA_HUE_RANGE = (10.0, 65.0)  # ... and mean hue in this range (degrees: orange-brown to yellow)
QUALITY_UNIFORM_BORDER_SHARE = 0.3  # uniform_borders: share of the area in uniform edge bars at least this (0..1)
