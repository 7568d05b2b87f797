"""Sphinx extension: one page per registered arch, generated from its construct layouts.

On ``builder-inited`` it asks :func:`pfnmap.plugins.manager.default_registry` for every arch and
writes ``arches/generated/<name>.rst`` (plus ``summary.inc``, a table of all of them, included by
``arches.rst``). Nothing on those pages is typed by hand: the geometry comes from ``arch.levels``,
the bit diagrams from ``EntryFormat.fields`` (which :func:`pfnmap.arch.contract.derive_fields`
derived from the construct ``BitStruct``), the protection map from ``arch.protection_map``. An arch
that a plugin adds later gets its page with no change under docs/.

Files are rewritten only when their text changes, and pages of arches that are gone are removed,
so incremental builds stay incremental. The example plugins under ``examples/`` are imported and
validated at the same moment; a problem is a Sphinx warning (an error under ``-W``).

It also provides the ``pfnmap-constants`` directive, a table of the int constants of a module
whose names start with the given prefixes::

    .. pfnmap-constants:: pfnmap.kernel.constants
       :prefixes: VM_
       :exclude: VM_FAULT_
       :hex:
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

GENERATED = Path("arches") / "generated"
BITS_PER_ROW = 16
#: the x86 names of the 16 protection_map slots: P = private, S = shared, digits = x w r
PROT_SLOT_NAMES = [f"__{'S' if i & 8 else 'P'}{i & 7:03b}" for i in range(16)]


# small text helpers ----------------------------------------------------------------------------
def human_size(n: int) -> str:
    for unit, shift in (("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n} B"


def bit_range(hi: int, lo: int) -> str:
    return str(hi) if hi == lo else f"{hi}..{lo}"


def literal(text: object) -> str:
    return f"``{text}``"


def heading(text: str, char: str, over: bool = False) -> list[str]:
    line = char * len(text)
    return ([line] if over else []) + [text, line, ""]


def list_table(header: list[str], rows: list[list[str]], widths: str | None = None) -> list[str]:
    out = [".. list-table::", "   :header-rows: 1"]
    if widths:
        out.append(f"   :widths: {widths}")
    out.append("")
    for row in [header, *rows]:
        first, *rest = row
        out.append(f"   * - {first}")
        out.extend(f"     - {cell}" for cell in rest)
    return [*out, ""]


def safe_name(arch_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", arch_name)


# the bit diagram -------------------------------------------------------------------------------
def bit_diagram(fmt) -> list[str]:
    """An ASCII register picture of one entry format, top bit first, 16 bits per row.

    Above each box is the bit range the box covers (a field split across two rows shows the
    part in each row), inside it the field name.
    """
    fields = sorted(fmt.fields.values(), key=lambda f: f.shift, reverse=True)
    lines: list[str] = []
    for row_hi in range(fmt.width_bits - 1, -1, -BITS_PER_ROW):
        row_lo = max(row_hi - BITS_PER_ROW + 1, 0)
        header, border, body = [" "], ["+"], ["|"]
        for field in fields:
            hi = min(field.shift + field.width - 1, row_hi)
            lo = max(field.shift, row_lo)
            if hi < lo:
                continue
            span = bit_range(hi, lo)
            width = max(len(field.name), len(span)) + 2
            if hi == lo:
                top = str(hi).center(width)
            else:
                top = str(hi).ljust(width - len(str(lo))) + str(lo)
            header.append(top + " ")
            border.append("-" * width + "+")
            body.append(field.name.center(width) + "|")
        rule = "".join(border)
        lines += ["".join(header).rstrip(), rule, "".join(body), rule, ""]
    return lines[:-1]


def describe_formats(arch) -> dict[str, str]:
    """What each format in ``arch.formats`` is: which level, table pointer or leaf."""
    roles: dict[str, str] = {}
    last = len(arch.levels) - 1
    for i, level in enumerate(arch.levels):
        table = arch.table_formats[i]
        leaf = arch.leaf_formats[i]
        if table is not None:
            below = arch.levels[i + 1].name if i < last else "?"
            roles[table.name] = (
                f"a {literal(level.name)} entry that points to a {literal(below)} table"
            )
        if leaf is not None:
            size = human_size(level.span)
            if i == last:
                roles[leaf.name] = f"a {literal(level.name)}: the last level, maps one {size} page"
            else:
                roles[leaf.name] = f"a {literal(level.name)} entry that maps a {size} page itself"
    return roles


def prot_names(arch, value: int) -> str:
    names = sorted(
        name
        for name in dir(arch)
        if name.startswith("PAGE_")
        and isinstance(getattr(arch, name, None), int)
        and getattr(arch, name) == value
    )
    return " = ".join(literal(n) for n in names) if names else ""


# one arch page ---------------------------------------------------------------------------------
def arch_page(arch, owner: str) -> list[str]:
    levels = arch.levels
    top = levels[0].shift + levels[0].bits
    out: list[str] = []
    out += [
        f".. This page is generated by docs/_ext/pfnmap_layouts.py from the {arch.name} arch;",
        "   edit the arch (or the generator), not this file.",
        "",
        f".. _arch-{safe_name(arch.name)}:",
        "",
    ]
    out += heading(arch.name, "=", over=True)
    if arch.description:
        out += [arch.description, ""]
    out += list_table(
        ["Property", "Value"],
        [
            ["provided by", f"plugin {literal(owner)}, class {literal(type(arch).__qualname__)}"],
            ["levels", f"{len(levels)} ({', '.join(literal(lv.name) for lv in levels)})"],
            [
                "base page",
                f"{human_size(arch.page_size)} ({literal('page_shift')} = {arch.page_shift})",
            ],
            ["large pages", ", ".join(human_size(s) for s in arch.large_page_sizes()) or "none"],
            ["VA bits translated", f"{arch.va_bits} (the tables index bits {top - 1}..0)"],
            ["user address space", f"[0, {arch.task_size:#x}) (up to {literal('TASK_SIZE')})"],
            ["PA width", f"{arch.phys_bits} bits (highest pfn {arch.max_pfn:#x})"],
            ["byte order", f"{arch.byteorder}-endian entries"],
            ["I/O spaces in pfns", "yes" if arch.has_io_spaces else "no"],
        ],
        widths="30 70",
    )

    out += heading("Geometry", "-")
    out += [
        "One row per hardware level, top first. *Span* is how much virtual memory one entry",
        "of the level covers.",
        "",
    ]
    rows = []
    for i, lv in enumerate(levels):
        table = arch.table_formats[i]
        leaf = arch.leaf_formats[i]
        rows.append(
            [
                literal(lv.name),
                bit_range(lv.shift + lv.bits - 1, lv.shift),
                str(lv.entries),
                f"{lv.entry_bytes} B",
                human_size(lv.entries * lv.entry_bytes),
                human_size(lv.span),
                ", ".join(literal(f.name) for f in (table, leaf) if f is not None),
            ]
        )
    out += list_table(
        ["Level", "VA bits", "Entries", "Entry size", "Table size", "Span", "Entry formats"], rows
    )

    out += heading("Virtual address split", "-")
    rows = []
    if arch.canonical and top < 64:
        rows.append(
            [bit_range(63, top), str(64 - top), f"copies of bit {top - 1} (canonical address)"]
        )
    for lv in levels:
        rows.append(
            [
                bit_range(lv.shift + lv.bits - 1, lv.shift),
                str(lv.bits),
                f"index into the {literal(lv.name)} table ({lv.entries} entries)",
            ]
        )
    rows.append(
        [bit_range(arch.page_shift - 1, 0), str(arch.page_shift), "offset in the base page"]
    )
    out += list_table(["Bits", "Width", "Meaning"], rows, widths="20 10 70")
    large = [
        (lv, arch.leaf_formats[i])
        for i, lv in enumerate(levels[:-1])
        if arch.leaf_formats[i] is not None
    ]
    if large:
        out.append("A large-page leaf ends the walk early; the VA bits below its level are then")
        out.append("the offset in the large page:")
        out.append("")
        for lv, fmt in large:
            out.append(
                f"* {literal(fmt.name)}: bits {bit_range(lv.shift - 1, 0)} are the offset "
                f"in a {human_size(lv.span)} page."
            )
        out.append("")

    out += heading("Entry formats", "-")
    out += [
        "Each picture is drawn from the format's fields as derived from its construct layout,",
        f"from the top bit down, {BITS_PER_ROW} bits per row. Above each box is the bit range",
        "it covers in this row; a field that crosses a row boundary appears in both rows.",
        "The table under each picture gives the whole field and its derived mask.",
        "",
    ]
    roles = describe_formats(arch)
    for fmt in arch.formats.values():
        out += heading(fmt.name, "~")
        if fmt.name in roles:
            out += [
                f"{roles[fmt.name][0].upper()}{roles[fmt.name][1:]}; {fmt.width_bits}-bit, "
                f"stored {fmt.byteorder}-endian.",
                "",
            ]
        out += ["::", ""]
        out += [f"   {line}" if line else "" for line in bit_diagram(fmt)]
        out.append("")
        digits = fmt.width_bits // 4
        rows = [
            [
                literal(f.name),
                bit_range(f.shift + f.width - 1, f.shift),
                str(f.width),
                literal(f"{f.mask:#0{digits + 2}x}"),
            ]
            for f in sorted(fmt.fields.values(), key=lambda f: f.shift, reverse=True)
        ]
        out += list_table(["Field", "Bits", "Width", "Mask"], rows, widths="30 20 10 40")

    pte = arch.pte_format
    if len(arch.protection_map) == 16 and pte is not None:
        digits = pte.width_bits // 4
        out += heading("Protection map", "-")
        out += [
            f"{literal('protection_map[vm_flags & (VM_READ|VM_WRITE|VM_EXEC|VM_SHARED)]')} is",
            "the pte protection a new vma starts with. The slot names are the kernel's",
            "(P private, S shared; the digits are exec, write, read). *Set fields* decodes",
            f"the value with the {literal(pte.name)} layout.",
            "",
        ]
        rows = []
        for i, value in enumerate(arch.protection_map):
            set_fields = [name for name, v in pte.decode_fast(value).items() if v]
            rows.append(
                [
                    literal(PROT_SLOT_NAMES[i]),
                    literal(f"{value:#0{digits + 2}x}"),
                    prot_names(arch, value),
                    ", ".join(literal(n) for n in set_fields) or "(none)",
                ]
            )
        out += list_table(["Slot", "Value", "Named", "Set fields"], rows, widths="12 25 28 35")

        pfn = 0x12345 & arch.max_pfn
        prot = arch.protection_map[0b0011]
        value = arch.pfn_pte(pfn, prot)
        raw = value.to_bytes(pte.width_bits // 8, pte.byteorder)
        decoded = {k: int(v) for k, v in pte.decode(value).items() if v}
        out += heading("An example pte", "-")
        out += [
            f"{literal(f'pfn_pte({pfn:#x}, __P011)')} (a private read-write page) is "
            f"{literal(f'{value:#0{digits + 2}x}')}. In emulated RAM it is stored as the bytes",
            f"{literal(raw.hex(' '))}, and construct decodes it to these non-zero fields:",
            "",
            "::",
            "",
        ]
        width = max(len(k) for k in decoded) if decoded else 0
        out += [f"   {k.ljust(width)} = {v:#x}" for k, v in decoded.items()]
        out.append("")

    out += era_layouts(arch)

    cls = type(arch)
    out += heading("Notes from the plugin", "-")
    out += [
        f"The docstring of ``{cls.__module__}``, where the plugin states its sources and where",
        "it departs from the kernel of the era.",
        "",
        f".. automodule:: {cls.__module__}",
        "   :no-members:",
        "   :no-index:",
        "",
    ]
    if cls.__dict__.get("__doc__"):
        out += [
            f".. autoclass:: {cls.__module__}.{cls.__qualname__}",
            "   :no-members:",
            "   :no-index:",
            "",
        ]
    return out


def era_layouts(arch) -> list[str]:
    """The entry formats that a later era's headers give this arch (``Arch.for_rules``): one
    section per distinct variant, with the pictures of the formats whose fields differ."""
    from pfnmap.kernel.rules import ERAS

    out: list[str] = []
    seen = {id(arch)}
    for name, rules in ERAS.items():
        variant = arch.for_rules(rules)
        if id(variant) in seen:
            continue
        seen.add(id(variant))
        out += heading(f"As the {name} era describes it", "-")
        out += [
            f"From the {literal(name)} era on (Linux {rules.release}), "
            f"{literal(f'{arch.name}.for_rules(rules)')} gives {literal(type(variant).__name__)}: "
            "the machine and the decoder (``--era``) use these formats instead. Only the "
            "formats whose fields differ are shown.",
            "",
        ]
        for fmt in variant.formats.values():
            old = arch.formats.get(fmt.name)
            if old is not None and old.fields == fmt.fields:
                continue
            out += heading(f"{fmt.name} ({name})", "~")
            out += ["::", ""]
            out += [f"   {line}" if line else "" for line in bit_diagram(fmt)]
            out.append("")
    return out


def summary(registry) -> list[str]:
    rows = []
    for name, arch in registry.arches.items():
        rows.append(
            [
                f":ref:`{name} <arch-{safe_name(name)}>`",
                arch.description or "",
                " → ".join(literal(lv.name) for lv in arch.levels),
                ", ".join(human_size(s) for s in [arch.page_size, *arch.large_page_sizes()]),
                f"{arch.va_bits} / {arch.phys_bits}",
                arch.byteorder,
            ]
        )
    return list_table(
        ["Arch", "Description", "Levels", "Page sizes", "VA / PA bits", "Byte order"], rows
    )


def write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True


def generate_arch_pages(app: Sphinx) -> None:
    from pfnmap.plugins.manager import default_registry

    registry = default_registry()
    outdir = Path(app.srcdir) / GENERATED
    outdir.mkdir(parents=True, exist_ok=True)
    wanted = set()
    changed = 0
    for name, arch in registry.arches.items():
        path = outdir / f"{safe_name(name)}.rst"
        wanted.add(path.name)
        changed += write_if_changed(path, "\n".join(arch_page(arch, registry.owners[name])) + "\n")
    changed += write_if_changed(outdir / "summary.inc", "\n".join(summary(registry)) + "\n")
    for stale in outdir.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()
            changed += 1
    logger.info(
        "[pfnmap_layouts] %d arch page(s) in %s (%d file(s) changed)",
        len(wanted),
        GENERATED,
        changed,
    )


# the example plugins ---------------------------------------------------------------------------
def check_example_plugins(app: Sphinx) -> None:
    """Import every ``examples/*.py`` that implements ``pfnmap_arches`` and validate its arches,
    so an example the plugin guide includes cannot drift from the real plugin contract."""
    import importlib.util

    from pfnmap.plugins.validation import validate_arch

    for path in sorted((Path(app.srcdir) / "examples").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"pfnmap_docs_example_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
            hook = getattr(module, "pfnmap_arches", None)
            arches = hook() if hook is not None else []
        except Exception as exc:
            logger.warning("example plugin %s fails: %s: %s", path.name, type(exc).__name__, exc)
            continue
        for arch in arches:
            for problem in validate_arch(arch):
                logger.warning("example plugin %s: %s", path.name, problem)


# the constants directive -----------------------------------------------------------------------
class ConstantsTable(SphinxDirective):
    """``.. pfnmap-constants:: module`` with ``:prefixes:`` (and optionally ``:exclude:``
    prefixes and ``:hex:``): a Name/Value table of the module's int constants, in definition
    order."""

    required_arguments = 1
    option_spec = {
        "prefixes": directives.unchanged_required,
        "exclude": directives.unchanged,
        "hex": directives.flag,
    }

    def run(self):
        module = importlib.import_module(self.arguments[0])
        prefixes = tuple(self.options["prefixes"].split())
        exclude = tuple(self.options.get("exclude", "").split())
        use_hex = "hex" in self.options
        rows = []
        for name, value in vars(module).items():
            if (
                name.startswith(prefixes)
                and not (exclude and name.startswith(exclude))
                and isinstance(value, int)
            ):
                shown = f"{value:#x}" if use_hex else str(value)
                rows.append([literal(name), literal(shown)])
        lines = list_table(["Name", "Value"], rows, widths="60 40")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="pfnmap-constants"), 0, container)
        return container.children


# the pte operations directive ------------------------------------------------------------------
#: what each operation in ``Arch.PTE_OPERATIONS`` must do, in the plugin author's terms
PTE_OPERATION_MEANINGS = {
    "pte_pfn": "the pfn a pte maps",
    "pfn_pte": "a pte for ``pfn`` with protection ``prot`` (as ``mk_pte`` builds)",
    "pte_none": "the pte is empty (nothing ever mapped here)",
    "pte_present": "Linux considers the pte present (on x86 also ``PROTNONE`` ptes)",
    "pte_write": "the pte allows writes",
    "pte_dirty": "the pte records a write",
    "pte_young": "the pte records an access",
    "pte_file": "a not-present pte that encodes a file offset (nonlinear mappings)",
    "pte_wrprotect": "the pte made read-only",
    "pte_mkwrite": "the pte made writable",
    "pte_mkclean": "the pte with dirty cleared",
    "pte_mkdirty": "the pte with dirty set",
    "pte_mkold": "the pte with accessed cleared",
    "pte_mkyoung": "the pte with accessed set",
    "pte_modify": "the pte's pfn and accessed/dirty state with a new protection (mprotect)",
    "pgprot_noncached": "a protection made uncached (``/dev/mem`` with ``O_SYNC``)",
    "pte_hw_access_ok": "whether the MMU lets a user read (or write) through the pte without a "
    "fault",
    "pte_hw_update": "the pte after the MMU has set its accessed (and, for a write, dirty) bits",
    "mk_table_entry": "an upper-level entry at ``level`` pointing to the table at ``paddr`` "
    "(``pmd_populate`` and friends)",
    "table_entry_paddr": "the physical address of the table an upper-level entry points to",
    "table_entry_present": "the upper-level entry is present",
    "table_entry_leaf": "the upper-level entry maps a large page itself",
    "table_entry_bad": "the upper-level entry is corrupt (``pmd_bad`` and friends)",
    "leaf_paddr": "the physical address a leaf entry (a pte or a large page) maps",
}


class PteOperationsTable(SphinxDirective):
    """``.. pfnmap-pte-operations::``: the operations every arch must implement, from
    ``Arch.PTE_OPERATIONS``. An operation this file does not describe yet is a warning."""

    def run(self):
        from pfnmap.arch import Arch

        rows = []
        for name in Arch.PTE_OPERATIONS:
            meaning = PTE_OPERATION_MEANINGS.get(name)
            if meaning is None:
                logger.warning(
                    "Arch.PTE_OPERATIONS has %r, which docs/_ext/pfnmap_layouts.py does not "
                    "describe yet",
                    name,
                    location=self.get_location(),
                )
                meaning = "(not described yet)"
            rows.append([literal(name), meaning])
        lines = list_table(["Operation", "Returns"], rows, widths="30 70")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="pfnmap-pte-operations"), 0, container)
        return container.children


def setup(app: Sphinx) -> dict[str, object]:
    app.connect("builder-inited", generate_arch_pages)
    app.connect("builder-inited", check_example_plugins)
    app.add_directive("pfnmap-constants", ConstantsTable)
    app.add_directive("pfnmap-pte-operations", PteOperationsTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
