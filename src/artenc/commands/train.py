"""`artenc train [HYDRA ARGS]`: contrastive training (Lightning + Hydra).

Everything after `train` goes to Hydra untouched: overrides, `-m` (multirun), `--cfg job`
(print the composed config), `--help` (Hydra's help), `--config-dir DIR`,
`hydra/launcher=slurm`. Examples:
  artenc train experiment=wikiart_supcon hydra.run.dir=runs/supcon
  artenc train -m experiment=wikiart_supcon loss.temperature=0.05,0.1,0.2
  artenc train experiment=wikiart_supcon ckpt_path=runs/supcon/checkpoints/last.ckpt
  artenc train --cfg job            # print the composed config
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    # no argparse options at all (not even -h): every argument after `train` is passed on to
    # Hydra in order (`cli.main` gives undeclared arguments to `pass_through` commands)
    p = sub.add_parser("train", help="train a contrastive head on a frozen backbone (Hydra overrides)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                       add_help=False)
    p.set_defaults(func=lambda args: run_hydra(args.passed_on), pass_through=True)


def run_hydra(argv: list[str]) -> int:
    """Run the Hydra app (`artenc.training.main`) with `argv` as its command line; returns
    the exit code.

    sys.argv[0] becomes artenc/training.py so that Lightning's DDP launcher, which re-runs
    the script for each extra process, starts `python .../artenc/training.py ARGS`.
    """
    from artenc import training

    saved = sys.argv
    sys.argv = [training.__file__, *argv]
    try:
        training.main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return 0
