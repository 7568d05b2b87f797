"""Fuzzing the decoder: random bytes as tables, random damage to a real emulator dump, random
damage to an ELF core. Whatever the input, the walk terminates and raises nothing but the
documented errors (ImageError to open, WalkError to start); everything else is a record."""

from __future__ import annotations

import contextlib
import functools
import io
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfnmap.cli.main import main
from pfnmap.decode.dump import build_scenario
from pfnmap.decode.formats import records, write_qemu_mem, write_qemu_tlb
from pfnmap.decode.hints import Hints, VmaHint
from pfnmap.decode.image import ImageError, PhysImage, Segment, open_image, write_elf_core
from pfnmap.decode.walker import (
    PROBLEM_KINDS,
    LeafBatch,
    Problem,
    Walker,
    WalkError,
    leaves,
    ranges,
)
from pfnmap.plugins.manager import default_registry

ARCHES = default_registry().names()
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def arch_of(name: str):
    return default_registry().get(name)


def drain(walker: Walker, arch, hints=None) -> tuple[int, int]:
    """Consume a walk through every view; returns (leaves, problems)."""
    n_leaves = n_problems = 0
    for item in walker:
        if isinstance(item, Problem):
            assert item.kind in PROBLEM_KINDS
            assert item.detail and item.level_name is not None
            n_problems += 1
        else:
            assert isinstance(item, LeafBatch)
            n_leaves += len(item)
    assert walker.finished
    assert walker.tables_read <= walker.max_tables + 1
    assert n_problems == walker.problems and n_leaves == walker.leaf_entries
    return n_leaves, n_problems


@SETTINGS
@given(
    name=st.sampled_from(ARCHES),
    blob=st.binary(min_size=1, max_size=64 << 10),
    fill=st.sampled_from([None, None, 0x00, 0xFF, 0x01, 0x67]),
    base_page=st.integers(0, 4),
    data=st.data(),
)
def test_random_bytes_as_tables(name, blob, fill, base_page, data) -> None:
    arch = arch_of(name)
    top = arch.levels[0]
    size = top.entries * top.entry_bytes
    if fill is not None:
        blob = bytes([fill]) * len(blob)
    if len(blob) < size and data.draw(st.booleans()):
        blob = (blob * (size // len(blob) + 2))[: data.draw(st.integers(size, 4 * size))]
    base = base_page * 4096
    img = PhysImage([Segment(base, len(blob))], blob, "fuzz", "raw")
    root = base + data.draw(st.integers(0, len(blob) // size + 1)) * size
    try:
        walker = Walker(img, arch, root)
    except WalkError as exc:
        assert root % size or not img.contains(root, size), exc
        return
    drain(walker, arch)
    hints = Hints([(0, 1 << 20)], [VmaHint(0, 1 << 40, 0x4FB, 0)])
    for view in (leaves, ranges):
        for rec in view(Walker(img, arch, root), arch, hints):
            assert rec is not None
    if name.startswith("x86"):
        for writer in (write_qemu_tlb, write_qemu_mem):
            writer(io.StringIO(), Walker(img, arch, root), arch, lambda p: None)


@functools.cache
def story_dump(name: str) -> tuple[bytes, list[int], list[int]]:
    """RAM of the story scenario, the roots, and the physical addresses of its table pages."""
    m = build_scenario(name, ram="4M")
    ram = bytes(m.phys.ram)
    roots = [p.mm.pgd for p in m.processes.values()]
    tables = [pfn << m.arch.page_shift for pfn in range(m.phys.nr_pages)
              if "pgtable" in m.phys.flag_names(pfn)]  # fmt: skip
    return ram, roots, tables


@SETTINGS
@given(name=st.sampled_from(ARCHES), data=st.data())
def test_random_damage_to_a_real_dump(name, data) -> None:
    arch = arch_of(name)
    ram, roots, tables = story_dump(name)
    buf = bytearray(ram)
    for _ in range(data.draw(st.integers(1, 40))):
        table = data.draw(st.sampled_from(tables))
        span = max(lv.entries * lv.entry_bytes for lv in arch.levels)
        pos = table + data.draw(st.integers(0, span - 1))
        how = data.draw(st.sampled_from(["byte", "bit", "copy-root", "self"]))
        if how == "byte":
            buf[pos] = data.draw(st.integers(0, 255))
        elif how == "bit":
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:  # an entry pointing at a table on its own path, or at another root
            level = data.draw(st.integers(0, len(arch.levels) - 2))
            lv = arch.levels[level]
            slot = table + (pos - table) // lv.entry_bytes * lv.entry_bytes
            target = roots[0] if how == "copy-root" else table
            entry = arch.mk_table_entry(level, target)
            buf[slot : slot + lv.entry_bytes] = entry.to_bytes(lv.entry_bytes, arch.byteorder)
    cut = data.draw(st.sampled_from([len(buf), len(buf) - 4096, len(buf) // 2]))
    seg = Segment(0, len(buf), 0, len(buf), cut)
    img = PhysImage([seg], bytes(buf), "damaged", "raw")
    for root in roots:
        try:
            walker = Walker(img, arch, root)
        except WalkError:
            continue
        drain(walker, arch)
        list(records(Walker(img, arch, root), arch, merge=True))


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(["x86-64", "x86-pae", "sparc64"]),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.one_of(st.none(), st.integers(0, 9000)),
)
def test_random_damage_to_an_elf_core(name, edits, cut) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "core.elf"
        write_elf_core(f, [(0, bytes(4096)), (0x10000, bytes(8192))], name)
        raw = bytearray(f.read_bytes())
        for pos, value in edits:
            if pos < len(raw):
                raw[pos] = value
        f.write_bytes(bytes(raw[:cut] if cut is not None else raw))
        try:
            img = open_image(f)
        except ImageError as exc:
            assert str(exc) and "\n" not in str(exc)
            return
        with img:
            arch = arch_of(name)
            for start, _ in img.ranges()[:3]:
                try:
                    walker = Walker(img, arch, start & ~0xFFF)
                except WalkError:
                    continue
                drain(walker, arch)


@settings(max_examples=25, deadline=None)
@given(blob=st.binary(min_size=0, max_size=9000), fmt=st.sampled_from(["table", "jsonl", "csv",
                                                                        "qemu-mem"]))  # fmt: skip
def test_cli_never_shows_a_traceback(blob, fmt) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "img"
        f.write_bytes(blob)
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(["decode", str(f), "--arch", "x86-64", "--root", "0", "--format", fmt])
    assert code in (0, 1)
    assert "Traceback" not in err.getvalue()
    if code == 1:
        assert err.getvalue().startswith("pfnmap: error: ")
        assert err.getvalue().count("\n") == 1


@pytest.mark.parametrize("name", ARCHES)
def test_every_entry_pointing_at_the_root_terminates(name: str) -> None:
    """The worst self-similar table: every slot of the root points at the root."""
    arch = arch_of(name)
    top = arch.levels[0]
    size = top.entries * top.entry_bytes
    root = max(size, 4096)  # not 0: sparc64's entry for table 0 would be none
    entry = arch.mk_table_entry(0, root).to_bytes(top.entry_bytes, arch.byteorder)
    blob = bytes(root) + entry * top.entries + bytes(4 * 8192)
    img = PhysImage([Segment(0, len(blob))], blob, "self", "raw")
    _, n_problems = drain(Walker(img, arch, root), arch)
    assert n_problems >= top.entries // 2  # loops (and the canonical hole of sparc64)


# kdump, flattened and LiME files ---------------------------------------------------------------
@functools.cache
def story_kdump(name: str, flattened: bool, codec: str) -> tuple[bytes, list[int]]:
    """A kdump file of the story's RAM (4 MiB) and its roots."""
    from pfnmap.decode.image import write_kdump

    m = build_scenario(name, ram="4M")
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "d"
        write_kdump(f, [(0, bytes(m.phys.ram))], m.arch, compression=codec, flattened=flattened,
                    drop_zero=True)  # fmt: skip
        return f.read_bytes(), [p.mm.pgd for p in m.processes.values()]


def _open_and_walk(path: Path, arch, roots) -> None:
    """Open and walk every root: nothing but ImageError (one line) and WalkError may escape."""
    try:
        img = open_image(path)
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    with img:
        for root in roots:
            try:
                walker = Walker(img, arch, root)
            except WalkError as exc:
                assert "\n" not in str(exc)
                continue
            drain(walker, arch)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["x86-64", "x86-pae", "sparc64"]),
    flattened=st.booleans(),
    codec=st.sampled_from(["zlib", "none"]),
    data=st.data(),
)
def test_random_damage_to_a_kdump_file(name, flattened, codec, data) -> None:
    """Edits anywhere (headers, bitmaps, descriptors, pages, flattened record headers) and cuts:
    the file opens with one clear line or walks to its end with problem records."""
    blob, roots = story_kdump(name, flattened, codec)
    raw = bytearray(blob)
    for _ in range(data.draw(st.integers(1, 12))):
        region = data.draw(st.sampled_from(["header", "sub", "anywhere", "descriptor-ish"]))
        top = {"header": 512, "sub": 8192 + 256}.get(region, len(raw))
        pos = data.draw(st.integers(0, min(top, len(raw)) - 1))
        if region == "descriptor-ish":
            raw[pos : pos + 8] = data.draw(st.binary(min_size=8, max_size=8))
        else:
            raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "d"
        f.write_bytes(bytes(raw[:cut] if cut is not None else raw))
        _open_and_walk(f, arch_of(name), roots)


@settings(max_examples=40, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.integers(-2, 1 << 20), st.integers(-2, 5000)), min_size=0, max_size=30
    ),
    end=st.booleans(),
)
def test_random_flattened_record_headers(records, end) -> None:
    """Record headers with any offset and size (negative, overlapping, past the end)."""
    import struct

    head = (b"makedumpfile\0\0\0\0" + struct.pack(">qq", 1, 1)).ljust(4096, b"\0")
    body = b"".join(struct.pack(">qq", off, size) + bytes(max(0, min(size, 64)))
                    for off, size in records)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "flat"
        f.write_bytes(head + body + (struct.pack(">qq", -1, -1) if end else b""))
        _open_and_walk(f, arch_of("x86-64"), [0])


@settings(max_examples=40, deadline=None)
@given(
    edits=st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 12000)),
)
def test_random_damage_to_a_lime_file(edits, cut) -> None:
    from pfnmap.decode.image import write_lime

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "l"
        write_lime(f, [(0, bytes(4096)), (0x10000, bytes(8192))])
        raw = bytearray(f.read_bytes())
        for pos, value in edits:
            if pos < len(raw):
                raw[pos] = value
        f.write_bytes(bytes(raw[:cut] if cut is not None else raw))
        _open_and_walk(f, arch_of("x86-64"), [0, 0x10000])


def test_pn_xnum_with_a_huge_count_ends_at_once(tmp_path: Path) -> None:
    """The ELF gABI's PN_XNUM: the program header count is section 0's sh_info."""
    import struct

    f = tmp_path / "core"
    write_elf_core(f, [(0, bytes(4096))])
    raw = bytearray(f.read_bytes())
    shoff = len(raw)
    raw += struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0xFFFFFFFF, 0, 0)
    struct.pack_into("<Q", raw, 40, shoff)
    struct.pack_into("<HH", raw, 56, 0xFFFF, 64)
    f.write_bytes(bytes(raw))
    with pytest.raises(ImageError, match="PN_XNUM"):
        open_image(f)
