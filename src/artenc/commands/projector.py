"""`artenc projector STORE --out DIR`: TensorBoard projector files (then `tensorboard --logdir DIR`).

Writes tensors.tsv, metadata.tsv (relative path and every label column), sprite.png
(thumbnails) and projector_config.pbtxt; open the "Projector" tab for a 3-D PCA/UMAP/t-SNE view.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("projector", help="TensorBoard projector files for a store", description=__doc__)
    p.add_argument("store", metavar="STORE")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (created)")
    p.add_argument("--no-sprite", dest="sprite", action="store_false", help="skip the thumbnail sprite")
    p.add_argument("--thumb", type=int, default=64, help="sprite cell size in px (less for large stores)")
    p.add_argument("--json", action="store_true", help="print what was written as JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from artenc.commands._output import emit_json
    from artenc.errors import UsageError
    from artenc.store import Store
    from artenc.viz.projector import write_projector

    if args.thumb < 8:
        raise UsageError(f"--thumb must be >= 8 px, got {args.thumb}")
    doc = write_projector(Store.open(args.store), args.out, sprite=args.sprite, thumb=args.thumb)
    if args.json:
        emit_json(doc)
    else:
        logging.getLogger("artenc").info("wrote %d vectors to %s; view with: tensorboard --logdir %s",
                                         doc["count"], args.out, args.out)
    return 0
