"""What the decoder offers, by name, importable without numpy: the command line builds its
choices from here and the modules that implement each name take their lists from here too."""

from __future__ import annotations

#: ``pfnmap decode --format``: written by :mod:`pfnmap.decode.formats`
OUTPUT_FORMATS = ("table", "jsonl", "csv", "qemu-tlb", "qemu-mem", "summary")
#: ``pfnmap decode --image-format``: the built-in formats of :mod:`pfnmap.decode.images`
#: (plugins may add more through the ``pfnmap_image_formats`` hook)
IMAGE_FORMATS = ("auto", "raw", "elf", "kdump", "lime")
#: ``pfnmap dump --format``: written by :mod:`pfnmap.decode.dump` (kdump-flat: makedumpfile's
#: flattened format, as QEMU's dump-guest-memory -z writes it)
DUMP_FORMATS = ("raw", "elf", "kdump", "kdump-flat", "lime")
#: ``pfnmap dump --compression``: how kdump formats compress each page
KDUMP_COMPRESSIONS = ("zlib", "lzo", "snappy", "zstd", "none")
