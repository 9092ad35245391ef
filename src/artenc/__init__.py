"""artenc: fine-art images to vectors, and what to do with them.

The public API, one import away::

    import artenc

    report = artenc.embed(["paintings/"], "paintings.store", labels="paintings/labels.csv")
    c = artenc.Collection.open("paintings.store")
    c.similar(c.paths[0], k=5)       # SimilarResult: rows, paths, cosine similarities
    c.duplicates()                   # DuplicateReport: groups with keepers
    c.leaks("split")                 # duplicates across a label column
    c.clusters()                     # ClusterReport: k-medoids, k chosen automatically
    c.evaluate(["style"])            # EvaluationReport: P@k, mAP@k, R@k, kNN, linear probe
    c.predict(["new.jpg"])           # PredictionReport: kNN label votes
    c.audit()                        # AuditReport: label issues, outliers, duplicate links
    artenc.train(["experiment=wikiart_supcon"])   # needs artenc[train]
    artenc.create_backbone("tf_efficientnet_lite0"), artenc.list_models()

Every result has `.to_dict()`, the JSON document the matching command prints. Names are
imported on first use (PEP 562), so `import artenc` stays light; so is `__version__` read
(from the installed package's metadata: importlib.metadata costs ~40 ms of CPU per process).
"""

from importlib import import_module

_EXPORTS = {
    "embed": ("artenc.embedding", "embed_folders"),
    "EmbedReport": ("artenc.embedding", "EmbedReport"),
    "embed_array": ("artenc.launch", "embed_array"),
    "Collection": ("artenc.collection", "Collection"),
    "Store": ("artenc.store", "Store"),
    "create_backbone": ("artenc.backbones", "create_backbone"),
    "list_models": ("artenc.backbones", "list_backbones"),
    "Backbone": ("artenc.backbones", "Backbone"),
    "PreprocessConfig": ("artenc.preprocess", "PreprocessConfig"),
    "create_encoder": ("artenc.runtime", "create_encoder"),
    "train": ("artenc.training", "train"),
    "TrainResult": ("artenc.training", "TrainResult"),
    "SimilarResult": ("artenc.neighbors", "SimilarResult"),
    "PairResult": ("artenc.neighbors", "PairResult"),
    "DuplicateReport": ("artenc.dedup", "DuplicateReport"),
    "ClusterReport": ("artenc.cluster", "ClusterReport"),
    "EvaluationReport": ("artenc.evaluate", "EvaluationReport"),
    "PredictionReport": ("artenc.predict", "PredictionReport"),
    "AuditReport": ("artenc.audit", "AuditReport"),
    "ArtencError": ("artenc.errors", "ArtencError"),
    "UsageError": ("artenc.errors", "UsageError"),
    "ParameterError": ("artenc.errors", "ParameterError"),
    "StoreError": ("artenc.errors", "StoreError"),
}

__all__ = ["__version__", *_EXPORTS]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("artenc")
    except PackageNotFoundError:  # running from a source tree without install
        return "0.0.0+local"


def __getattr__(name: str):
    if name == "__version__":
        value = _version()
        globals()[name] = value
        return value
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'artenc' has no attribute {name!r}") from None
    value = getattr(import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | {"__version__"})
