"""The construct entry layouts of every registered arch, and the masks derived from them.

construct is the source of truth for where a bit lives; the hot paths use the ``(shift, width)``
pairs :func:`pfnmap.arch.contract.derive_fields` derives once. These properties hold the two views
together for every entry format of every arch the default registry knows, so an arch added later
is covered without touching this file.
"""

from __future__ import annotations

import struct

import construct as cs
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pfnmap.arch import Arch, EntryFormat, derive_fields
from pfnmap.errors import LayoutError
from pfnmap.plugins.manager import default_registry

ARCHES: list[Arch] = list(default_registry().arches.values())


def _formats_of(arch: Arch) -> list[EntryFormat]:
    """Every table and leaf format of every level (by identity, so no name can hide one)."""
    seen: dict[int, EntryFormat] = {}
    for fmt in [*arch.formats.values(), *arch.table_formats, *arch.leaf_formats]:
        if fmt is not None:
            seen[id(fmt)] = fmt
    return list(seen.values())


FORMATS = [(arch, fmt) for arch in ARCHES for fmt in _formats_of(arch)]
FORMAT_IDS = [f"{arch.name}:{fmt.name}" for arch, fmt in FORMATS]
LEVELS = [(arch, i) for arch in ARCHES for i in range(len(arch.levels))]
LEVEL_IDS = [f"{arch.name}:{arch.levels[i].name}" for arch, i in LEVELS]

per_format = pytest.mark.parametrize(("arch", "fmt"), FORMATS, ids=FORMAT_IDS)


def _word(fmt: EntryFormat) -> st.SearchStrategy[int]:
    """Random entry values of the format's width, biased to hit both all-zero and all-one."""
    top = (1 << fmt.width_bits) - 1
    return st.one_of(st.integers(0, top), st.sampled_from([0, top, 1, 1 << (fmt.width_bits - 1)]))


def test_some_arch_is_registered() -> None:
    assert ARCHES, "the default registry has no arch, so every property here would be vacuous"
    assert all(_formats_of(arch) for arch in ARCHES)


@pytest.mark.parametrize(("arch", "level"), LEVELS, ids=LEVEL_IDS)
def test_every_level_layout_is_in_formats(arch: Arch, level: int) -> None:
    """arch.formats names every layout a level declares (the CLI and decoders list from it)."""
    lv = arch.levels[level]
    formats = list(arch.formats.values())
    for layout, fmt in ((lv.table, arch.table_formats[level]), (lv.leaf, arch.leaf_formats[level])):
        if layout is None:
            assert fmt is None
            continue
        assert fmt in formats
        assert fmt.layout is layout
        assert fmt.width_bits == lv.entry_bytes * 8
    assert arch.pte_format is arch.leaf_formats[-1]


@per_format
def test_fields_tile_the_entry(arch: Arch, fmt: EntryFormat) -> None:
    """Every bit belongs to exactly one named field: masks are disjoint and cover the word."""
    assert fmt.byteorder == arch.byteorder
    covered = 0
    for field in fmt.fields.values():
        assert field.mask & covered == 0, f"{field.name} overlaps another field"
        covered |= field.mask
    assert covered == (1 << fmt.width_bits) - 1


@per_format
@given(data=st.data())
def test_construct_round_trip(arch: Arch, fmt: EntryFormat, data: st.DataObject) -> None:
    """build(parse(x)) == x: no bit is dropped (an anonymous Padding would zero it)."""
    x = data.draw(_word(fmt), label="entry")
    raw = x.to_bytes(fmt.width_bits // 8, fmt.byteorder)
    assert fmt.layout.build(fmt.layout.parse(raw)) == raw
    assert fmt.encode(**fmt.decode(x)) == x


@per_format
@given(data=st.data())
def test_derived_masks_agree_with_construct(
    arch: Arch, fmt: EntryFormat, data: st.DataObject
) -> None:
    """decode(x)[f] == field.get(x) for every field (Flag fields come back as bools)."""
    x = data.draw(_word(fmt), label="entry")
    decoded = fmt.decode(x)
    assert set(decoded) == set(fmt.fields)
    assert {name: int(value) for name, value in decoded.items()} == fmt.decode_fast(x)
    for name, field in fmt.fields.items():
        assert int(decoded[name]) == (x & field.mask) >> field.shift


@per_format
@given(data=st.data())
def test_encode_is_the_or_of_shifted_fields(
    arch: Arch, fmt: EntryFormat, data: st.DataObject
) -> None:
    values = {
        name: data.draw(st.integers(0, (1 << field.width) - 1), label=name)
        for name, field in fmt.fields.items()
    }
    expected = 0
    for name, value in values.items():
        expected |= value << fmt.fields[name].shift
    assert fmt.encode(**values) == expected
    # a subset of fields: the rest are zero
    some = dict(list(values.items())[::2])
    assert fmt.encode(**some) == sum(v << fmt.fields[k].shift for k, v in some.items())


@per_format
def test_each_field_alone_builds_its_mask(arch: Arch, fmt: EntryFormat) -> None:
    for name, field in fmt.fields.items():
        assert fmt.encode(**{name: (1 << field.width) - 1}) == field.mask, name
        assert fmt.mask(name) == field.mask


@per_format
def test_encode_refuses_unknown_fields(arch: Arch, fmt: EntryFormat) -> None:
    with pytest.raises(LayoutError, match="no_such_bit"):
        fmt.encode(no_such_bit=1)


@pytest.mark.parametrize(("arch", "level"), LEVELS, ids=LEVEL_IDS)
@given(data=st.data())
def test_ram_storage_matches_the_layout_byte_order(
    arch: Arch, level: int, data: st.DataObject
) -> None:
    """The struct and numpy formats that store entries in emulated RAM write the same bytes
    construct parses, so a RAM image is a dump the layouts decode."""
    lv = arch.levels[level]
    fmt = arch.leaf_formats[level] or arch.table_formats[level]
    x = data.draw(_word(fmt), label="entry")
    raw = struct.pack(arch.entry_struct_format(level), x)
    assert raw == x.to_bytes(lv.entry_bytes, arch.byteorder)
    assert np.frombuffer(raw, dtype=arch.numpy_dtype(level))[0] == x
    parsed = fmt.layout.parse(raw)
    assert fmt.decode_fast(x) == {name: int(parsed[name]) for name in fmt.fields}


# derive_fields refusals ------------------------------------------------------------------------
def _bits(*fields: cs.Construct) -> cs.Construct:
    return cs.ByteSwapped(cs.BitStruct(*fields))


def test_derive_fields_happy_path_top_bit_first() -> None:
    fields = derive_fields(
        _bits("hi" / cs.BitsInteger(4), "mid" / cs.Flag, "lo" / cs.BitsInteger(3)), 8
    )
    assert [(f.name, f.shift, f.width) for f in fields.values()] == [
        ("hi", 4, 4),
        ("mid", 3, 1),
        ("lo", 0, 3),
    ]
    assert fields["hi"].mask == 0xF0
    assert fields["hi"].get(0xA5) == 0xA


def test_gap_is_refused() -> None:
    layout = _bits("a" / cs.BitsInteger(4), "b" / cs.BitsInteger(2))
    with pytest.raises(LayoutError, match=r"bits 0\.\.1 of the 8-bit entry belong to no field"):
        derive_fields(layout, 8)


def test_too_many_bits_is_refused_naming_the_field() -> None:
    layout = _bits("a" / cs.BitsInteger(6), "b" / cs.BitsInteger(3))
    with pytest.raises(LayoutError, match=r"more than the 8-bit entry \(overlap at 'b'\)"):
        derive_fields(layout, 8)


def test_unnamed_padding_is_refused() -> None:
    layout = _bits("a" / cs.BitsInteger(4), cs.Padding(4))
    with pytest.raises(LayoutError, match=r"without a name.*padding"):
        derive_fields(layout, 8)


def test_duplicate_name_is_refused() -> None:
    layout = _bits("a" / cs.BitsInteger(4), "a" / cs.BitsInteger(4))
    with pytest.raises(LayoutError, match="'a' is named twice"):
        derive_fields(layout, 8)


def test_zero_width_field_is_refused() -> None:
    layout = _bits("a" / cs.BitsInteger(8), "b" / cs.BitsInteger(0))
    with pytest.raises(LayoutError, match="'b' has width 0"):
        derive_fields(layout, 8)


def test_variable_width_field_is_refused() -> None:
    layout = cs.BitStruct("n" / cs.BitsInteger(cs.this.k), "m" / cs.BitsInteger(4))
    with pytest.raises(LayoutError, match="'n' has no fixed width"):
        derive_fields(layout, 8)


def test_not_a_bitstruct_is_refused() -> None:
    with pytest.raises(LayoutError, match="not a BitStruct"):
        derive_fields(cs.Int32ul, 32)


def test_entry_format_names_the_layout_in_errors() -> None:
    layout = _bits("a" / cs.BitsInteger(4), "b" / cs.BitsInteger(2))
    with pytest.raises(LayoutError, match=r"layout 'pmd-2M': bits 0\.\.1"):
        EntryFormat.from_layout("pmd-2M", layout, 1, "little")
