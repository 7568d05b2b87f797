"""What every output format shares."""

from __future__ import annotations

from pfnmap.errors import PfnmapError


class FormatError(PfnmapError):
    """An output format that does not apply (QEMU's x86 text for a non-x86 arch)."""
