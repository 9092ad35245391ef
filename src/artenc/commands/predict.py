"""`artenc predict STORE IMAGE... --field style`: kNN label votes with a confidence, and the
nearest stored works (embedded with the store's own model)."""

from __future__ import annotations

import argparse

from artenc.defaults import EVALUATION_K, RUNTIMES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict labels (style, school, period...) of images by kNN votes",
                       description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--field", nargs="+", metavar="FIELD", help="label fields (default: all but 'split')")
    p.add_argument("-k", "--k", type=int, default=EVALUATION_K, help="neighbours that vote (default: %(default)s)")
    p.add_argument("--show", type=int, default=5, help="nearest works printed per image (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--runtime", default="auto", choices=list(RUNTIMES))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def describe_field(p: dict) -> str:
    """One field's prediction in words: "Cubism (80% of votes)" for a kNN vote, and for the
    store encoder's classifier (`predict.classifier_vote`, method "classifier") its probability
    beside the neighbours' vote: "Expressionism (classifier p=0.28; kNN vote: Art Nouveau 4/5)"."""
    if p.get("method") != "classifier":
        return f"{p['label']} ({p['confidence']:.0%} of votes)"
    votes = p.get("votes") or {}
    if votes:
        top = max(votes, key=votes.get)  # the first of the most voted (votes come most first)
        knn = f"{top} {votes[top]}/{sum(votes.values())}"
    else:
        knn = "no labelled neighbours"
    return f"{p['label']} (classifier p={p['confidence']:.2f}; kNN vote: {knn})"


def run(args: argparse.Namespace) -> int:
    from artenc.collection import Collection
    from artenc.commands._output import emit_json

    collection = Collection.open(args.store, device=args.device, runtime=args.runtime)
    report = collection.predict(args.images, args.field, args.k)
    results = report.to_dict()["predictions"]
    if args.json:
        emit_json({"store": args.store, "k": args.k, "predictions": results})
    else:
        for r in results:
            print(r["image"])
            if r["error"]:
                print(f"  error: {r['error']}")
                continue
            for field, p in r["fields"].items():
                print(f"  {field}: {describe_field(p)}")
            for n in r["neighbors"][: args.show]:
                print(f"    {n['similarity']:.3f}  {n['relpath']}")
    return 0 if any(r["error"] is None for r in results) else 2
