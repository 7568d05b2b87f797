"""The scenario file format, version 1, as data: which keys each table and each step kind takes.

:mod:`pfnmap.scenarios.files` validates a file against these tables and the docs page
(docs/scenario-files.rst) describes the same keys. A new step kind (madvise, mremap, exec when the
process API has them) is one entry in :data:`STEPS` plus its player in
:mod:`pfnmap.scenarios.play`.

Value kinds: ``str``, ``int``, ``bool``, ``size`` (an int, ``"16K"``, ``"4 pages"``, or a sum of
those), ``vaddr`` (a mapping's name, an int, pages and sizes, joined with ``+``: ``"cow + 1 page
+ 0x100"``), ``paddr`` (the same with I/O region names and ``ram`` instead of mapping names),
``prot`` (``"r"``, ``"rw"``, ``"rwx"``, ``"none"``), ``mapflags`` (``"shared"``, ``"private"``),
``strlist`` (a list of strings), ``fields`` (a table of entry field names to ints or booleans),
``pieces`` (a list of ``[vma page, pages, window page]``: remap ``pages`` pages of the
vma from ``vma page`` on to the window from ``window page`` on), ``layout`` (a list of
``["ram"|"io", index]``).
"""

from __future__ import annotations

#: the version this pfnmap reads and writes (``format = 1`` at the top of a file)
FORMAT_VERSION = 1

#: top-level keys
TOP: dict[str, str] = {
    "format": "int",
    "name": "str",
    "title": "str",
    "description": "str",
    "machine": "table",
    "step": "array",
    "end": "table",
}

MACHINE: dict[str, str] = {"arch": "str", "ram": "size", "era": "str", "device": "array"}

#: device kinds and their keys (``path`` and ``kind`` are common to all)
DEVICES: dict[str, dict[str, str]] = {
    # Machine.add_iomem_device: io_remap_pfn_range of an I/O region at mmap
    "iomem": {"region": "str"},
    # Machine.add_device_buffer: a driver's own RAM pages, faulted in through ->nopage
    "buffer": {"pages": "int"},
    # Machine.create_file: a regular file in the page cache
    "file": {"data": "str"},
    # scenarios.drivers.RemapDriver: remap_pfn_range of pieces of a window at mmap
    "remap": {
        "window": "str",
        "pieces": "pieces",
        "io": "bool",
        "prot": "str",
        "clear_vm_io": "bool",
        "window_pages": "int",
    },
    # scenarios.drivers.PageDriver: vm_insert_page (or, before it, remap_pfn_range per page)
    "pages": {"pages": "int"},
    # scenarios.drivers.MixedDriver: 2.6.26's vm_insert_mixed of RAM pages and device pfns
    "mixed": {"layout": "layout"},
}

#: keys every step may have
STEP_COMMON: dict[str, str] = {
    "do": "str",
    "task": "str",
    "title": "str",
    "why": "str",
    "kernel": "strlist",
    "expect": "array",
}

#: step kind -> its own keys; a key in REQUIRED must be given
STEPS: dict[str, dict[str, str]] = {
    "spawn": {},
    "open": {"path": "str", "fd": "str"},
    "close": {"fd": "str"},
    "mmap": {
        "name": "str",
        "length": "size",
        "prot": "prot",
        "flags": "mapflags",
        "file": "str",
        "offset": "paddr",
    },
    "munmap": {"at": "vaddr", "length": "size"},
    "mprotect": {"at": "vaddr", "length": "size", "prot": "prot"},
    "read": {"at": "vaddr", "length": "size"},
    "write": {"at": "vaddr", "data": "str"},
    "fork": {"child": "str"},
    "exit": {},
    "gup": {"at": "vaddr", "pages": "int", "write": "bool", "release": "bool"},
    "poke": {"at": "vaddr", "value": "int", "fields": "fields"},
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "open": ("path",),
    "close": ("fd",),
    "mmap": ("name", "length"),
    "munmap": ("at", "length"),
    "mprotect": ("at", "length", "prot"),
    "read": ("at",),
    "write": ("at", "data"),
    "fork": ("child",),
    "gup": ("at",),
    "poke": ("at",),
}

#: what a step's (or the end's) ``[[...expect]]`` entries may check
EXPECT: dict[str, str] = {
    # where: the pte at `at` in `task` (default: the step's task)
    "at": "vaddr",
    "task": "str",
    # checks
    "outcome": "str",
    "verdict": "str",
    "pfn": "int",
    "present": "bool",
    "writable": "bool",
    "dirty": "bool",
    "young": "bool",
    "fields": "fields",
    "count": "int",
    "mapcount": "int",
    "file_rss": "int",
    "anon_rss": "int",
    "bad_ptes": "int",
    "log": "str",
    "invariants": "bool",
    # when: only under these eras / on these arches
    "eras": "strlist",
    "arches": "strlist",
}
#: the EXPECT keys that check something (an expectation needs at least one)
CHECKS = (
    "outcome",
    "verdict",
    "pfn",
    "present",
    "writable",
    "dirty",
    "young",
    "fields",
    "count",
    "mapcount",
    "file_rss",
    "anon_rss",
    "bad_ptes",
    "log",
    "invariants",
)
#: checks that read the pte at ``at``
PTE_CHECKS = (
    "verdict", "pfn", "present", "writable", "dirty", "young", "fields", "count", "mapcount"
)  # fmt: skip

#: verdict names a file may use, as vm_normal_page's decisions (pfnmap.kernel.memory.Verdict)
#: plus "none" for an address whose walk finds no pte
VERDICTS = ("NORMAL", "RAW_PFN", "COWED", "BAD", "NOT_PRESENT", "none")

END: dict[str, str] = {"expect": "array"}
