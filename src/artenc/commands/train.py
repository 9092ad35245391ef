"""`artenc train [HYDRA OVERRIDES]`: contrastive training (Lightning + Hydra).

Examples:
  artenc train experiment=wikiart_supcon hydra.run.dir=runs/supcon
  artenc train -m experiment=wikiart_supcon loss.temperature=0.05,0.1,0.2
  artenc train experiment=wikiart_supcon ckpt_path=runs/supcon/checkpoints/last.ckpt
  artenc train --cfg job            # print the composed config
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a contrastive head on a frozen backbone (Hydra overrides)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=wikiart_supcon")
    p.set_defaults(func=lambda args: run_hydra(args.overrides))


def run_hydra(argv: list[str]) -> int:
    """Run the Hydra app with `argv` as its command line; returns the exit code.

    sys.argv[0] becomes artenc/train.py so that Lightning's DDP launcher, which re-runs
    the script for each extra process, starts `python .../artenc/train.py OVERRIDES`.
    """
    from artenc import train

    saved = sys.argv
    sys.argv = [train.__file__, *argv]
    try:
        train.main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0
