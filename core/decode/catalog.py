"""What the decoder offers, by name, importable without numpy: the command line builds its
choices from here and the modules that implement each name take their lists from here too."""

from __future__ import annotations

#: ``pfnmap decode --format``: written by :mod:`pfnmap.decode.formats`
OUTPUT_FORMATS = ("table", "jsonl", "csv", "qemu-tlb", "qemu-mem", "summary")
#: ``pfnmap decode --image-format``: read by :mod:`pfnmap.decode.image`
IMAGE_FORMATS = ("auto", "raw", "elf")
#: ``pfnmap dump --format``: written by :mod:`pfnmap.decode.dump`
DUMP_FORMATS = ("raw", "elf")
