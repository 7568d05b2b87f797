"""Output formats of ``pfnmap decode``: the human table, JSON lines, CSV, and QEMU's monitor text.

JSON lines and CSV carry the same columns (:data:`COLUMNS`) in every record, with the schema
version in the ``schema`` column (``pfnmap.decode.walker/2``; /2 added ``kind`` and the
verdicts ``zero page`` and ``devmap page``). Record types:

``leaf``
    one leaf entry: ``va`` (canonical), ``va_end``, ``pa``, ``size`` (bytes), ``pages`` (1),
    ``level`` (the leaf's layout name: ``pte``, ``pmd-2M``...), ``raw`` (the entry),
    ``entry_addr`` (its physical address), ``flags`` (set flag bits and non-zero fields,
    space-separated), ``present`` (the arch's pte_present), ``verdict`` and ``reason``
    (vm_normal_page()'s, with hints; else null: ``normal page``, ``raw pfn``, ``COWed page in
    a PFN vma``, ``bad pte``, ``zero page``, ``devmap page``, ``unknown``), ``kind``
    (``protnone`` for a pte present to the kernel but not to the MMU, x86's PROT_NONE: its
    ``pa`` is the frame the kernel reads, un-inverted in eras with the L1TF inversion, while
    ``raw`` is the entry as stored; else null);
``range``
    consecutive leaves merged (``--ranges``): the same columns, ``pages`` leaves of
    ``size / pages`` bytes, ``raw`` and ``entry_addr`` of the first;
``problem``
    a bad entry: ``problem`` (its kind), ``level`` (the table level), ``entry_addr``, ``raw``,
    ``va`` (the first address it maps) and ``detail`` (why);
``summary``
    the last record: ``detail`` holds a JSON object (arch, root, image, tables read, leaves,
    problems, whether the walk completed).

Addresses and raw entries are hexadecimal strings (``"0x2aaaaaaab000"``: 64-bit values do not
survive JSON numbers everywhere); ``size`` and ``pages`` are integers; empty CSV cells are null.

``qemu-tlb`` and ``qemu-mem`` print the lines of QEMU's x86 monitor commands ``info tlb`` and
``info mem`` (target/i386/monitor.c) for each x86 paging mode, so the output diffs cleanly
against QEMU's for the same guest. Their quirks are kept on purpose: ``info tlb`` prints the
physical address with the mode's own mask (the PAE modes leave NX and bits 62..52 in it, the
2-level 4 MiB mask is ``~((1 << 21) - 1)``, the 64-bit masks keep 50 bits), clears bit 7 of a
4 KiB pte before printing its flags, and shows only entries with the hardware present bit;
``info mem`` merges by the effective user/write/present bits of the whole walk, physically
contiguous or not. pfnmap's ``info mem`` for LA57 is what the function means to print: QEMU's
own mem_info_la57 had its pdpe/pde present tests inverted (a fix was posted to qemu-devel).
Problems go to ``on_problem`` (the CLI prints them on stderr), never into QEMU's text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap._lazy import lazy_exports
from pfnmap.decode.catalog import OUTPUT_FORMATS

if TYPE_CHECKING:
    from pfnmap.decode.formats.base import FormatError
    from pfnmap.decode.formats.qemu import (
        QEMU_FLAGS,
        QEMU_MODES,
        QemuBits,
        QemuMode,
        qemu_mode,
        write_qemu_mem,
        write_qemu_tlb,
    )
    from pfnmap.decode.formats.rows import (
        COLUMNS,
        ROW_FORMATS,
        SCHEMA,
        record_of,
        records,
        summary_record,
        write_csv,
        write_jsonl,
        write_rows,
    )
    from pfnmap.decode.formats.table import FLAGS_WIDTH, TABLE_CHUNK, VERDICT_WIDTH, write_table

FORMATS = OUTPUT_FORMATS
#: each name's module, imported on first use (QEMU's text needs neither json nor rich)
_LAZY = {
    "FormatError": "pfnmap.decode.formats.base",
    "QEMU_FLAGS": "pfnmap.decode.formats.qemu",
    "QEMU_MODES": "pfnmap.decode.formats.qemu",
    "QemuBits": "pfnmap.decode.formats.qemu",
    "QemuMode": "pfnmap.decode.formats.qemu",
    "qemu_mode": "pfnmap.decode.formats.qemu",
    "write_qemu_mem": "pfnmap.decode.formats.qemu",
    "write_qemu_tlb": "pfnmap.decode.formats.qemu",
    "COLUMNS": "pfnmap.decode.formats.rows",
    "ROW_FORMATS": "pfnmap.decode.formats.rows",
    "SCHEMA": "pfnmap.decode.formats.rows",
    "record_of": "pfnmap.decode.formats.rows",
    "records": "pfnmap.decode.formats.rows",
    "summary_record": "pfnmap.decode.formats.rows",
    "write_csv": "pfnmap.decode.formats.rows",
    "write_jsonl": "pfnmap.decode.formats.rows",
    "write_rows": "pfnmap.decode.formats.rows",
    "FLAGS_WIDTH": "pfnmap.decode.formats.table",
    "TABLE_CHUNK": "pfnmap.decode.formats.table",
    "VERDICT_WIDTH": "pfnmap.decode.formats.table",
    "write_table": "pfnmap.decode.formats.table",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "COLUMNS",
    "FLAGS_WIDTH",
    "FORMATS",
    "QEMU_FLAGS",
    "QEMU_MODES",
    "ROW_FORMATS",
    "SCHEMA",
    "TABLE_CHUNK",
    "VERDICT_WIDTH",
    "FormatError",
    "QemuBits",
    "QemuMode",
    "qemu_mode",
    "record_of",
    "records",
    "summary_record",
    "write_csv",
    "write_jsonl",
    "write_qemu_mem",
    "write_qemu_tlb",
    "write_rows",
    "write_table",
]
