"""The scenarios. Each docstring says what happens and what each era is expected to do.

Every size comes from the machine's arch (4 KiB or 8 KiB pages), every device address from its
default I/O region ("fb0", beyond RAM) or from the boot-reserved firmware pages (RAM with struct
pages that nobody maps). The kernel's own pfnmap selftest (madvise, munmap, mremap and fork on
/dev/mem) is in :mod:`pfnmap.scenarios.selftest`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pfnmap.kernel.constants import MAP_PRIVATE, MAP_SHARED, PROT_READ, PROT_WRITE

from . import scenario
from .drivers import MixedDriver, PageDriver, Piece, RemapDriver, ram_window
from .observe import FAILED

if TYPE_CHECKING:
    from pfnmap.machine import Machine, Process

    from .observe import Observer

RW = PROT_READ | PROT_WRITE
PAYLOAD = b"written by a pfnmap scenario"


def _copy_source(m: Machine, proc: Process, addr: int, seen: bytes, off: int) -> str:
    """Where do_wp_page's copy at ``addr`` came from, given what the task saw before the write
    at ``off`` (``seen``: the page and the next one): "aligned", "shifted" (the seed's copy from
    the unaligned fault address), "zero" (the user copy failed) or "other"."""
    if not proc.alive:
        return "n/a (task gone)"
    ps = m.arch.page_size
    page = proc.read(addr, ps)
    outside = [(0, off), (off + len(PAYLOAD), ps)]

    def same(shift: int) -> bool:
        return all(page[a:b] == seen[a + shift : b + shift] for a, b in outside)

    if same(0):
        return "aligned"
    if same(off):
        return "shifted"
    if not any(any(page[a:b]) for a, b in outside):
        return "zero"
    return "other"


def _fb(m: Machine):
    return m.phys.io_regions[0]


@scenario(
    "partial_private",
    "a driver remaps part of a private writable vma",
    ("remap_pfn_range", "do_anonymous_page", "do_wp_page", "cow_user_page", "copy_one_pte"),
)
def partial_private(m: Machine, obs: Observer) -> None:
    """A driver's mmap remaps only the first two pages of a private, writable four-page vma.

    The task reads the third page (a hole: do_anonymous_page), writes the fourth, then writes
    into the first (COW of a raw pte), forks and exits. Seed: accepted; the hole is the
    ZERO_PAGE, the COW copies through the user address from the unaligned fault address.
    2.6.15: EINVAL at mmap (rc6: a COW mapping must be remapped whole). Before the seed:
    accepted, the COW of device memory is a bad pte and VM_FAULT_OOM; the ZERO_PAGE in the
    VM_UNPAGED hole is neither page_is_anon nor counted back at exit, so the run ends with
    that page's count, mapcount and file_rss out of balance (ee498ed7 is the state before
    Hugh's "unpaged: ZERO_PAGE in VM_UNPAGED"). 2.6.26: EINVAL as 2.6.15.
    """
    ps = m.arch.page_size
    fb = _fb(m)
    m.add_inode(RemapDriver(m, "/dev/partial", fb, [Piece(0, 2, 0)], io=False))
    x = m.spawn("X")
    fd = x.open("/dev/partial")
    addr = obs.do("mmap", lambda: x.mmap(4 * ps, RW, MAP_PRIVATE, fd), x)
    if addr is FAILED:
        return
    obs.vma("dev", x, addr)
    obs.ptes("dev", x, addr, 4)
    obs.do("read the hole", lambda: x.read(addr + 2 * ps, 8), x)
    obs.ptes("dev", x, addr + 2 * ps, first=2)
    obs.do("write the hole", lambda: x.write(addr + 3 * ps, PAYLOAD), x)
    obs.ptes("dev", x, addr + 3 * ps, first=3)
    off = ps // 16
    seen = m.phys.read(fb.start, 2 * ps)
    obs.do("write the remapped part", lambda: x.write(addr + off, PAYLOAD), x)
    obs.ptes("dev", x, addr)
    obs.fact("COW copy of page 0", _copy_source(m, x, addr, seen, off))
    obs.rss(x)
    child = obs.do("fork", lambda: x.fork("child"), x)
    if child is not FAILED:
        obs.ptes("dev", child, addr, 4)
        obs.rss(child)
        obs.do("child exits", child.exit, child)
    obs.do("X exits", x.exit, x)


@scenario(
    "shared_remaps",
    "a driver remaps a shared vma in several discontiguous pieces",
    ("remap_pfn_range", "vm_normal_page", "copy_one_pte", "zap_pte_range"),
)
def shared_remaps(m: Machine, obs: Observer) -> None:
    """A driver fills one MAP_SHARED vma with three remap_pfn_range calls over discontiguous
    device ranges, out of order (what the binary graphics drivers did).

    Seed: each call sets vm_pgoff to its own first pfn, counted from vm_start, so no pte
    follows the linear rule (only a call at vm_start could line up): every pte is a bad pte at
    fork and at unmap (print_bad_pte). 2.6.15 (rc6 "Allow arbitrary
    shared PFNMAP's"): a non-COW vma is raw throughout, no report. Before the seed: VM_UNPAGED,
    raw throughout. 2.6.26: raw (pte_special, or the rc6 rule without the bit).
    """
    ps = m.arch.page_size
    fb = _fb(m)
    pieces = [Piece(0, 1, 16 * ps), Piece(1, 1, 0), Piece(2, 2, 64 * ps)]
    m.add_inode(RemapDriver(m, "/dev/aperture", fb, pieces, io=False))
    x = m.spawn("X")
    fd = x.open("/dev/aperture")
    addr = obs.do("mmap", lambda: x.mmap(4 * ps, RW, MAP_SHARED, fd), x)
    if addr is FAILED:
        return
    obs.vma("aperture", x, addr)
    obs.ptes("aperture", x, addr, 4)
    data = obs.do("read every page", lambda: [x.read(addr + i * ps, 16) for i in range(4)], x)
    if data is not FAILED:
        want = [
            m.phys.read(fb.start + p.offset + k * ps, 16) for p in pieces for k in range(p.npages)
        ]
        obs.fact("the pages show the device's bytes", data == want)
    child = obs.do("fork", lambda: x.fork("child"), x)
    if child is not FAILED:
        obs.ptes("aperture", child, addr, 4)
        obs.do("child writes page 0", lambda: child.write(addr + 8, PAYLOAD), child)
        obs.fact(
            "the child's write reached the device",
            m.phys.read(fb.start + 16 * ps + 8, len(PAYLOAD)) == PAYLOAD,
        )
        obs.do("child exits", child.exit, child)
    obs.do("X unmaps", lambda: x.munmap(addr, 4 * ps), x)
    obs.rss(x)


@scenario(
    "sunffb",
    "the ffb framebuffer (sunffb): X maps it MAP_PRIVATE, forks and draws",
    ("io_remap_pfn_range", "copy_one_pte", "do_wp_page", "zap_pte_range", "print_bad_pte"),
)
def sunffb(m: Machine, obs: Observer) -> None:
    """The 2.6.15-rc6 sunffb report (kernel-reference §5.5): X.org maps the Creator3D
    framebuffer MAP_PRIVATE, PROT_READ|PROT_WRITE, and sbusfb's mmap helper builds the mapping
    from several discontiguous io_remap_pfn_range calls, with writable uncached ptes (sparc's
    forced pg_iobits; the driver passes the same prot on an arch that honours it). X forks a
    helper, draws, the helper exits, X unmaps and exits. If MAP_PRIVATE fails, X falls back to
    MAP_SHARED, as it did.

    Seed: the mapping works, but vm_pgoff is the last call's first pfn, which no pte fits, so
    fork reports "Bad pte" for every pte (copy_one_pte), the write-protected ptes make X's
    next drawing a COW into anonymous RAM (the blank screen; do_wp_page reports again), and
    exit and munmap report the rest.
    2.6.15 on x86: remap_pfn_range refuses the partial COW remap (EINVAL), X falls back to
    MAP_SHARED and everything is raw. 2.6.15 on sparc64: sparc's own io_remap_pfn_range has no
    such check, so the report is reproduced as it was filed (on rc6). Before the seed: raw
    VM_UNPAGED ptes, copied at fork without write-protect, so X keeps drawing into the
    framebuffer. 2.6.26: EINVAL on x86; on sparc64 (no special bit) vm_normal_page's
    VM_BUG_ON at fork.
    """
    ps = m.arch.page_size
    fb = _fb(m)
    pieces = [Piece(0, 2, 0), Piece(2, 1, 256 * ps), Piece(3, 1, 512 * ps)]
    m.add_inode(RemapDriver(m, "/dev/fb0", fb, pieces, io=True, prot="io"))
    x = m.spawn("X")
    fd = x.open("/dev/fb0")
    addr = obs.do(
        "X mmaps the framebuffer MAP_PRIVATE", lambda: x.mmap(4 * ps, RW, MAP_PRIVATE, fd), x
    )
    if addr is FAILED:
        addr = obs.do("X falls back to MAP_SHARED", lambda: x.mmap(4 * ps, RW, MAP_SHARED, fd), x)
        if addr is FAILED:
            return
    obs.at("X has the framebuffer mapped")
    obs.vma("fb", x, addr)
    obs.ptes("fb", x, addr, 4)
    sample = obs.do("X reads the framebuffer", lambda: x.read(addr + 2 * ps, 16), x)
    if sample is not FAILED:
        obs.fact("X sees the framebuffer", sample == m.phys.read(fb.start + 256 * ps, 16))
    sh = obs.do("X forks", lambda: x.fork("sh"), x)
    obs.ptes("fb", x, addr, 4)
    if sh is not FAILED:
        obs.ptes("fb", sh, addr, 4)
    obs.do("X draws", lambda: x.write(addr + 2 * ps + 64, PAYLOAD), x)
    obs.ptes("fb", x, addr + 2 * ps, first=2)
    obs.fact(
        "X's drawing reached the framebuffer",
        m.phys.read(fb.start + 256 * ps + 64, len(PAYLOAD)) == PAYLOAD,
    )
    obs.rss(x)
    if sh is not FAILED:
        obs.do("sh exits", sh.exit, sh)
    obs.do("X unmaps the framebuffer", lambda: x.munmap(addr, 4 * ps), x)
    obs.do("X exits", x.exit, x)


@scenario(
    "devmem_cow",
    "writes to MAP_PRIVATE /dev/mem over RAM and over device memory",
    ("mmap_mem", "do_wp_page", "cow_user_page", "vm_normal_page"),
)
def devmem_cow(m: Machine, obs: Observer) -> None:
    """A task maps /dev/mem MAP_PRIVATE twice, two pages over boot-reserved RAM and two pages of
    device memory, and writes into the first page of each at an offset.

    RAM window: the seed copies through the user address from the fault address (the copy is
    shifted by the offset), 2.6.15 from the page start, and before the seed the copy is made
    from the struct page. Device window: seed shifted, 2.6.15 aligned, before the seed a bad
    pte and VM_FAULT_OOM (copy_user_highpage cannot copy from a pfn without a struct page): the
    task is killed.
    """
    ps = m.arch.page_size
    fb = _fb(m)
    off = ps // 16
    x = m.spawn("X")
    fd = x.open("/dev/mem")
    ram = obs.do("map RAM", lambda: x.mmap(2 * ps, RW, MAP_PRIVATE, fd, offset=4 * ps), x)
    if ram is not FAILED:
        obs.vma("ram", x, ram)
        seen = m.phys.read(4 * ps, 2 * ps)
        obs.do("write into the RAM window", lambda: x.write(ram + off, PAYLOAD), x)
        obs.ptes("ram", x, ram, 2)
        obs.fact("COW copy of the RAM page", _copy_source(m, x, ram, seen, off))
        obs.page("firmware pfn 4", 4)
        obs.rss(x)
    io_offset = fb.start + 8 * ps
    io = obs.do(
        "map device memory", lambda: x.mmap(2 * ps, RW, MAP_PRIVATE, fd, offset=io_offset), x
    )
    if io is not FAILED:
        seen = m.phys.read(io_offset, 2 * ps)
        obs.do("write into the device window", lambda: x.write(io + off, PAYLOAD), x)
        obs.ptes("io", x, io, 2)
        obs.fact("COW copy of the device page", _copy_source(m, x, io, seen, off))
        obs.fact(
            "the device is unchanged",
            m.phys.read(io_offset, 2 * ps) == seen,
        )
        obs.rss(x)
    obs.do("X exits", x.exit, x)


@scenario(
    "fork_after_cow",
    "COW in a private /dev/mem mapping, then fork, then writes on both sides",
    ("do_wp_page", "copy_one_pte", "page_is_anon", "vm_normal_page"),
)
def fork_after_cow(m: Machine, obs: Observer) -> None:
    """A task COWs the first page of a two-page MAP_PRIVATE /dev/mem mapping over reserved RAM,
    forks, and then the child writes both pages and the parent the first.

    Every era counts the COWed page at fork (count and mapcount 2) and leaves the raw page
    uncounted; they differ in how they know (vm_pgoff rule, page_is_anon) and in what fork
    does to the raw pte (before the seed it is copied verbatim, still young; from the seed it
    is write-protected and the child's copy is old). The child's writes copy again; the
    parent's write, at an offset into the page, then reuses its page in place (mapcount 1) in
    the seed, 2.6.15 and 2.6.26. Before the seed (ee498ed7) do_wp_page hands the unaligned
    fault address to page_is_anon(), which compares it with the page-aligned address of the
    page: the task's own COWed page is taken for a raw pte, copied again and never given back
    (the invariant check at the end names it).
    """
    ps = m.arch.page_size
    x = m.spawn("X")
    fd = x.open("/dev/mem")
    addr = obs.do("mmap", lambda: x.mmap(2 * ps, RW, MAP_PRIVATE, fd, offset=6 * ps), x)
    if addr is FAILED:
        return
    obs.do("X writes page 0", lambda: x.write(addr, PAYLOAD), x)
    obs.ptes("mem", x, addr, 2)
    cow = x.lookup(addr).pfn if x.alive else None
    obs.page("COWed", cow)
    child = obs.do("fork", lambda: x.fork("child"), x)
    obs.ptes("mem", x, addr, 2)
    obs.page("COWed", cow)
    obs.page("firmware pfn 7", 7)
    if child is not FAILED:
        obs.ptes("mem", child, addr, 2)
        obs.rss(child)
        obs.do("child writes page 0", lambda: child.write(addr, b"child"), child)
        obs.do("child writes page 1", lambda: child.write(addr + ps, b"child"), child)
        obs.ptes("mem", child, addr, 2)
        obs.rss(child)
    obs.page("COWed", cow)
    obs.do("X writes page 0 again", lambda: x.write(addr + 8, PAYLOAD), x)
    obs.ptes("mem", x, addr)
    obs.fact("X kept its page", x.lookup(addr).pfn == cow if x.alive else "n/a")
    obs.rss(x)
    if child is not FAILED:
        obs.do("child exits", child.exit, child)
    obs.page("COWed", cow)
    obs.do("X exits", x.exit, x)


@scenario(
    "gup_no_vm_io",
    "get_user_pages on PFN vmas whose driver cleared VM_IO",
    ("get_user_pages", "follow_page", "vm_normal_page", "handle_mm_fault"),
)
def gup_no_vm_io(m: Machine, obs: Observer) -> None:
    """Two drivers clear VM_IO after remap_pfn_range: one maps device memory, one a window over
    RAM pages with struct pages. A task maps both (and /dev/mem, which keeps VM_IO, as a
    control) and calls get_user_pages on each.

    /dev/mem: EFAULT in every era (VM_IO). Seed: both others spin (follow_page returns NULL
    for the raw pte, the fault "succeeds", again; pfnmap raises KernelLivelock). 2.6.15 and
    2.6.26 (rc6, 1ff80389): refused, EFAULT. Before the seed: follow_page trusts pfn_valid, so
    the device memory spins and the RAM window is handed out, each page pinned with a
    reference on a page the mapping never counted.
    """
    ps = m.arch.page_size
    fb = _fb(m)
    m.add_inode(RemapDriver(m, "/dev/bar", fb, io=False, clear_vm_io=True))
    m.add_inode(RemapDriver(m, "/dev/rambuf", ram_window(m, 8, 2), io=False, clear_vm_io=True))
    x = m.spawn("X")
    mem = obs.do(
        "map /dev/mem",
        lambda: x.mmap(ps, RW, MAP_SHARED, x.open("/dev/mem"), offset=fb.start),
        x,
    )
    bar = obs.do("map the BAR", lambda: x.mmap(2 * ps, RW, MAP_SHARED, x.open("/dev/bar")), x)
    buf = obs.do(
        "map the RAM buffer", lambda: x.mmap(2 * ps, RW, MAP_SHARED, x.open("/dev/rambuf")), x
    )
    obs.at("mapped")
    for label, addr in (("mem", mem), ("bar", bar), ("rambuf", buf)):
        if addr is not FAILED:
            obs.vma(label, x, addr)
    if mem is not FAILED:
        obs.do("gup /dev/mem (VM_IO)", lambda: x.get_user_pages(mem, 1), x)
    if bar is not FAILED:
        obs.do("gup the BAR (no VM_IO)", lambda: x.get_user_pages(bar, 2), x)
    if buf is not FAILED:
        pages = obs.do("gup the RAM buffer (no VM_IO)", lambda: x.get_user_pages(buf, 2), x)
        obs.fact("pages pinned", [f"{p:#x}" for p in pages] if pages is not FAILED else [])
        obs.page("buffer pfn 8", 8)
        if pages:
            obs.do("put the pages", lambda: x.put_pages(pages), x)
            obs.page("buffer pfn 8", 8)
    obs.do("X exits", x.exit, x)


@scenario(
    "insert_page_fork",
    "a driver hands its own RAM pages to a shared vma; the task forks",
    ("vm_insert_page", "remap_pfn_range", "copy_page_range", "zap_pte_range"),
)
def insert_page_fork(m: Machine, obs: Observer) -> None:
    """A driver maps three of its own (non-contiguous, not reserved) RAM pages into a MAP_SHARED
    vma; the task reads one, forks, the child reads it too, and both exit.

    2.6.15 and 2.6.26: vm_insert_page(), real file pages (reference, mapcount, file_rss), and
    VM_INSERTPAGE makes fork copy them. Seed (no vm_insert_page: one remap_pfn_range per page):
    each call sets vm_pgoff to its page's pfn, counted from vm_start, so no pte fits the rule
    and every page is taken for a COWed page: fork counts them, the child's exit uncounts them,
    and the parent's exit finds mapcount 0 (BUG, in page_remove_rmap). Before the seed:
    VM_UNPAGED, nothing counted, nothing broken.
    """
    ps = m.arch.page_size
    driver = m.add_inode(PageDriver(m, "/dev/ring", 3))
    x = m.spawn("X")
    fd = x.open("/dev/ring")
    addr = obs.do("mmap", lambda: x.mmap(3 * ps, RW, MAP_SHARED, fd), x)
    if addr is FAILED:
        return
    obs.vma("ring", x, addr)
    obs.ptes("ring", x, addr, 3)
    obs.rss(x)
    for i, pfn in enumerate(driver.pages):
        obs.page(f"ring page {i}", pfn)
    want = b"/dev/ring page 1\n"
    got = obs.do("X reads page 1", lambda: x.read(addr + ps, len(want)), x)
    obs.fact("X reads the driver's page", got == want)
    child = obs.do("fork", lambda: x.fork("child"), x)
    if child is not FAILED:
        obs.ptes("ring", child, addr, 3)
        obs.rss(child)
        for i, pfn in enumerate(driver.pages):
            obs.page(f"ring page {i}", pfn)
        got = obs.do("child reads page 1", lambda: child.read(addr + ps, len(want)), child)
        obs.fact("the child reads the driver's page", got == want)
        obs.do("child exits", child.exit, child)
        for i, pfn in enumerate(driver.pages):
            obs.page(f"ring page {i}", pfn)
    obs.do("X exits", x.exit, x)


@scenario(
    "mixedmap_cow",
    "a VM_MIXEDMAP vma of RAM pages and device pfns, written and forked",
    ("vm_insert_mixed", "vm_normal_page", "do_wp_page", "copy_one_pte"),
)
def mixedmap_cow(m: Machine, obs: Observer) -> None:
    """A 2.6.26 VM_MIXEDMAP driver maps RAM page 0, device page 3 and RAM page 1 into a private
    writable vma with vm_insert_mixed(); the task writes the first two pages, forks, and both
    exit.

    2.6.26 with a special bit (x86): every inserted pte is special, nothing is counted, and
    both COWs copy through the user address. 2.6.26 without one (sparc64): the RAM pages are
    refcounted file pages (insert_page, file_rss), the COW of RAM copies from the struct page
    and moves the count from file_rss to anon_rss. Earlier eras: there is no vm_insert_mixed,
    the mmap fails (ENOSYS in pfnmap).
    """
    ps = m.arch.page_size
    driver = m.add_inode(MixedDriver(m, "/dev/xip", _fb(m), [("ram", 0), ("io", 3), ("ram", 1)]))
    x = m.spawn("X")
    fd = x.open("/dev/xip")
    addr = obs.do("mmap", lambda: x.mmap(3 * ps, RW, MAP_PRIVATE, fd), x)
    if addr is FAILED:
        return
    obs.vma("xip", x, addr)
    obs.ptes("xip", x, addr, 3)
    obs.rss(x)
    obs.page("xip ram page 0", driver.pages[0])
    obs.do("X writes page 0", lambda: x.write(addr + 16, PAYLOAD), x)
    obs.do("X writes page 1", lambda: x.write(addr + ps + 16, PAYLOAD), x)
    obs.ptes("xip", x, addr, 3)
    obs.rss(x)
    obs.page("xip ram page 0", driver.pages[0])
    child = obs.do("fork", lambda: x.fork("child"), x)
    if child is not FAILED:
        obs.ptes("xip", child, addr, 3)
        obs.rss(child)
        obs.do("child exits", child.exit, child)
    obs.do("X exits", x.exit, x)


@scenario(
    "zero_page",
    "anonymous memory read before it is written, across a fork",
    ("do_anonymous_page", "vm_normal_page", "copy_page_range", "do_wp_page", "zap_pte_range"),
)
def zero_page(m: Machine, obs: Observer) -> None:
    """A task reads two pages of fresh anonymous memory, forks, and writes one of them.

    seed, 2.6.15: each read maps the ZERO_PAGE as a normal, refcounted page (file_rss 2); fork
    copies the ptes only if the vma has an anon_vma (it has none: the child refaults). 2.6.26:
    no ZERO_PAGE (2.6.24); each read gets its own zeroed anonymous page. 6.1: the zero page is
    back (2.6.32) as a special pte that vm_normal_page() calls "zero page": no reference, no
    rss; the write replaces it with a fresh zeroed page (wp_page_copy).
    """
    ps = m.arch.page_size
    x = m.spawn("reader")
    addr = obs.do("mmap", lambda: x.mmap(2 * ps), x)
    if addr is FAILED:
        return
    obs.do("read both pages", lambda: x.read(addr, 2 * ps), x)
    obs.ptes("anon", x, addr, 2)
    obs.rss(x)
    obs.page("zero page", m.phys.zero_pfn)
    child = obs.do("fork", lambda: x.fork("child"), x)
    if child is not FAILED:
        obs.ptes("anon", child, addr, 2)
    obs.do("write page 1", lambda: x.write(addr + ps, PAYLOAD), x)
    obs.ptes("anon", x, addr, 2)
    obs.rss(x)
    if child is not FAILED:
        obs.do("child exits", child.exit, child)
    obs.do("reader exits", x.exit, x)
