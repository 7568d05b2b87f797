"""``python -m pfnmap``: the same as the ``pfnmap`` command."""

import sys

from pfnmap.cli.main import main

sys.exit(main())
