"""Build the guest's initramfs: a gzip'd newc cpio archive written directly from Python.

The archive holds a static busybox, the static guest program and ``/init``, a busybox sh
script that mounts devtmpfs and proc, turns transparent huge pages on, prints the kernel
version and runs the guest. ``/dev/console`` is a device node in the archive itself, because
the kernel opens it for init before any devtmpfs is mounted. Timestamps are zero, so the same
inputs give the same bytes.
"""

from __future__ import annotations

import gzip
import stat
from pathlib import Path

INIT_SCRIPT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "INIT kernel $(uname -r) $(uname -m)"
# THP is off by default below 512 MiB of RAM; turn it on so that the guest gets a 2 MiB page.
echo always > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
echo "INIT thp $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
echo "INIT cmdline $(cat /proc/cmdline)"
/guest
echo "INIT guest exited with $?"
exec sh
"""


def _entry(
    name: str,
    mode: int,
    data: bytes = b"",
    ino: int = 0,
    rdev: tuple[int, int] = (0, 0),
    nlink: int = 1,
) -> bytes:
    """One newc header + name + data, each padded to 4 bytes."""
    namebytes = name.encode() + b"\0"
    fields = [
        ino,
        mode,
        0,
        0,
        nlink,
        0,
        len(data),  # ino mode uid gid nlink mtime filesize
        0,
        0,
        rdev[0],
        rdev[1],  # devmajor devminor rdevmajor rdevminor
        len(namebytes),
        0,  # namesize check
    ]
    header = b"070701" + b"".join(f"{v:08x}".encode() for v in fields)
    out = header + namebytes
    out += b"\0" * (-len(out) % 4)
    out += data
    out += b"\0" * (-len(out) % 4)
    return out


def build_initramfs(path: Path, busybox: Path, guest: Path) -> int:
    """Write the gzip'd archive to ``path``; return its size."""
    entries: list[tuple[str, int, bytes, tuple[int, int]]] = [
        ("bin", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("dev", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
        ("proc", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("sys", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes(), (0, 0)),
        ("bin/sh", stat.S_IFLNK | 0o777, b"busybox", (0, 0)),
        ("guest", stat.S_IFREG | 0o755, guest.read_bytes(), (0, 0)),
        ("init", stat.S_IFREG | 0o755, INIT_SCRIPT.encode(), (0, 0)),
    ]
    blob = b"".join(
        _entry(name, mode, data, ino=i + 1, rdev=rdev)
        for i, (name, mode, data, rdev) in enumerate(entries)
    )
    blob += _entry("TRAILER!!!", 0, nlink=1)
    blob += b"\0" * (-len(blob) % 512)
    packed = gzip.compress(blob, compresslevel=9, mtime=0)
    path.write_bytes(packed)
    return len(packed)
