"""Physical images: raw files, ELF cores (written by write_elf_core, read with pyelftools), and
an emulated machine's memory."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfnmap import Machine
from pfnmap.decode.image import (
    ELFCLASS32,
    ELFCLASS64,
    ImageError,
    OutsideImage,
    PhysImage,
    Segment,
    check_elf_arch,
    machine_image,
    open_elf,
    open_image,
    open_raw,
    write_elf_core,
)
from pfnmap.errors import UnknownArch
from pfnmap.plugins.manager import default_registry

PAGE = 4096


def pattern(n: int, salt: int = 0) -> bytes:
    return bytes((i * 7 + salt * 13 + 1) & 0xFF for i in range(n))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# raw -----------------------------------------------------------------------------------------
def test_raw_image_reads_from_its_base(tmp_path: Path) -> None:
    data = pattern(3 * PAGE)
    f = tmp_path / "mem.raw"
    f.write_bytes(data)
    with open_raw(f, base=0x100000) as img:
        assert img.ranges() == [(0x100000, 0x100000 + 3 * PAGE)]
        assert img.read(0x100000 + 5, 10) == data[5:15]
        arr = img.table(0x101000, 512, "<u8")
        assert arr.tobytes() == data[PAGE : 2 * PAGE]
        assert not arr.flags.writeable
        assert not arr.flags.owndata  # a view of the mapping, not a copy
        with pytest.raises(OutsideImage) as exc:
            img.read(0xFF000, 8)
        assert exc.value.kind == "outside"
        with pytest.raises(OutsideImage) as exc:
            img.table(0x102800, 512, "<u8")  # runs past the end
        assert exc.value.kind == "outside"
        assert "0x103000" in str(exc.value)


def test_raw_image_base_must_be_page_aligned(tmp_path: Path) -> None:
    f = tmp_path / "mem.raw"
    f.write_bytes(bytes(PAGE))
    with pytest.raises(ImageError, match="multiple of 4096"):
        open_raw(f, base=0x800)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: p.mkdir(), "directory"),
    ],
)
def test_files_that_cannot_be_images(tmp_path: Path, setup, message: str) -> None:
    f = tmp_path / "img"
    setup(f)
    with pytest.raises(ImageError, match=message):
        open_image(f)


# ELF writing and reading ----------------------------------------------------------------------
BUILTIN_CORE_ARCHES = ["sparc64", "x86-2level", "x86-64", "x86-la57", "x86-pae"]


@pytest.mark.parametrize("arch", BUILTIN_CORE_ARCHES)
def test_elf_core_round_trip_per_arch(tmp_path: Path, arch: str) -> None:
    a = default_registry().get(arch)
    em, cls, byteorder = a.elf_machine, a.elf_class, a.byteorder
    f = tmp_path / "core.elf"
    segs = [(0x2000, pattern(2 * PAGE, 1)), (0x100000, pattern(PAGE, 2))]
    write_elf_core(f, segs, arch, notes=[("PFNMAP", 7, b"hello")])
    with f.open("rb") as fh:
        elf = ELFFile(fh)
        assert elf.header["e_type"] == "ET_CORE"
        assert elf.elfclass == (64 if cls == ELFCLASS64 else 32)
        assert elf.little_endian == (byteorder == "little")
        phdrs = [s.header for s in elf.iter_segments()]
        assert phdrs[0]["p_type"] == "PT_NOTE"
        loads = [h for h in phdrs if h["p_type"] == "PT_LOAD"]
        assert [(h["p_paddr"], h["p_filesz"], h["p_memsz"], h["p_vaddr"]) for h in loads] == [
            (0x2000, 2 * PAGE, 2 * PAGE, 0),
            (0x100000, PAGE, PAGE, 0),
        ]
        notes = next(iter(elf.iter_segments())).iter_notes()
        note = next(iter(notes))
        assert note["n_name"] == "PFNMAP" and note["n_type"] == 7
    with open_image(f) as img:
        assert img.kind == "elf"
        assert img.elf_machine == em
        assert img.read(0x2000, 2 * PAGE) == segs[0][1]
        assert img.read(0x100000, PAGE) == segs[1][1]
        with pytest.raises(OutsideImage):
            img.read(0x4000, 1)
        check_elf_arch(img, default_registry().get(arch))


def test_i386_core_above_4g_becomes_elfclass64(tmp_path: Path) -> None:
    f = tmp_path / "core.elf"
    write_elf_core(f, [(0x1_0000_0000, bytes(PAGE))], "x86-pae")
    with f.open("rb") as fh:
        assert ELFFile(fh).elfclass == 64
    with pytest.raises(ValueError, match="ELFCLASS32"):
        write_elf_core(f, [(0x1_0000_0000, bytes(PAGE))], "x86-pae", elfclass=ELFCLASS32)


def test_writer_refuses_overlaps_and_unknown_arch_names(tmp_path: Path) -> None:
    f = tmp_path / "core.elf"
    with pytest.raises(ValueError, match="overlap"):
        write_elf_core(f, [(0, bytes(2 * PAGE)), (PAGE, bytes(PAGE))])
    with pytest.raises(UnknownArch, match="vax"):
        write_elf_core(f, [(0, bytes(PAGE))], "vax")


@st.composite
def segment_sets(draw):
    """Non-overlapping (paddr, data) segments, some adjacent."""
    out = []
    addr = draw(st.integers(0, 64)) * PAGE
    for i in range(draw(st.integers(1, 5))):
        n = draw(st.integers(1, 3)) * PAGE
        out.append((addr, pattern(n, i)))
        addr += n + draw(st.sampled_from([0, 0, PAGE, 16 * PAGE]))
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(segs=segment_sets(), arch=st.sampled_from(BUILTIN_CORE_ARCHES), data=st.data())
def test_elf_reads_equal_written_bytes(tmp_path: Path, segs, arch: str, data) -> None:
    f = tmp_path / "core.elf"
    write_elf_core(f, segs, arch)
    flat = {}
    for paddr, blob in segs:
        for i, b in enumerate(blob):
            flat[paddr + i] = b
    lo, hi = segs[0][0], segs[-1][0] + len(segs[-1][1])
    with open_elf(f) as img:
        for _ in range(10):
            a = data.draw(st.integers(lo, hi - 1))
            n = data.draw(st.integers(1, 3 * PAGE))
            want = [flat.get(x) for x in range(a, a + n)]
            if None in want:
                with pytest.raises(OutsideImage):
                    img.read(a, n)
            else:
                assert img.read(a, n) == bytes(want)  # across adjacent segments too


def _patch_phdr(path: Path, index: int, field: str, value: int) -> None:
    """Patch one field of an ELF64 little-endian program header."""
    offsets = {"p_type": 0, "p_offset": 8, "p_paddr": 24, "p_filesz": 32, "p_memsz": 40}
    raw = bytearray(path.read_bytes())
    phoff = struct.unpack_from("<Q", raw, 32)[0]
    struct.pack_into(
        "<Q" if field != "p_type" else "<I", raw, phoff + 56 * index + offsets[field], value
    )
    path.write_bytes(bytes(raw))


def test_bytes_beyond_filesz_read_as_zeros(tmp_path: Path) -> None:
    f = tmp_path / "core.elf"
    write_elf_core(f, [(0, pattern(PAGE))])
    _patch_phdr(f, 1, "p_memsz", 3 * PAGE)  # kdump-style: declared, not in the file
    with open_elf(f) as img:
        assert img.ranges() == [(0, 3 * PAGE)]
        assert img.read(PAGE - 4, 8) == pattern(PAGE)[-4:] + bytes(4)
        assert not img.table(2 * PAGE, 512, "<u8").any()


def test_truncated_core_opens_and_reports_the_cut(tmp_path: Path) -> None:
    f = tmp_path / "core.elf"
    write_elf_core(f, [(0, pattern(4 * PAGE))])
    before = f.read_bytes()
    f.write_bytes(before[: len(before) - 2 * PAGE - 100])
    with open_elf(f) as img:
        assert img.read(0, 8) == pattern(8)
        with pytest.raises(OutsideImage) as exc:
            img.table(2 * PAGE, 512, "<u8")
        assert exc.value.kind == "truncated"
        assert "cut off" in str(exc.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda raw: raw[:30], "damaged ELF header"),
        (lambda raw: raw[:16] + b"\x02\x00" + raw[18:], "ET_EXEC, not a core"),
        (lambda raw: b"\x7fELF" + bytes(60), "damaged ELF header"),
    ],
)
def test_damaged_or_foreign_elf_files(tmp_path: Path, damage, message: str) -> None:
    f = tmp_path / "core.elf"
    write_elf_core(f, [(0, bytes(PAGE))])
    f.write_bytes(damage(f.read_bytes()))
    with pytest.raises(ImageError, match=message):
        open_image(f)


def test_process_core_without_physical_addresses_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "core.elf"
    write_elf_core(f, [(0, bytes(PAGE)), (0x10000, bytes(PAGE))])
    _patch_phdr(f, 2, "p_paddr", 0)
    with pytest.raises(ImageError, match="process core"):
        open_elf(f)


def test_core_of_another_machine_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "core.elf"
    write_elf_core(f, [(0, bytes(PAGE))], "x86-pae")
    registry = default_registry()
    with open_elf(f) as img:
        check_elf_arch(img, registry.get("x86-2level"))
        with pytest.raises(ImageError, match=r"EM_386 core.*x86-2level or x86-pae"):
            check_elf_arch(img, registry.get("x86-64"), registry.arches.values())
        with pytest.raises(ImageError, match="little-endian core but sparc64 is big"):
            check_elf_arch(img, registry.get("sparc64"))


def test_base_is_refused_for_an_elf_core(tmp_path: Path) -> None:
    f = tmp_path / "core.elf"
    write_elf_core(f, [(0, bytes(PAGE))])
    with pytest.raises(ImageError, match="--base is for raw images"):
        open_image(f, base=0x1000)
    with open_image(f, base=0x1000, kind="raw") as img:  # read as raw bytes on request
        assert img.read(0x1000, 4) == b"\x7fELF"


def test_reading_never_writes_the_input(tmp_path: Path) -> None:
    from pfnmap.decode.dump import build_scenario, dump_machine
    from pfnmap.decode.walker import Walker, leaves

    m = build_scenario("x86-64")
    dump_machine(m, tmp_path / "d.elf", "elf")
    before = digest(tmp_path / "d.elf")
    mtime = (tmp_path / "d.elf").stat().st_mtime_ns
    with open_image(tmp_path / "d.elf") as img:
        for proc in m.processes.values():
            list(leaves(Walker(img, m.arch, proc.mm.pgd), m.arch))
        arr = img.table(0, 512, "<u8")
        with pytest.raises(ValueError):
            arr[0] = 1
    assert digest(tmp_path / "d.elf") == before
    assert (tmp_path / "d.elf").stat().st_mtime_ns == mtime


# the machine as an image ----------------------------------------------------------------------
def test_machine_image_is_ram_and_io_read_only() -> None:
    m = Machine("x86-64", "16M")
    m.phys.write(0x5000, b"pfnmap")
    img = machine_image(m)
    io = m.phys.io_regions[0]
    assert img.ranges() == [(0, 16 << 20), (io.start, io.end)]
    assert img.read(0x5000, 6) == b"pfnmap"
    assert img.read(io.start + 100, 32) == m.phys.read(io.start + 100, 32)
    arr = img.table(0x5000, 4, "<u8")
    assert not arr.flags.writeable
    with pytest.raises(OutsideImage):
        img.read(16 << 20, 8)  # the hole between RAM and the device


def test_overlapping_segments_are_refused() -> None:
    with pytest.raises(ImageError, match="overlap"):
        PhysImage([Segment(0, 2 * PAGE), Segment(PAGE, PAGE)], bytes(3 * PAGE), "x", "raw")


def test_table_straddling_two_segments_is_copied_together(tmp_path: Path) -> None:
    f = tmp_path / "core.elf"
    a, b = pattern(PAGE, 3), pattern(PAGE, 4)
    write_elf_core(f, [(0, a), (PAGE, b)])
    with open_elf(f) as img:
        arr = img.table(PAGE // 2, 512, "<u8")
        assert arr.tobytes() == a[PAGE // 2 :] + b[: PAGE // 2]
        assert np.array_equal(arr, np.frombuffer(a[PAGE // 2 :] + b[: PAGE // 2], "<u8"))


# PN_XNUM, sniffing, LiME -------------------------------------------------------------------------
def _pn_xnum_core(path: Path, sh_info: int, phentsize: int = 56) -> None:
    """An ELF64 core whose e_phnum is PN_XNUM, with section header 0 holding ``sh_info``."""
    write_elf_core(path, [(0, bytes(PAGE))])
    raw = bytearray(path.read_bytes())
    shoff = len(raw)
    raw += struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, sh_info, 0, 0)  # Elf64_Shdr
    struct.pack_into("<Q", raw, 40, shoff)  # e_shoff
    struct.pack_into("<HHHH", raw, 54, phentsize, 0xFFFF, 64, 1)  # phentsize, phnum, shentsize..
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("sh_info", "phentsize", "message"),
    [
        (0xFFFFFFFF, 56, "says 4294967295 program headers"),
        (1 << 20, 56, "says 1048576 program headers"),
        (0xFFFFFFFF, 0, "e_phentsize is 0"),
    ],
)
def test_pn_xnum_with_an_absurd_count_is_one_line_at_once(
    tmp_path: Path, sh_info: int, phentsize: int, message: str, capsys
) -> None:
    """The ELF gABI's extended numbering: e_phnum == PN_XNUM puts the count in section 0's
    sh_info. A huge count used to make the reader walk billions of headers."""
    from pfnmap.cli.main import main

    f = tmp_path / "xnum.elf"
    _pn_xnum_core(f, sh_info, phentsize)
    with pytest.raises(ImageError, match=message):
        open_image(f)
    assert main(["decode", str(f), "--arch", "x86-64", "--root", "0"]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_pn_xnum_with_a_true_count_reads(tmp_path: Path) -> None:
    f = tmp_path / "xnum.elf"
    _pn_xnum_core(f, 2)  # the writer's PT_NOTE and PT_LOAD
    with open_image(f) as img:
        assert img.ranges() == [(0, PAGE)] and img.facts.header["phnum"] == 2


def test_auto_names_what_it_found_and_a_wrong_format_points_to_it(tmp_path: Path) -> None:
    from pfnmap.decode.image import write_kdump, write_lime

    write_kdump(tmp_path / "k", [(0, pattern(PAGE))], "x86-64", flattened=True)
    write_lime(tmp_path / "l", [(0x2000, pattern(PAGE))])
    write_elf_core(tmp_path / "e", [(0, pattern(PAGE))])
    (tmp_path / "r").write_bytes(pattern(PAGE))
    for name, kind, words in (
        ("k", "kdump", "flattened"),
        ("l", "lime", "LiME"),
        ("e", "elf", "ELF64 file"),
        ("r", "raw", "raw image"),
    ):
        with open_image(tmp_path / name) as img:
            assert img.kind == kind
            assert words in img.sniffed
    wrong = r"not an ELF file.*looks like a kdump.*--image-format kdump"
    with pytest.raises(ImageError, match=wrong):
        open_image(tmp_path / "k", kind="elf")
    with pytest.raises(ImageError, match="unknown image format 'qcow2'"):
        open_image(tmp_path / "k", kind="qcow2")
    with pytest.raises(ImageError, match="--base is for raw images"):
        open_image(tmp_path / "l", base=0x1000)


def test_a_plugin_adds_an_image_format_and_auto_finds_it(tmp_path: Path, capsys) -> None:
    """The pfnmap_image_formats hook: a plugin's format is listed after the built-ins, sniffed
    by auto, opened by name, and refused when it takes a built-in's name."""
    import warnings

    from pfnmap.cli.main import main
    from pfnmap.decode.image import image_formats
    from pfnmap.decode.images.registry import ImageFormat
    from pfnmap.errors import PluginWarning
    from pfnmap.plugins import hookimpl
    from pfnmap.plugins.manager import default_plugin_manager, make_plugin_manager

    def open_pad(path):
        data = Path(path).read_bytes()[16:]
        return PhysImage([Segment(0x2000, len(data))], data, str(path), "pad")

    def sniff_pad(head: bytes) -> str | None:
        return "PAD" if head[:4] == b"PAD!" else None

    class PadPlugin:
        @hookimpl
        def pfnmap_image_formats(self):
            return [
                ImageFormat(
                    "pad", "PAD image", open_pad, lambda h: "PAD" if h[:4] == b"PAD!" else None
                ),
                ImageFormat("raw", "a second raw", open_pad),
            ]

    pm = make_plugin_manager(autoload=False)
    pm.register(PadPlugin(), name="pad-plugin")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        formats = image_formats(pm)
    assert list(formats) == ["kdump", "lime", "elf", "pad", "raw"]
    assert formats["raw"].description.startswith("raw image")  # the built-in kept its name
    assert any(issubclass(w.category, PluginWarning) and "already provided" in str(w.message)
               for w in caught)  # fmt: skip
    f = tmp_path / "img.pad"
    f.write_bytes(b"PAD!" + bytes(12) + pattern(PAGE))
    with open_image(f, formats=formats) as img:
        assert img.kind == "pad" and img.read(0x2000, PAGE) == pattern(PAGE)
    # and through the command line, with the plugin on the default manager
    default = default_plugin_manager()
    default.register(PadPlugin(), name="pad-plugin")
    try:
        assert main(["info", str(f), "--json"]) == 0
        out = capsys.readouterr().out
        assert '"format": "pad"' in out and '"sniffed": "PAD"' in out
    finally:
        default.unregister(name="pad-plugin")
