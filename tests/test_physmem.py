"""Physical memory: sizes, RAM with struct pages, the page allocator, the ZERO_PAGE, device memory
and holes.

Kernel facts used: pfn_valid() is true exactly for pfns with a struct page (RAM here), and
put_page() of a page whose count is already 0, or freeing a page that is still mapped, is a
"Bad page state"/BUG in mm/page_alloc.c of 2.6.15 (free_pages_check). Counts follow pfnmap's
convention (documented in core/physmem.py): ``count`` is the real reference count.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfnmap import BusError, KernelBug, KernelError, Machine, OutOfMemory
from pfnmap.kernel.constants import PG_reserved
from pfnmap.kernel.physmem import IORegion, PhysMem, device_byte_pattern, parse_size

PAGE_SHIFT = 12
PAGE = 1 << PAGE_SHIFT
RAM = 1 << 20  # 256 pages
IO_START = 0x1000_0000
IO_SIZE = 4 * PAGE


def make_phys(ram: int = RAM, **kw) -> PhysMem:
    kw.setdefault("phys_bits", 36)
    return PhysMem(ram, PAGE_SHIFT, [IORegion("dev", IO_START, IO_SIZE)], **kw)


@pytest.fixture
def phys() -> PhysMem:
    return make_phys()


# parse_size ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [
        (65536, 65536),
        ("65536", 65536),
        ("4K", 4096),
        ("4k", 4096),
        ("64M", 64 << 20),
        ("64MB", 64 << 20),
        ("64MiB", 64 << 20),
        ("64mib", 64 << 20),
        (" 2G ", 2 << 30),
        ("1T", 1 << 40),
        ("0x1000", 0x1000),
        ("0x10M", 16 << 20),
    ],
)
def test_parse_size(text: int | str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "M", "1.5M", "64X", "sixty", "64 M B"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@given(n=st.integers(0, 1 << 20), suffix=st.sampled_from(["", "K", "M", "G", "T"]))
def test_parse_size_suffixes(n: int, suffix: str) -> None:
    shift = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[suffix]
    assert parse_size(f"{n}{suffix}") == n << shift
    assert parse_size(f"{n}{suffix.lower()}iB" if suffix else str(n)) == n << shift


# struct pages and pfn_valid ------------------------------------------------------------------
def test_ram_pfns_have_struct_pages(phys: PhysMem) -> None:
    assert phys.nr_pages == RAM // PAGE == 256
    assert len(phys.count) == len(phys.mapcount) == len(phys.flags) == phys.nr_pages
    assert phys.pfn_valid(0)
    assert phys.pfn_valid(phys.nr_pages - 1)
    assert not phys.pfn_valid(phys.nr_pages)
    assert not phys.pfn_valid(-1)
    assert not phys.pfn_valid(IO_START >> PAGE_SHIFT)  # device memory has no struct page


def test_machine_page_refuses_pfns_without_struct_page() -> None:
    machine = Machine(ram="16M")
    io_pfn = machine.phys.io_regions[0].start >> machine.arch.page_shift
    with pytest.raises(KernelError) as info:
        machine.page(io_pfn)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(KernelError):
        machine.page(machine.phys.nr_pages)
    zero = machine.page(machine.phys.zero_pfn)
    assert zero.reserved
    assert zero.count == 1
    assert zero.mapcount == 0


def test_reserved_low_pages_and_zero_page(phys: PhysMem) -> None:
    for pfn in range(phys.reserved_low_pages):
        assert phys.count[pfn] == 1
        assert phys.flags[pfn] & PG_reserved
        assert phys.flag_names(pfn) == ["reserved"]
    zero = phys.zero_pfn
    assert zero >= phys.reserved_low_pages
    assert phys.flags[zero] & PG_reserved
    assert phys.count[zero] == 1
    assert phys.read(zero << PAGE_SHIFT, PAGE) == bytes(PAGE)
    assert phys.allocated == 1  # the ZERO_PAGE is the first allocation


def test_zero_page_cannot_be_freed(phys: PhysMem) -> None:
    with pytest.raises(KernelBug, match="reserved page"):
        phys.put_page(phys.zero_pfn)


# the allocator -------------------------------------------------------------------------------
def test_allocator_counts(phys: PhysMem) -> None:
    free0 = phys.free_pages()
    assert free0 == phys.nr_pages - phys.reserved_low_pages - 1
    pfns = [phys.alloc_page() for _ in range(10)]
    assert len(set(pfns)) == 10
    assert all(phys.pfn_valid(p) and p >= phys.reserved_low_pages for p in pfns)
    assert all(phys.count[p] == 1 and phys.mapcount[p] == 0 for p in pfns)
    assert phys.free_pages() == free0 - 10
    assert phys.allocated == 11
    phys.get_page(pfns[0])
    assert phys.count[pfns[0]] == 2
    phys.put_page(pfns[0])
    assert phys.free_pages() == free0 - 10  # still one reference
    for p in pfns:
        phys.put_page(p)
    assert phys.free_pages() == free0
    assert phys.allocated == 1
    assert all(phys.count[p] == 0 for p in pfns)


def test_alloc_page_zeroes(phys: PhysMem) -> None:
    pfn = phys.alloc_page()
    phys.write(pfn << PAGE_SHIFT, b"\xff" * PAGE)
    phys.put_page(pfn)
    again = phys.alloc_page()  # the page just freed comes back first
    assert again == pfn
    assert phys.read(again << PAGE_SHIFT, PAGE) == bytes(PAGE)


def test_freeing_clears_struct_page(phys: PhysMem) -> None:
    pfn = phys.alloc_page()
    phys.flags[pfn] |= 1 << 4
    phys.mapping[pfn] = object()
    phys.index[pfn] = 7
    phys.put_page(pfn)
    assert (phys.flags[pfn], phys.mapping[pfn], phys.index[pfn]) == (0, None, 0)


def test_put_page_of_a_free_page_is_a_bug(phys: PhysMem) -> None:
    pfn = phys.alloc_page()
    phys.put_page(pfn)
    free = phys.free_pages()
    with pytest.raises(KernelBug, match=f"put_page on free page {pfn:#x}"):
        phys.put_page(pfn)
    assert phys.free_pages() == free  # not freed twice
    assert phys.count[pfn] == 0


def test_freeing_a_mapped_page_is_a_bug(phys: PhysMem) -> None:
    pfn = phys.alloc_page()
    phys.mapcount[pfn] = 1
    free = phys.free_pages()
    with pytest.raises(KernelBug, match=f"Bad page state: freeing mapped page {pfn:#x}"):
        phys.put_page(pfn)
    assert phys.free_pages() == free


def test_out_of_memory(phys: PhysMem) -> None:
    got = [phys.alloc_page(zero=False) for _ in range(phys.free_pages())]
    assert phys.free_pages() == 0
    with pytest.raises(OutOfMemory) as info:
        phys.alloc_page()
    assert info.value.errno == errno.ENOMEM
    phys.put_page(got[-1])
    assert phys.alloc_page() == got[-1]


# RAM bytes ----------------------------------------------------------------------------------
@given(offset=st.integers(0, RAM - 64), data=st.binary(min_size=1, max_size=64))
def test_ram_read_write(offset: int, data: bytes) -> None:
    phys = make_phys()
    phys.write(offset, data)
    assert phys.read(offset, len(data)) == data


def test_copy_page_and_table_view(phys: PhysMem) -> None:
    src, dst = phys.alloc_page(), phys.alloc_page()
    phys.write(src << PAGE_SHIFT, bytes(range(256)) * (PAGE // 256))
    phys.copy_page(dst, src)
    assert phys.read(dst << PAGE_SHIFT, PAGE) == phys.read(src << PAGE_SHIFT, PAGE)
    view = phys.table(dst << PAGE_SHIFT, PAGE // 8, "<u8")
    view[3] = 0x1122334455667788
    assert phys.read((dst << PAGE_SHIFT) + 24, 8) == bytes.fromhex("8877665544332211")


# device memory and holes -------------------------------------------------------------------
def test_io_reads_are_deterministic(phys: PhysMem) -> None:
    first = phys.read(IO_START + 5, 64)
    assert phys.read(IO_START + 5, 64) == first
    assert make_phys().read(IO_START + 5, 64) == first  # the same on another machine
    expected = device_byte_pattern(np.arange(IO_START + 5, IO_START + 69, dtype=np.uint64))
    assert first == expected.tobytes()
    assert len(set(phys.read(IO_START, PAGE))) > 16  # a pattern, not a constant
    assert phys.read(IO_START, 16) != phys.read(IO_START + PAGE, 16)


def test_io_writes_stick(phys: PhysMem) -> None:
    before = phys.read(IO_START, 2 * PAGE)
    phys.write(IO_START + 10, b"hello")
    after = phys.read(IO_START, 2 * PAGE)
    assert after[10:15] == b"hello"
    assert after[:10] == before[:10]
    assert after[15:] == before[15:]  # the rest of the page and the next page unchanged
    phys.write(IO_START + PAGE - 2, b"wxyz")  # across a page boundary of the device
    assert phys.read(IO_START + PAGE - 2, 4) == b"wxyz"
    assert phys.read(IO_START + PAGE, 2) == b"yz"  # the second half is in the next page
    assert len(phys.read(IO_START, 2 * PAGE)) == 2 * PAGE
    assert len(phys.read(IO_START + PAGE - 2, PAGE)) == PAGE


@given(
    writes=st.lists(
        st.tuples(st.integers(0, IO_SIZE - 1), st.binary(min_size=1, max_size=2 * PAGE)),
        max_size=6,
    ),
    start=st.integers(0, IO_SIZE - 1),
    n=st.integers(1, IO_SIZE),
)
def test_io_region_behaves_like_bytes(writes: list[tuple[int, bytes]], start: int, n: int) -> None:
    """Device memory reads back exactly like a bytearray holding the pattern plus the writes,
    wherever reads and writes start and however many device pages they span."""
    phys = make_phys()
    model = bytearray(phys.read(IO_START, IO_SIZE))
    for offset, data in writes:
        data = data[: IO_SIZE - offset]
        phys.write(IO_START + offset, data)
        model[offset : offset + len(data)] = data
    n = min(n, IO_SIZE - start)
    assert phys.read(IO_START + start, n) == bytes(model[start : start + n])
    assert phys.read(IO_START, IO_SIZE) == bytes(model)


@pytest.mark.parametrize(
    ("paddr", "n"),
    [
        (RAM, 1),  # just past RAM
        (RAM - 4, 8),  # straddles the end of RAM
        (IO_START - 1, 1),  # just below the device
        (IO_START + IO_SIZE - 4, 8),  # straddles the end of the device
        (IO_START + IO_SIZE, 1),  # just past the device
        (1 << 35, 1),  # far away, inside the physical address width
    ],
)
def test_holes_are_bus_errors(phys: PhysMem, paddr: int, n: int) -> None:
    with pytest.raises(BusError) as info:
        phys.read(paddr, n)
    assert info.value.address == paddr
    with pytest.raises(BusError):
        phys.write(paddr, bytes(n))


def test_io_region_overlapping_ram_is_einval() -> None:
    with pytest.raises(KernelError, match="overlaps RAM") as info:
        PhysMem(RAM, PAGE_SHIFT, [IORegion("dev", RAM - PAGE, IO_SIZE)], phys_bits=36)
    assert info.value.errno == errno.EINVAL


def test_io_region_beyond_phys_bits_is_einval() -> None:
    with pytest.raises(KernelError, match="32-bit physical address space") as info:
        PhysMem(RAM, PAGE_SHIFT, [IORegion("dev", (1 << 32) - PAGE, 2 * PAGE)], phys_bits=32)
    assert info.value.errno == errno.EINVAL
    # ending exactly at the top is fine
    top = PhysMem(RAM, PAGE_SHIFT, [IORegion("dev", (1 << 32) - PAGE, PAGE)], phys_bits=32)
    assert top.io_region_of((1 << 32) - 1).name == "dev"


@pytest.mark.parametrize(
    ("ram", "reserved", "match"),
    [
        (0, 16, "not a positive multiple of a page"),
        (RAM + 100, 16, "not a positive multiple of a page"),
        (16 * PAGE, 16, "too small to boot"),
        (23 * PAGE, 16, "too small to boot"),
    ],
)
def test_bad_ram_sizes(ram: int, reserved: int, match: str) -> None:
    with pytest.raises(KernelError, match=match) as info:
        PhysMem(ram, PAGE_SHIFT, [], reserved_low_pages=reserved)
    assert info.value.errno == errno.EINVAL


def test_smallest_ram_boots() -> None:
    phys = PhysMem(24 * PAGE, PAGE_SHIFT, [], reserved_low_pages=16)
    assert phys.free_pages() == 24 - 16 - 1


def test_ram_beyond_phys_bits_is_einval() -> None:
    with pytest.raises(KernelError, match="exceeds 20-bit") as info:
        PhysMem(2 << 20, PAGE_SHIFT, [], phys_bits=20)
    assert info.value.errno == errno.EINVAL


def test_machine_ram_too_small() -> None:
    with pytest.raises(KernelError, match="too small"):
        Machine(ram="64K")
    with pytest.raises(ValueError, match="not a size"):
        Machine(ram="lots")


def test_machine_default_io_region_sits_above_ram() -> None:
    machine = Machine(ram="16M")
    (region,) = machine.phys.io_regions
    assert region.start >= machine.phys.ram_bytes
    assert region.start % machine.arch.page_size == 0
    assert machine.phys.io_region_of(region.start) is region
    assert machine.phys.io_region_of(machine.phys.ram_bytes) in (None, region)
