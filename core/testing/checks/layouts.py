"""Conformance checks 1: entry layouts (construct and the derived masks agree, nothing lost)."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pfnmap.arch import Arch
from pfnmap.plugins.validation import validate_arch
from pfnmap.testing.checks import KIT, edge_words, formats_of


def test_validation_is_clean(pfnmap_arch: Arch) -> None:
    """validation.clean: the registry's own checks (geometry, operations, masks, the first
    round trips) find nothing."""
    assert validate_arch(pfnmap_arch) == []


def test_layout_fields_tile_every_entry(pfnmap_arch: Arch) -> None:
    """layout.tiling: every bit of every format belongs to exactly one named field."""
    for fmt in formats_of(pfnmap_arch):
        covered = 0
        for field in fmt.fields.values():
            assert field.mask & covered == 0, f"{fmt.name}.{field.name} overlaps another field"
            covered |= field.mask
        missing = ((1 << fmt.width_bits) - 1) & ~covered
        assert not missing, f"{fmt.name}: bits {missing:#x} belong to no field"


def test_layout_lossless_at_the_edges(pfnmap_arch: Arch) -> None:
    """layout.lossless: build(parse(x)) == x and encode(decode(x)) == x for edge words."""
    for fmt in formats_of(pfnmap_arch):
        nbytes = fmt.width_bits // 8
        for x in edge_words(fmt.width_bits):
            raw = x.to_bytes(nbytes, fmt.byteorder)
            assert fmt.layout.build(fmt.layout.parse(raw)) == raw, f"{fmt.name}: {x:#x}"
            assert fmt.encode(**fmt.decode(x)) == x, f"{fmt.name}: {x:#x}"


@KIT
@given(data=st.data())
def test_layout_lossless_and_masks_agree(pfnmap_arch: Arch, data: st.DataObject) -> None:
    """layout.masks: construct's decode and the derived masks split any word the same way,
    and construct rebuilds it bit for bit."""
    fmt = data.draw(st.sampled_from(formats_of(pfnmap_arch)), label="format")
    x = data.draw(st.integers(0, (1 << fmt.width_bits) - 1), label="entry")
    raw = x.to_bytes(fmt.width_bits // 8, fmt.byteorder)
    assert fmt.layout.build(fmt.layout.parse(raw)) == raw
    decoded = {name: int(value) for name, value in fmt.decode(x).items()}
    assert decoded == fmt.decode_fast(x), fmt.name
    assert fmt.encode(**decoded) == x


def test_layout_each_field_builds_its_mask(pfnmap_arch: Arch) -> None:
    """layout.construct: construct builds each field alone as exactly its derived mask."""
    for fmt in formats_of(pfnmap_arch):
        for name, field in fmt.fields.items():
            built = fmt.encode(**{name: (1 << field.width) - 1})
            assert built == field.mask, (
                f"{fmt.name}.{name}: derived mask {field.mask:#x}, construct builds {built:#x} "
                f"(byte order, or fields not listed from the top bit down?)"
            )


@KIT
@given(data=st.data())
def test_ram_storage_uses_the_layout_byte_order(pfnmap_arch: Arch, data: st.DataObject) -> None:
    """layout.storage: the struct and numpy formats that keep entries in RAM write the bytes
    construct parses, so a RAM image is a dump the layouts decode."""
    arch = pfnmap_arch
    level = data.draw(st.integers(0, len(arch.levels) - 1), label="level")
    fmt = arch.leaf_formats[level] or arch.table_formats[level]
    assert fmt is not None
    x = data.draw(st.integers(0, (1 << fmt.width_bits) - 1), label="entry")
    raw = struct.pack(arch.entry_struct_format(level), x)
    assert raw == x.to_bytes(arch.levels[level].entry_bytes, arch.byteorder)
    assert int(np.frombuffer(raw, dtype=arch.numpy_dtype(level))[0]) == x
