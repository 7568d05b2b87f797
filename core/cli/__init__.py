"""The command line (``pfnmap``): the top layer. Each command's module is imported only when
that command runs, so ``pfnmap --help`` loads argparse and little else."""

from pfnmap.cli.main import main

__all__ = ["main"]
