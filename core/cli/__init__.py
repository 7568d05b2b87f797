"""The command line (``pfnmap``): the top layer. :mod:`pfnmap.cli.main` parses and dispatches;
each command's module is imported only when that command runs, so ``pfnmap --help`` loads
argparse and little else."""
