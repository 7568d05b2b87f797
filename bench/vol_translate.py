"""volatility3 as a whole process, the way a user script would use it: a context, a FileLayer
over a raw image, a LinuxIntel32e layer at ROOT, then the translation of every leaf VA listed
in VAS (one per line, as QEMU's ``info tlb`` starts its lines) with ``_translate`` (the PA and
the page size), one line each; ``-`` where volatility3 refuses the walk (it treats some
entries the hardware follows, such as the ESPFIX area's, as faults).

    python bench/vol_translate.py RAW ROOT VAS > out.txt
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from volatility3.framework import contexts
    from volatility3.framework.layers import intel, physical

    path, root = Path(argv[0]), int(argv[1], 0)
    ctx = contexts.Context()
    ctx.config["pfnmap.base.location"] = path.resolve().as_uri()
    ctx.add_layer(physical.FileLayer(ctx, "pfnmap.base", "base"))
    ctx.config["pfnmap.intel.memory_layer"] = "base"
    ctx.config["pfnmap.intel.page_map_offset"] = root
    layer_class = getattr(intel, "LinuxIntel32e", intel.Intel32e)
    layer = layer_class(ctx, "pfnmap.intel", "intel")
    ctx.add_layer(layer)
    lines = []
    with open(argv[2]) as f:  # the leaf VAs, one hex number per line
        vas = [int(line.split(":")[0], 16) for line in f]
    from volatility3.framework.exceptions import InvalidAddressException

    for va in vas:
        try:
            pa, page_size, _ = layer._translate(va)  # the page's PA and size
        except InvalidAddressException:  # an entry volatility3 will not follow (see below)
            lines.append(f"{va:016x}: -\n")
            continue
        lines.append(f"{va:016x}: {pa:016x} {page_size:x}\n")
    sys.stdout.write("".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
