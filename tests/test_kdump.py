"""kdump-compressed files: plain and flattened, every codec, both word sizes and byte orders,
pages left out, and damaged files.

The layouts follow makedumpfile's diskdump_mod.h / IMPLEMENTATION and QEMU 7.2's
include/sysemu/dump.h (DiskDumpHeader32/64, KdumpSubHeader32/64, PageDescriptor). Where a
real tool is the oracle: ``makedumpfile -R`` (makedumpfile 1.7) must rebuild from pfnmap's
flattened file exactly the plain file pfnmap writes (skipped when makedumpfile is absent).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from decode_synth import Tables

from pfnmap.cli.main import main
from pfnmap.decode.image import (
    NOT_DUMPED,
    TRUNCATED,
    UNREADABLE,
    ImageError,
    OutsideImage,
    open_image,
    write_kdump,
)
from pfnmap.decode.images import kdump as kd
from pfnmap.decode.images.codecs import CODEC_FLAGS
from pfnmap.decode.images.flat import FLAT_HEADER_SIZE
from pfnmap.decode.walker import NOT_DUMPED as WALK_NOT_DUMPED
from pfnmap.decode.walker import UNREADABLE as WALK_UNREADABLE
from pfnmap.decode.walker import Problem, Walker, leaves
from pfnmap.plugins.manager import default_registry

ARCHES = default_registry().names()
CODECS = ["zlib", "lzo", "snappy", "zstd", "none"]
_CODEC_MODULES = {"lzo": "lzallright", "snappy": "cramjam", "zstd": "zstandard"}


def _need(codec: str) -> None:
    if codec in _CODEC_MODULES:
        pytest.importorskip(_CODEC_MODULES[codec], reason=f"{codec} codec not installed")


def _pages(page: int, n: int, seed: int = 1) -> bytes:
    """``n`` pages of varied content: text-like, random-ish, and all-zero ones."""
    out = bytearray()
    for i in range(n):
        if i % 5 == 3:
            out += bytes(page)
        elif i % 5 == 4:
            out += bytes((i * 131 + k * 7 + seed) & 0xFF for k in range(page))
        else:
            out += (f"page {i} of {n} ".encode() * page)[:page]
    return bytes(out)


@pytest.mark.parametrize("flattened", [False, True], ids=["plain", "flat"])
@pytest.mark.parametrize("codec", CODECS)
def test_written_pages_read_back(tmp_path: Path, codec: str, flattened: bool) -> None:
    _need(codec)
    data = _pages(4096, 40)
    segs = [(0x1000, data[: 20 * 4096]), (0x100000, data[20 * 4096 :])]
    path = tmp_path / "d.kdump"
    write_kdump(path, segs, "x86-64", compression=codec, flattened=flattened)
    with open_image(path) as img:
        assert img.kind == "kdump"
        assert ("flattened" in img.facts.format) == flattened
        assert img.ranges() == [(0x1000, 0x15000), (0x100000, 0x114000)]
        for start, blob in segs:
            assert img.read(start, len(blob)) == blob
        # a read across a page boundary and an unaligned one
        assert img.read(0x1FF0, 0x20) == segs[0][1][0xFF0:0x1010]
        with pytest.raises(OutsideImage) as exc:
            img.read(0x15000, 8)
        assert exc.value.kind == "outside"
        header = img.facts.header
        assert header["header_version"] == 6 and header["block_size"] == 4096
        assert header["dumped_pages"] == header["ram_pages"] == 40
        assert header["status"] == CODEC_FLAGS.get(codec, 0)


@pytest.mark.parametrize("name", ARCHES)
def test_each_arch_gets_its_word_size_and_byte_order(tmp_path: Path, name: str) -> None:
    arch = default_registry().get(name)
    page = arch.page_size
    data = _pages(page, 6, seed=3)
    write_kdump(tmp_path / "d", [(page * 4, data)], arch)
    raw = (tmp_path / "d").read_bytes()
    e = "<" if arch.byteorder == "little" else ">"
    word = 64 if arch.elf_class == 2 else 32
    # block_size sits after the timeval: at 416 (32-bit) or 428 (64-bit), QEMU's layout
    assert struct.unpack_from(f"{e}I", raw, kd.HEADER_TAIL[word] + 4)[0] == page
    with open_image(tmp_path / "d") as img:
        assert img.facts.byteorder == arch.byteorder and img.facts.word_bits == word
        assert img.facts.uname_machine == arch.uname_machine
        assert img.read(page * 4, len(data)) == data


@pytest.mark.skipif(shutil.which("makedumpfile") is None, reason="makedumpfile not installed")
def test_makedumpfile_rebuilds_the_flattened_file_into_the_plain_one(tmp_path: Path) -> None:
    """makedumpfile -R (rearrange a flattened stream) is the oracle of the flattened writer."""
    data = _pages(4096, 30)
    write_kdump(tmp_path / "flat", [(0, data)], "x86-64", flattened=True)
    write_kdump(tmp_path / "plain", [(0, data)], "x86-64")
    with open(tmp_path / "flat", "rb") as src:
        subprocess.run(
            ["makedumpfile", "-R", str(tmp_path / "rebuilt")],
            stdin=src,
            check=True,
            capture_output=True,
        )
    rebuilt = (tmp_path / "rebuilt").read_bytes()
    assert rebuilt == (tmp_path / "plain").read_bytes()
    # and pfnmap's reading of the stream, holes (zeros) included, is what -R rebuilt
    from pfnmap.decode.images.base import map_file
    from pfnmap.decode.images.flat import FlatView

    f, mapping, size = map_file(tmp_path / "flat")
    try:
        view = FlatView(mapping, size, "flat")
        assert view.size == len(rebuilt) and view.read(0, view.size) == rebuilt
        assert view.read(500, 8000) == rebuilt[500:8500]  # across the sub header's hole
    finally:
        mapping.close()
        f.close()


def test_zero_pages_share_one_copy_and_excluded_ones_are_not_dumped(tmp_path: Path) -> None:
    data = _pages(4096, 10)  # pages 3 and 8 are all zero
    full, cut = tmp_path / "full", tmp_path / "cut"
    write_kdump(full, [(0, data)], "x86-64")
    write_kdump(cut, [(0, data)], "x86-64", drop_zero=True, exclude=lambda pfn: pfn == 6,
                dump_level=31)  # fmt: skip
    with open_image(full) as img:
        assert img.read(3 * 4096, 4096) == bytes(4096)
        assert img.facts.not_dumped == []
    with open_image(cut) as img:
        assert img.facts.header["dumped_pages"] == 7 and img.facts.header["ram_pages"] == 10
        assert img.facts.header["dump_level"] == 31
        assert img.facts.not_dumped == [(3 * 4096, 4 * 4096), (6 * 4096, 7 * 4096),
                                        (8 * 4096, 9 * 4096)]  # fmt: skip
        for pfn in (3, 6, 8):
            with pytest.raises(OutsideImage) as exc:
                img.read(pfn * 4096 + 8, 8)
            assert exc.value.kind == NOT_DUMPED  # never zeros
        assert img.read(7 * 4096, 4096) == data[7 * 4096 : 8 * 4096]


def test_a_walk_reports_a_table_that_was_not_dumped_per_entry(tmp_path: Path) -> None:
    arch = default_registry().get("x86-64")
    t = Tables(arch, 1 << 20)
    pte_tables = []
    for i in range(3):
        va = 0x40000000 + i * 0x200000
        t.set_leaf(va, 3, arch.pfn_pte(0x80 + i, arch.PAGE_SHARED))
        pte_tables.append(t.table_for(va, 3))
    excluded = pte_tables[1] // 4096
    write_kdump(tmp_path / "d", [(0, bytes(t.buf))], arch, exclude=lambda pfn: pfn == excluded)
    with open_image(tmp_path / "d") as img:
        items = list(leaves(Walker(img, arch, t.root), arch))
    problems = [i for i in items if isinstance(i, Problem)]
    assert [p.kind for p in problems] == [WALK_NOT_DUMPED]
    assert f"{pte_tables[1]:#x}" in problems[0].detail
    assert sorted(i.va for i in items if not isinstance(i, Problem)) == [0x40000000, 0x40400000]


def _patch(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))


def _layout(path: Path) -> tuple[int, int]:
    """(descriptor table offset, first page data offset) of a plain 64-bit LE file."""
    raw = path.read_bytes()
    bs, sub, bitmap = struct.unpack_from("<iiI", raw, 428)
    desc = (1 + sub + bitmap) * bs
    return desc, struct.unpack_from("<q", raw, desc)[0]


def test_damaged_pages_are_problems_of_their_own(tmp_path: Path) -> None:
    data = _pages(4096, 4)
    path = tmp_path / "d"
    write_kdump(path, [(0, data)], "x86-64")
    desc, first = _layout(path)
    # page 0: garbage instead of its zlib stream; page 1: a size larger than the block;
    # page 2: a descriptor pointing past the end of the file
    _patch(path, first, b"\xff" * 16)
    _patch(path, desc + 24 + 8, struct.pack("<I", 8192))
    _patch(path, desc + 48, struct.pack("<q", 1 << 40))
    with open_image(path) as img:
        for pfn, kind, words in (
            (0, UNREADABLE, "does not decompress"),
            (1, UNREADABLE, "8192 bytes"),
            (2, TRUNCATED, "past the end"),
        ):
            with pytest.raises(OutsideImage) as exc:
                img.read(pfn * 4096, 8)
            assert exc.value.kind == kind and words in str(exc.value), pfn
        assert img.read(4 * 4096 - 4096, 4096) == data[3 * 4096 :]


def test_a_walk_reports_an_undecompressable_table(tmp_path: Path) -> None:
    arch = default_registry().get("x86-64")
    t = Tables(arch, 1 << 18)
    t.set_leaf(0x1000, 3, arch.pfn_pte(0x30, arch.PAGE_SHARED))
    pte_table = t.table_for(0x1000, 3)
    path = tmp_path / "d"
    write_kdump(path, [(0, bytes(t.buf))], arch, drop_zero=True)
    desc, _ = _layout(path)
    with open_image(path) as img:
        rank = img.kdump.rank(pte_table // 4096)
    off = struct.unpack_from("<q", path.read_bytes(), desc + rank * 24)[0]
    _patch(path, off, b"\x00" * 8)
    with open_image(path) as img:
        items = list(Walker(img, arch, t.root))
    assert [i.kind for i in items if isinstance(i, Problem)] == [WALK_UNREADABLE]


def _zero_mapnr(raw: bytes) -> bytes:
    b = bytearray(raw)
    struct.pack_into("<I", b, 440, 0)  # disk_dump_header.max_mapnr
    struct.pack_into("<Q", b, 4096 + 96, 0)  # kdump_sub_header.max_mapnr_64
    return bytes(b)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:300], "inside the disk_dump_header"),
        (lambda b: b[:8] + struct.pack("<i", 0x7FFF0000) + b[12:], "header_version"),
        (lambda b: b[:428] + struct.pack("<i", 3000) + b[432:], "block size"),
        (lambda b: b[:436] + struct.pack("<I", 1 << 30) + b[440:], "do not fit"),
        (lambda b: b[:4096 + 96] + struct.pack("<Q", 1 << 40) + b[4096 + 104 :], "max_mapnr"),
        (lambda b: _zero_mapnr(b), "max_mapnr is 0"),
    ],
    ids=["truncated-header", "version", "block-size", "bitmap-blocks", "short-bitmap",
         "no-pages"],
)  # fmt: skip
def test_damaged_headers_are_one_line(tmp_path: Path, damage, message: str, capsys) -> None:
    good = tmp_path / "good"
    write_kdump(good, [(0, _pages(4096, 8))], "x86-64")
    bad = tmp_path / "bad"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(ImageError, match=message):
        open_image(bad)
    assert main(["decode", str(bad), "--arch", "x86-64", "--root", "0"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_the_input_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "d"
    write_kdump(path, [(0, _pages(4096, 8))], "x86-64", flattened=True)
    before = path.read_bytes()
    path.chmod(0o444)
    with open_image(path) as img:
        img.read(0, 8 * 4096)
    assert path.read_bytes() == before


# the flattened format ---------------------------------------------------------------------------
def _records(path: Path) -> list[tuple[int, bytes]]:
    raw = path.read_bytes()
    out, pos = [], FLAT_HEADER_SIZE
    while True:
        off, size = struct.unpack_from(">qq", raw, pos)
        if off == -1:
            return out
        out.append((off, raw[pos + 16 : pos + 16 + size]))
        pos += 16 + size


def _write_records(path: Path, head: bytes, records, end: bool = True) -> None:
    with open(path, "wb") as f:
        f.write(head)
        for off, data in records:
            f.write(struct.pack(">qq", off, len(data)) + data)
        if end:
            f.write(struct.pack(">qq", -1, -1))


def test_flattened_records_in_any_order_and_overlapping_later_wins(tmp_path: Path) -> None:
    data = _pages(4096, 12)
    src = tmp_path / "src"
    write_kdump(src, [(0, data)], "x86-64", flattened=True, compression="none")
    head = src.read_bytes()[:FLAT_HEADER_SIZE]
    recs = _records(src)
    # split every record in two, reverse their order, and add a stale copy of the first page
    # that a later record overwrites, as -R applies them
    pieces = []
    for off, blob in recs:
        half = len(blob) // 2
        pieces += [(off, blob[:half]), (off + half, blob[half:])]
    with open_image(src) as img:
        desc_first_page = img.kdump.desc_offset + len(data) // 4096 * 24
    stale = (desc_first_page, b"\xee" * 4096)
    shuffled = [stale, *reversed(pieces)]
    _write_records(tmp_path / "f", head, shuffled)
    with open_image(tmp_path / "f") as img:
        assert img.read(0, len(data)) == data


def test_flattened_stream_cut_short_still_opens_and_says_so(tmp_path: Path) -> None:
    data = _pages(4096, 12)
    src = tmp_path / "src"
    write_kdump(src, [(0, data)], "x86-64", flattened=True, compression="none")
    raw = src.read_bytes()
    cut = tmp_path / "cut"
    cut.write_bytes(raw[: len(raw) - 16 - 5000])  # no end record; the last page cut
    with open_image(cut) as img:
        assert any("cut off" in w for w in img.facts.warnings)
        assert img.read(0, 4096) == data[:4096]
        with pytest.raises(OutsideImage) as exc:
            img.read(len(data) - 4096, 4096)
        assert exc.value.kind == TRUNCATED


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"makedumpfile\0\0\0\0" + struct.pack(">qq", 1, 1), "cut off inside"),
        (b"makedumpfile\0\0\0\0" + struct.pack(">qq", 7, 1) + bytes(4072), "type 7"),
        (
            (b"makedumpfile\0\0\0\0" + struct.pack(">qq", 1, 1)).ljust(4096, b"\0")
            + struct.pack(">qq", -5, 3),
            "not a record",
        ),
        (
            (b"makedumpfile\0\0\0\0" + struct.pack(">qq", 1, 1)).ljust(4096, b"\0")
            + struct.pack(">qq", 0, 8)
            + b"\x7fELF\2\1\1\0"
            + struct.pack(">qq", -1, -1),
            "makedumpfile -R",
        ),
    ],
    ids=["short", "type", "bad-record", "flat-elf"],
)
def test_damaged_flattened_files(tmp_path: Path, blob: bytes, message: str) -> None:
    (tmp_path / "f").write_bytes(blob)
    with pytest.raises(ImageError, match=message):
        open_image(tmp_path / "f")


def test_old_header_versions_and_diskdump(tmp_path: Path) -> None:
    data = _pages(4096, 6)
    for version in (1, 2, 3, 4, 5, 6):
        write_kdump(tmp_path / "v", [(0, data)], "x86-64", header_version=version,
                    vmcoreinfo=b"OSRELEASE=6.1.0\n")  # fmt: skip
        with open_image(tmp_path / "v") as img:
            assert img.read(0, len(data)) == data
            assert img.facts.header["header_version"] == version
            assert ("dump_level" in img.facts.header) == (version >= 1)
            assert bool(img.facts.vmcoreinfo) == (version >= 3)
    raw = bytearray((tmp_path / "v").read_bytes())
    raw[:8] = b"DISKDUMP"
    (tmp_path / "dd").write_bytes(bytes(raw))
    with open_image(tmp_path / "dd") as img:
        assert img.facts.format.startswith("diskdump") and img.read(0, len(data)) == data


def test_missing_codec_package_is_named(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("zstandard")
    write_kdump(tmp_path / "z", [(0, _pages(4096, 2))], "x86-64", compression="zstd")
    import sys

    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if not installed
    with open_image(tmp_path / "z") as img, pytest.raises(Exception, match="zstandard package"):
        img.read(0, 8)


def test_zlib_page_that_inflates_past_one_block_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "d"
    write_kdump(path, [(0, _pages(4096, 2))], "x86-64")
    desc, first = _layout(path)
    bomb = zlib.compress(bytes(1 << 20))
    raw = bytearray(path.read_bytes())
    raw += bomb
    struct.pack_into("<qI", raw, desc, len(raw) - len(bomb), min(len(bomb), 4096))
    path.write_bytes(bytes(raw))
    with open_image(path) as img, pytest.raises(OutsideImage) as exc:
        img.read(0, 8)
    assert exc.value.kind == UNREADABLE
    assert first > 0


def test_info_counts_damaged_descriptors(tmp_path: Path, capsys) -> None:
    path = tmp_path / "d"
    write_kdump(path, [(0, _pages(4096, 10))], "x86-64")
    desc, _ = _layout(path)
    with open_image(path) as img:
        assert img.kdump.check_descriptors() == {
            "descriptors": 10, "cut_off": 0, "past_end": 0, "bad_size": 0, "overlapping": 0,
        }  # fmt: skip
    _patch(path, desc + 24 + 8, struct.pack("<I", 9000))  # page 1: larger than a block
    _patch(path, desc + 48, struct.pack("<q", 1 << 40))  # page 2: past the end
    off0, size0 = struct.unpack_from("<qI", path.read_bytes(), desc)
    _patch(path, desc + 96, struct.pack("<q", off0 + size0 // 2))  # page 4: inside page 0's
    with open_image(path) as img:
        check = img.kdump.check_descriptors()
    assert check["past_end"] == 1 and check["bad_size"] == 1 and check["overlapping"] >= 1
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "of 10 page descriptors: 1 past end, 1 bad size, " in out and " overlapping" in out


def test_a_dump_of_the_other_byte_order_is_refused(tmp_path: Path, capsys) -> None:
    write_kdump(tmp_path / "d", [(0, _pages(8192, 4))], "sparc64")
    assert main(["decode", str(tmp_path / "d"), "--arch", "x86-64", "--root", "0"]) == 1
    assert "big-endian dump but x86-64 is little-endian" in capsys.readouterr().err


def test_pages_are_decompressed_one_at_a_time_when_read(tmp_path: Path, monkeypatch) -> None:
    """Random access: opening decompresses nothing, a read decompresses the pages it touches,
    once (a small LRU keeps them), however large the file."""
    from pfnmap.decode.images import codecs, kdump

    calls: list[int] = []
    real = codecs.decompressor

    def counting(codec: str):
        inner = real(codec)

        def run(data: bytes, block_size: int) -> bytes:
            calls.append(len(data))
            return inner(data, block_size)

        return run

    monkeypatch.setattr(codecs, "decompressor", counting)
    data = _pages(4096, 300)
    write_kdump(tmp_path / "d", [(0, data)], "x86-64", flattened=True)
    with open_image(tmp_path / "d") as img:
        assert calls == []
        assert img.read(200 * 4096 + 100, 16) == data[200 * 4096 + 100 : 200 * 4096 + 116]
        assert len(calls) == 1
        img.read(200 * 4096, 4096)
        assert len(calls) == 1  # cached
        img.read(10 * 4096, 3 * 4096)  # pages 10, 11, 12 (none all-zero)
        assert len(calls) == 4
        for pfn in range(kdump.PAGE_CACHE + 10):
            img.read(pfn * 4096, 1)
        assert len(img.kdump._cache) == kdump.PAGE_CACHE
