"""The page codecs of kdump-compressed files, each imported only when a page needs it.

makedumpfile compresses each page on its own (makedumpfile.c, write_kdump_pages): zlib's
``compress2`` (a zlib stream), LZO's ``lzo1x_1_compress`` (a raw LZO1X block, no header),
snappy's ``snappy_compress`` (raw snappy, not the framing format) or zstd's
``ZSTD_compressCCtx`` (one zstd frame). A page that did not get smaller is stored as it is.
The codecs are PyPI packages (the ``kdump`` extra): zlib is Python's own, LZO is
``lzallright`` (LZO1X in Rust, with wheels; python-lzo needs liblzo2 to build), snappy
``cramjam``, zstd ``zstandard``.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable
from typing import Any

from pfnmap.errors import PfnmapError

# page descriptor / header flags (makedumpfile's diskdump_mod.h)
DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_DH_COMPRESSED_LZO = 0x2
DUMP_DH_COMPRESSED_SNAPPY = 0x4
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8
DUMP_DH_EXCLUDED_VMEMMAP = 0x10
DUMP_DH_COMPRESSED_ZSTD = 0x20

#: codec name -> page flag
CODEC_FLAGS = {
    "zlib": DUMP_DH_COMPRESSED_ZLIB,
    "lzo": DUMP_DH_COMPRESSED_LZO,
    "snappy": DUMP_DH_COMPRESSED_SNAPPY,
    "zstd": DUMP_DH_COMPRESSED_ZSTD,
}
FLAG_CODECS = {flag: name for name, flag in CODEC_FLAGS.items()}
ANY_COMPRESSED = sum(CODEC_FLAGS.values())
#: codec -> (module to import, PyPI package that provides it)
_PACKAGES = {"lzo": ("lzallright", "lzallright"), "snappy": ("cramjam", "cramjam"),
             "zstd": ("zstandard", "zstandard")}  # fmt: skip


class CodecMissing(PfnmapError):
    """The package a page's compression needs is not installed."""


class PageCorrupt(Exception):
    """A page that does not decompress to one block."""


def _module(codec: str) -> Any:
    modname, package = _PACKAGES[codec]
    try:
        return importlib.import_module(modname)
    except ImportError:
        raise CodecMissing(
            f"pages compressed with {codec} need the {package} package "
            f"(pip install {package}, or pip install 'pfnmap[kdump]')"
        ) from None


def decompressor(codec: str) -> Callable[[bytes, int], bytes]:
    """``f(data, block_size) -> page`` for ``codec`` (CodecMissing if its package is not there);
    ``f`` raises PageCorrupt when the data is not one block's worth of that codec."""
    if codec == "zlib":

        def unzlib(data: bytes, block_size: int) -> bytes:
            d = zlib.decompressobj()
            try:
                out = d.decompress(data, block_size + 1)
            except zlib.error as exc:
                raise PageCorrupt(f"zlib: {exc}") from None
            if not d.eof:
                raise PageCorrupt("zlib: the stream does not end within one block")
            return out

        return unzlib
    mod = _module(codec)
    if codec == "lzo":

        def unlzo(data: bytes, block_size: int) -> bytes:
            try:
                out = mod.LZOCompressor.decompress(data, block_size)
            except Exception as exc:  # LZOError, and anything on damaged input
                raise PageCorrupt(f"lzo: {exc}") from None
            if len(out) > block_size:
                raise PageCorrupt(f"lzo: {len(out)} bytes, more than one block")
            return out

        return unlzo
    if codec == "snappy":

        def unsnappy(data: bytes, block_size: int) -> bytes:
            try:
                # the raw format starts with the uncompressed length as a varint
                length, shift, i = 0, 0, 0
                while i < min(len(data), 10):
                    length |= (data[i] & 0x7F) << shift
                    shift += 7
                    i += 1
                    if not data[i - 1] & 0x80:
                        break
                if length > block_size:
                    raise PageCorrupt(f"snappy: says {length} bytes, more than one block")
                return bytes(mod.snappy.decompress_raw(data))
            except PageCorrupt:
                raise
            except Exception as exc:
                raise PageCorrupt(f"snappy: {exc}") from None

        return unsnappy

    def unzstd(data: bytes, block_size: int) -> bytes:
        try:
            return mod.ZstdDecompressor().decompress(data, max_output_size=block_size)
        except Exception as exc:  # zstandard.ZstdError
            raise PageCorrupt(f"zstd: {exc}") from None

    return unzstd


def compressor(codec: str) -> Callable[[bytes], bytes]:
    """``f(page) -> data`` for ``codec``, as makedumpfile compresses a page."""
    if codec == "zlib":
        return lambda page: zlib.compress(page, 1)
    mod = _module(codec)
    if codec == "lzo":
        lzo = mod.LZOCompressor()
        return lambda page: lzo.compress(page)
    if codec == "snappy":
        return lambda page: bytes(mod.snappy.compress_raw(page))
    cctx = mod.ZstdCompressor(level=1)
    return cctx.compress
