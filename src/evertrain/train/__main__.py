"""`python -m evertrain.train CONFIG [--resume] [--set k=v]`: the entry point for torchrun.

torchrun --nproc_per_node 2 -m evertrain.train config.yaml
"""

from __future__ import annotations

import sys

from evertrain.train.cli import app


def main() -> None:
    # `python -m evertrain.train CONFIG ...` means `evertrain train run CONFIG ...`.
    args = sys.argv[1:]
    if not args or args[0] not in ("run", "fork", "checkpoints", "--help"):
        args = ["run", *args]
    app(args=args, prog_name="python -m evertrain.train")


if __name__ == "__main__":
    main()
