"""``pfnmap decode --era 6.1``: real Debian 6.1 page tables, and PROT_NONE frames under L1TF.

The QEMU fixture tests/fixtures/qemu/x86-64 is a Debian 6.1.0 guest (see docs/qemu-fixtures.rst):
its ptes carry 6.1's software bits, and its meta.json holds the guest's own /proc/self/maps. Its
guest program maps no PROT_NONE page, no PCI BAR and touches no [vvar] page, so the L1TF tests
build their ptes with the 6.1 emulator instead (the oracle there is pgtable-invert.h: pte_pfn()
of a PROT_NONE pte un-inverts PTE_PFN_MASK, and 2-level x86 inverts nothing).
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import pytest

from pfnmap import MAP_PRIVATE, MAP_SHARED, PROT_NONE, PROT_READ, PROT_WRITE, Machine, Verdict
from pfnmap.cli.main import main
from pfnmap.decode.dump import machine_hints
from pfnmap.decode.formats import SCHEMA, record_of
from pfnmap.decode.image import machine_image
from pfnmap.decode.walker import Leaf, Walker, leaves
from pfnmap.plugins.manager import default_registry

FIXTURE = Path(__file__).parent / "fixtures" / "qemu" / "x86-64"
META = json.loads((FIXTURE / "meta.json").read_text())
REGIONS = {k: (int(v["start"], 16), int(v["size"], 16)) for k, v in META["guest"]["maps"].items()}


@pytest.fixture(scope="module")
def core(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("qemu61") / "pt.elf"
    path.write_bytes(lzma.decompress((FIXTURE / META["core"]).read_bytes()))
    maps = path.with_name("maps")
    maps.write_text("\n".join(META["guest"]["proc_maps"]) + "\n")
    return path


def _decode(core: Path, capsys, *extra: str) -> tuple[list[dict], str]:
    argv = ["decode", str(core), "--arch", "x86-64", "--root", META["root"], "--format", "jsonl"]
    capsys.readouterr()
    rc = main([*argv, *extra])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return [json.loads(line) for line in out.splitlines()], err


def _region(rec: dict) -> str | None:
    va = int(rec["va"], 16)
    for name, (start, size) in REGIONS.items():
        if start <= va < start + size:
            return name
    return None


def test_fixture_is_a_6_1_kernel() -> None:
    assert META["kernel_version"].startswith("6.1.") and META["arch"] == "x86-64"


def test_6_1_names_every_software_bit_of_real_ptes(core: Path, capsys) -> None:
    """pgtable_types.h of 6.1: the /dev/mem ptes (remap_pfn_range) are _PAGE_SPECIAL, the
    anonymous ones _PAGE_SOFT_DIRTY; under --era 6.1 no flag is a bare "avl=" any more (the
    2.6.15 layout shows them as avl=0x1 and avl=0x4)."""
    new, _ = _decode(core, capsys, "--era", "6.1")
    old, _ = _decode(core, capsys)
    leaves61 = [r for r in new if r["record"] == "leaf"]
    assert not any("avl=" in r["flags"] for r in leaves61)
    assert any("avl=" in r["flags"] for r in old if r["record"] == "leaf")
    by_region: dict[str, set[str]] = {}
    for r in leaves61:
        by_region.setdefault(_region(r) or "", set()).update(r["flags"].split())
    for name in ("vga", "rom", "zero"):
        assert "special" in by_region[name], name
    assert "soft_dirty" in by_region["anon"] and "special" not in by_region["anon"]
    assert new[0]["schema"] == SCHEMA == "pfnmap.decode.walker/2"
    assert [r["raw"] for r in leaves61] == [r["raw"] for r in old if r["record"] == "leaf"]


@pytest.mark.parametrize(
    ("fmt", "name"), [("qemu-tlb", "info_tlb.txt.xz"), ("qemu-mem", "info_mem.txt.xz")]
)
def test_qemu_text_does_not_depend_on_the_era(core: Path, capsys, fmt: str, name: str) -> None:
    """QEMU prints hardware bits: under --era 6.1 (bit 7 is "pat", not "protnone") the text
    is still QEMU's own, line for line."""
    argv = ["decode", str(core), "--arch", "x86-64", "--root", META["root"], "--format", fmt]
    capsys.readouterr()
    assert main([*argv, "--era", "6.1"]) == 0
    got = capsys.readouterr().out.splitlines()
    assert got == lzma.decompress((FIXTURE / name).read_bytes()).decode().splitlines()


def test_6_1_verdicts_of_the_guest_s_mappings(core: Path, capsys) -> None:
    """vm_normal_page() of 6.1 for each mapping of the guest, from its own /proc/self/maps
    (offsets in bytes; /dev/mem's flags inferred from the path): /dev/mem shared and private
    are raw (special), the COWed /dev/mem page and the anonymous pages are pages, the zero page
    is "zero page" once its pfn is known and "unknown" (not "bad pte") before."""
    maps = str(core.with_name("maps"))
    ram = f"0-{META['ram_bytes']:#x}"
    recs, err = _decode(core, capsys, "--era", "6.1", "--maps", maps, "--ram", ram)
    assert "note: " in err and "/dev/mem" in err
    verdicts: dict[str, set] = {}
    zero_pfns = set()
    for r in recs:
        if r["record"] == "leaf" and _region(r):
            verdicts.setdefault(_region(r), set()).add(r["verdict"])
            if _region(r) == "zero":
                zero_pfns.add(int(r["pa"], 16) >> 12)
    assert verdicts["vga"] == {"raw pfn"} and verdicts["rom"] == {"raw pfn"}
    assert verdicts["priv"] == {"raw pfn", "COWed page in a PFN vma"}
    assert verdicts["anon"] == {"normal page"}
    assert verdicts["zero"] == {"unknown"}
    assert verdicts["thp"] == {None}  # pmd leaves: vm_normal_page looks at ptes only
    (zero,) = zero_pfns  # every zero-page pte maps the one shared zero page
    recs, _ = _decode(core, capsys, "--era", "6.1", "--maps", maps, "--ram", ram,
                      "--zero-pfn", hex(zero))  # fmt: skip
    got = {r["verdict"] for r in recs if r["record"] == "leaf" and _region(r) == "zero"}
    assert got == {"zero page"}


def test_bad_hint_files_are_one_line_and_exit_1(core: Path, tmp_path: Path, capsys) -> None:
    """A foreign maps line or a maps file given as --vmas: one clear line, non-zero exit."""
    bad = tmp_path / "bad.maps"
    bad.write_text("\n".join(META["guest"]["proc_maps"][:3]) + "\nnot a maps line\n")
    argv = ["decode", str(core), "--arch", "x86-64", "--root", META["root"]]
    capsys.readouterr()
    assert main([*argv, "--maps", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{bad}:4: not a maps or smaps line" in err[0]
    assert main([*argv, "--vmas", str(core.with_name("maps"))]) == 1
    err = capsys.readouterr().err
    assert "is a /proc/PID/maps line" in err and "--maps" in err and "Traceback" not in err


# PROT_NONE under L1TF --------------------------------------------------------------------------
X86 = ("x86-64", "x86-la57", "x86-pae", "x86-2level")


def _protnone_machine(name: str):
    m = Machine(name, "64M", era="6.1")
    p = m.spawn("l1tf")
    ps = m.arch.page_size
    addr = p.mmap(4 * ps)
    p.write(addr, b"x" * (4 * ps))
    p.mprotect(addr + ps, 2 * ps, PROT_NONE)
    return m, p, addr


@pytest.mark.parametrize("name", X86)
def test_protnone_pa_is_the_real_frame(name: str) -> None:
    """The decoder shows a PROT_NONE pte's raw entry as stored and, as its PA, the frame the
    kernel's pte_pfn() reads: the emulator's pfn (the guest's /proc/PID/pagemap in a real dump).
    The 2.6.15 description of the same bytes shows the inverted address."""
    m, p, addr = _protnone_machine(name)
    arch = m.arch
    ps = arch.page_size
    image = machine_image(m)
    got = {
        rec.va: rec
        for rec in leaves(Walker(image, arch, p.mm.pgd), arch, machine_hints(m, p))
        if isinstance(rec, Leaf)
    }
    inverted = arch.pte_format.width_bits == 64
    for k in range(4):
        va = addr + k * ps
        info = p.lookup(va)
        rec = got[va]
        assert rec.raw == info.raw and rec.pa == info.pfn << arch.page_shift
        assert rec.present and rec.verdict == "normal page"
        kind = record_of(arch, rec)["kind"]
        assert kind == ("protnone" if k in (1, 2) else None)
        if k in (1, 2):
            assert (rec.raw & arch.PTE_MASK != rec.pa) == inverted
    old = default_registry().get(name)
    raw_pa = {
        rec.va: rec.pa for rec in leaves(Walker(image, old, p.mm.pgd), old) if isinstance(rec, Leaf)
    }
    assert (raw_pa[addr + ps] != got[addr + ps].pa) == inverted


@pytest.mark.parametrize("name", X86)
def test_protnone_ranges_and_grouped_walk_agree(name: str) -> None:
    """The un-inverted PAs keep physically contiguous PROT_NONE pages one range, and the
    grouped (bulk) walk gives the same PAs as the per-table walk."""
    m, p, addr = _protnone_machine(name)
    arch = m.arch
    image = machine_image(m)
    flat = [r for r in leaves(Walker(image, arch, p.mm.pgd), arch) if isinstance(r, Leaf)]
    grouped = [
        r for r in leaves(Walker(image, arch, p.mm.pgd, grouped=True), arch) if isinstance(r, Leaf)
    ]
    assert [(r.va, r.pa) for r in flat] == [(r.va, r.pa) for r in grouped]
    pfns = [p.lookup(addr + k * arch.page_size).pfn for k in range(4)]
    assert [
        r.pa >> arch.page_shift for r in flat if addr <= r.va < addr + 4 * arch.page_size
    ] == pfns


def test_6_1_dump_round_trip(capsys, tmp_path: Path, monkeypatch) -> None:
    """A 6.1 machine dumped and decoded with the dump's own command line: every pte's verdict
    is the emulator's (zero page, /dev/mem, COW, PROT_NONE), and the command carries --era 6.1
    and --zero-pfn."""
    from pfnmap.decode.dump import dump_machine

    m = Machine("x86-64", "16M", era="6.1")
    arch = m.arch
    p = m.spawn("six")
    ps = arch.page_size
    zero = p.mmap(2 * ps)
    p.read(zero, 1)
    fd = p.open("/dev/mem")
    dev = p.mmap(2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, offset=0xF0000000)
    p.write(dev, b"cow")
    shared = p.mmap(ps, PROT_READ, MAP_SHARED, fd, offset=0xF0001000)
    anon = p.mmap(2 * ps)
    p.write(anon, b"a" * 2 * ps)
    p.mprotect(anon, ps, PROT_NONE)
    want = {}
    for vma in p.vmas:
        for va, _pte in p.ptes(vma):
            info = p.lookup(va)
            want[va] = (info.pfn, None if info.verdict is None else str(info.verdict))
    assert want[zero][1] == Verdict.ZERO and want[shared][1] == Verdict.RAW_PFN
    out = tmp_path / "six.img"
    info = dump_machine(m, out, "raw")
    command = next(q["decode"] for q in info["processes"] if q["pid"] == p.pid)
    assert "--era 6.1" in command and f"--zero-pfn {m.phys.zero_pfn:#x}" in command
    argv = command.split()[1:] + ["--format", "jsonl"]
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(argv) == 0
    recs = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    got = {
        int(r["va"], 16): (int(r["pa"], 16) >> 12, r["verdict"])
        for r in recs
        if r["record"] == "leaf"
    }
    assert got == want
