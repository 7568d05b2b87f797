#!/usr/bin/env python3
"""Regenerate tests/fixtures/qemu/: boot a real Debian kernel under QEMU, stop it while a small
guest program runs, and save its page-table frames next to QEMU's own ``info tlb``/``info mem``.

    python scripts/qemu_fixtures/regen.py                 # every mode
    python scripts/qemu_fixtures/regen.py --modes x86-64  # one mode
    python scripts/qemu_fixtures/regen.py --no-apt        # packages already installed/fetched

Per mode (x86-64, x86-la57, x86-pae, x86-2level; pfnmap's arch names):

1. ``apt-get install`` qemu-system-x86, gcc-multilib...; ``apt-get download`` the Debian kernel
   image (the meta package's dependency) and busybox-static for the guest's Debian arch, and
   ``dpkg-deb -x`` them under the work directory (nothing is installed into the host's /boot).
2. Build the static guest program (guest.c) and a busybox initramfs (initramfs.py).
3. Boot with the serial console in a file and QMP on a unix socket; wait for ``GUEST READY``.
4. ``stop``; ``info registers`` (CR3, CR4, CPL); retry (``cont``, wait, ``stop``) until the vCPU
   is in user mode (CPL=3) with the guest's page tables loaded, i.e. ``info tlb`` shows the
   guest's anonymous mapping. Then ``info tlb``, ``info mem`` and ``pmemsave`` of all RAM.
5. Walk the tables in the RAM image as QEMU does (pagetables.py), keep only the frames QEMU
   read, write them as an ELF core with pfnmap.decode.image.write_elf_core (``pt.elf.xz``, with
   the notes of QEMU's own ``dump-guest-memory`` core of the same moment: CPU registers), and
   QEMU's own ``dump-guest-memory -z`` (kdump-zlib, flattened) file refiltered to the same
   frames (``pt.kdump.xz``), plus
   ``info_tlb.txt.xz``, ``info_mem.txt.xz``, ``registers.txt``, ``console.txt`` (init's and the
   guest's lines) and ``meta.json``.
6. If pfnmap's decoder is installed, run ``pfnmap decode`` on the new core and diff it against
   QEMU's text.

Needs root for apt-get (or --no-apt with the tools present). Under TCG a mode takes 10-30 s
(x86-la57 is the slow one: QEMU's broken LA57 ``info mem`` walks page 0 over and over), all
four about a minute, plus about 180 MB of downloads the first time. Heavy files (debs,
kernels, RAM images) stay in --work (default /tmp/qemu-work). See docs/qemu-fixtures.rst.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import lzma
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

from initramfs import build_initramfs  # noqa: E402
from pagetables import runs, walk_frames  # noqa: E402

from pfnmap.decode.image import write_elf_core  # noqa: E402
from pfnmap.decode.images.kdump_write import refilter_kdump  # noqa: E402

RAM_MB = 256
#: kernel command line shared by every mode; nopti so that CR3 holds the one full pgd
APPEND = "console=ttyS0 nokaslr nopti panic=-1 loglevel=4"


@dataclass(frozen=True)
class Mode:
    name: str  # pfnmap's arch name
    deb_arch: str  # Debian architecture of the kernel and busybox
    kernel_meta: str  # Debian meta package whose dependency is the kernel image
    qemu: str
    cpu: str
    cflags: tuple[str, ...]
    append: str = ""


_I386 = ("-m32",)
MODES = {
    "x86-64": Mode("x86-64", "amd64", "linux-image-amd64", "qemu-system-x86_64", "qemu64", ()),
    # 5-level paging: the amd64 kernel turns LA57 on when the CPU has it (-cpu max under TCG).
    "x86-la57": Mode("x86-la57", "amd64", "linux-image-amd64", "qemu-system-x86_64", "max", ()),
    # +nx so that the PAE entries carry NX (bit 63), which QEMU's PAE info tlb leaves in the
    # printed physical address
    "x86-pae": Mode(
        "x86-pae", "i386", "linux-image-686-pae", "qemu-system-i386", "qemu32,+nx", _I386
    ),
    "x86-2level": Mode(
        "x86-2level", "i386", "linux-image-686", "qemu-system-i386", "qemu32", _I386
    ),
}
DEFAULT_MODES = ("x86-64", "x86-la57", "x86-pae", "x86-2level")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log("$ " + " ".join(cmd))
    return subprocess.run(cmd, check=True, **kw)


# ---------------------------------------------------------------- packages


def apt_setup(modes: list[Mode]) -> None:
    if any(m.deb_arch == "i386" for m in modes):
        run(["dpkg", "--add-architecture", "i386"])
    # A mirror caught mid-sync fails one index now and then; the others are still good.
    update = subprocess.run(["apt-get", "update", "-q"], stdout=subprocess.DEVNULL)
    if update.returncode:
        log(f"apt-get update exited with {update.returncode}; going on with the indexes it has")
    pkgs = ["qemu-system-x86", "busybox-static", "cpio", "gcc"]
    if any("-m32" in m.cflags for m in modes):
        pkgs.append("gcc-multilib")
    run(["apt-get", "install", "-y", "-q", *pkgs], stdout=subprocess.DEVNULL)


def _depends(meta: str) -> str:
    out = subprocess.run(
        ["apt-cache", "depends", meta], check=True, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if m:
            return m.group(1)
    raise SystemExit(f"no linux-image dependency for {meta}:\n{out}")


def fetch_deb(pkg: str, debs: Path, fetch: bool) -> Path:
    """``apt-get download`` ``pkg`` (name:arch) into ``debs`` unless a copy is there."""
    name = pkg.split(":")[0]
    arch = pkg.split(":")[1] if ":" in pkg else None
    pattern = f"{name}_*_{arch}.deb" if arch else f"{name}_*.deb"
    found = sorted(debs.glob(pattern))
    if not found:
        if not fetch:
            raise SystemExit(f"{pkg} is not in {debs} and --no-apt was given")
        debs.mkdir(parents=True, exist_ok=True)
        run(["apt-get", "download", "-q", pkg], cwd=debs, stderr=subprocess.DEVNULL)
        found = sorted(debs.glob(pattern))
    return found[-1]


def extract(deb: Path, dest: Path) -> Path:
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        shutil.rmtree(tmp, ignore_errors=True)
        run(["dpkg-deb", "-x", str(deb), str(tmp)])
        tmp.rename(dest)
    return dest


def deb_version(deb: Path) -> str:
    """The package version from a .deb's file name (apt writes the epoch's colon as %3a)."""
    return urllib.parse.unquote(deb.name.split("_")[1])


def kernel_for(mode: Mode, work: Path, fetch: bool) -> tuple[Path, str, str]:
    """The extracted vmlinuz, the kernel package name and its Debian version."""
    meta = f"{mode.kernel_meta}:{mode.deb_arch}" if mode.deb_arch == "i386" else mode.kernel_meta
    if fetch:
        pkg = _depends(meta).split(":")[0]
    else:
        flavor = mode.kernel_meta.removeprefix("linux-image-")
        pat = re.compile(rf"linux-image-\d[\d.]*-\d+-{re.escape(flavor)}_.*_{mode.deb_arch}\.deb")
        cands = sorted(
            p for p in (work / "debs").glob("linux-image-*.deb") if pat.fullmatch(p.name)
        )
        if not cands:
            raise SystemExit(f"no kernel .deb for {mode.name} in {work / 'debs'}")
        pkg = cands[-1].name.split("_")[0]
    full = f"{pkg}:{mode.deb_arch}"
    deb = fetch_deb(full, work / "debs", fetch)
    root = extract(deb, work / "root" / deb.stem)
    vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))[0]
    return vmlinuz, pkg, deb_version(deb)


def busybox_for(mode: Mode, work: Path, fetch: bool) -> tuple[Path, str]:
    deb = fetch_deb(f"busybox-static:{mode.deb_arch}", work / "debs", fetch)
    root = extract(deb, work / "root" / deb.stem)
    return root / "bin" / "busybox", deb_version(deb)


# ---------------------------------------------------------------- QEMU


class QMP:
    """Plain-socket QMP client: enough for stop/cont/human-monitor-command/pmemsave/quit."""

    def __init__(self, path: Path, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.greeting = self._read()
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("QMP socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, cmd: str, **args):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {cmd}: {reply['error']}")
            # an asynchronous event (STOP, RESUME, ...): ignore

    def hmp(self, command: str) -> str:
        """A human monitor command's output, with the monitor's CR LF turned into LF."""
        return self.execute("human-monitor-command", **{"command-line": command}).replace(
            "\r\n", "\n"
        )


def parse_registers(text: str) -> dict[str, int]:
    regs: dict[str, int] = {}
    for key in ("CR0", "CR3", "CR4", "EFER"):
        m = re.search(rf"\b{key}=([0-9a-fA-F]+)", text)
        if m:
            regs[key.lower()] = int(m.group(1), 16)
    m = re.search(r"\bCPL=(\d)", text)
    regs["cpl"] = int(m.group(1)) if m else -1
    return regs


def wait_console(path: Path, marker: str, proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if marker in text:
            return text
        if proc.poll() is not None:
            raise RuntimeError(
                f"QEMU exited ({proc.returncode}) before {marker!r}:\n{text[-3000:]}"
            )
        time.sleep(0.5)
    raise TimeoutError(f"no {marker!r} on the console in {timeout:.0f}s:\n{text[-3000:]}")


def guest_info(console: str) -> dict:
    """The guest program's printed pid and mappings."""
    info: dict = {"maps": {}, "proc_maps": [], "messages": []}
    for line in console.splitlines():
        line = line.rstrip("\r")
        if not line.startswith("GUEST "):
            continue
        parts = line.split()
        if parts[1] == "pid":
            info["pid"], info["child_pid"] = int(parts[2]), int(parts[4])
        elif parts[1] == "map":
            info["maps"][parts[2]] = {"start": parts[3], "size": parts[4]}
        elif parts[1] == "maps":
            info["proc_maps"].append(line.split(" ", 2)[2])
        elif parts[1] != "READY":
            info["messages"].append(line[6:])
    return info


@dataclass
class Capture:
    registers: str
    regs: dict[str, int]
    info_tlb: str
    info_mem: str
    ram: Path
    console: str
    attempts: int
    qemu_elf: Path
    qemu_kdump: Path


def boot_and_capture(
    mode: Mode, vmlinuz: Path, initrd: Path, wdir: Path, attempts: int, boot_timeout: float
) -> Capture:
    console_path = wdir / "console.log"
    qmp_path = wdir / "qmp.sock"
    ram_path = wdir / "ram.raw"
    elf_path = wdir / "vmcore.elf"
    kdump_path = wdir / "vmcore.kdump"
    for p in (console_path, qmp_path, ram_path, elf_path, kdump_path):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    cmd = [
        mode.qemu, "-m", f"{RAM_MB}M", "-smp", "1", "-cpu", mode.cpu,
        "-kernel", str(vmlinuz), "-initrd", str(initrd),
        "-append", f"{APPEND} {mode.append}".strip(),
        "-display", "none", "-no-reboot", "-nodefaults",
        "-serial", f"file:{console_path}",
        "-qmp", f"unix:{qmp_path},server=on,wait=off",
    ]  # fmt: skip
    log("$ " + " ".join(cmd))
    qemu_log = open(wdir / "qemu.log", "wb")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(cmd, stdout=qemu_log, stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        console = wait_console(console_path, "GUEST READY", proc, boot_timeout)
        log(f"guest ready after {time.monotonic() - t0:.0f}s")
        info = guest_info(console)
        anon = int(info["maps"]["anon"]["start"], 16)
        qmp = QMP(qmp_path)
        time.sleep(1.0)
        for attempt in range(1, attempts + 1):
            qmp.execute("stop")
            registers = qmp.hmp("info registers")
            regs = parse_registers(registers)
            tlb = qmp.hmp("info tlb") if regs["cpl"] == 3 else ""
            if regs["cpl"] == 3 and f"{anon:016x}: " in tlb:
                log(f"attempt {attempt}: CPL=3, CR3={regs['cr3']:#x}, guest's tables loaded")
                mem = qmp.hmp("info mem")
                qmp.execute("pmemsave", val=0, size=RAM_MB << 20, filename=str(ram_path))
                # QEMU's own dumps of the same stopped moment: an ELF core and kdump-zlib
                # (makedumpfile's flattened format in QEMU 7.2), both with QEMU's CPU notes
                qmp.execute("dump-guest-memory", paging=False, protocol=f"file:{elf_path}")
                qmp.execute(
                    "dump-guest-memory", paging=False, protocol=f"file:{kdump_path}",
                    format="kdump-zlib",
                )  # fmt: skip
                qmp.execute("quit")
                return Capture(
                    registers, regs, tlb, mem, ram_path, console, attempt, elf_path, kdump_path
                )
            log(
                f"attempt {attempt}: CPL={regs['cpl']} CR3={regs.get('cr3', 0):#x}: not the "
                "guest in user mode; continuing"
            )
            qmp.execute("cont")
            time.sleep(random.uniform(0.2, 1.5))
        raise RuntimeError(f"the vCPU was never in the guest program in {attempts} attempts")
    finally:
        with contextlib.suppress(Exception):
            proc.wait(timeout=20)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        qemu_log.close()


# ---------------------------------------------------------------- fixture


def xz(data: bytes) -> bytes:
    """xz at the strongest preset: the espfix alias alone is 65536 identical tlb lines."""
    return lzma.compress(
        data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=9 | lzma.PRESET_EXTREME
    )


def make_fixture(mode: Mode, cap: Capture, out: Path, meta_extra: dict) -> dict:
    regs = cap.regs
    with open(cap.ram, "rb") as f:
        ram = f.read()

    def read(addr: int, size: int) -> bytes:
        if addr + size > len(ram):
            raise ValueError(f"table at {addr:#x} is outside the {len(ram):#x}-byte RAM image")
        return ram[addr : addr + size]

    cr4_pse = bool(regs["cr4"] & (1 << 4))
    frames = walk_frames(mode.name, regs["cr3"], cr4_pse, read)
    segments = [(start, ram[start : start + length]) for start, length in runs(frames)]
    out.mkdir(parents=True, exist_ok=True)
    keep = set()
    for start, length in runs(frames):
        keep.update(range(start // 4096, (start + length) // 4096))
    with tempfile.TemporaryDirectory() as tmp:
        # the ELF core: the frames, with the notes of QEMU's own core (CORE and QEMU per CPU)
        core = Path(tmp) / "pt.elf"
        notes = qemu_elf_notes(cap.qemu_elf, ram)
        write_elf_core(core, segments, mode.name, notes=notes)
        raw = core.read_bytes()
        # the kdump: QEMU's own file, filtered to the same frames (header, notes and each kept
        # page's compressed bytes as QEMU wrote them)
        kdump = Path(tmp) / "pt.kdump"
        refilter_kdump(cap.qemu_kdump, kdump, keep.__contains__, flattened=True)
        kdump_raw = kdump.read_bytes()
    for stale in out.glob("*.xz"):
        stale.unlink()
    (out / "pt.elf.xz").write_bytes(xz(raw))
    (out / "pt.kdump.xz").write_bytes(xz(kdump_raw))
    (out / "info_tlb.txt.xz").write_bytes(xz(cap.info_tlb.encode()))
    (out / "info_mem.txt.xz").write_bytes(xz(cap.info_mem.encode()))
    (out / "registers.txt").write_text(cap.registers)
    guest_lines = [
        ln.rstrip("\r")
        for ln in cap.console.splitlines()
        if ln.startswith(("GUEST ", "INIT ", "Linux version"))
    ]
    (out / "console.txt").write_text("\n".join(guest_lines) + "\n")
    root = regs["cr3"] & (~0x1F if mode.name == "x86-pae" else ~0xFFF) & 0xFFFFFFFFFFFFF
    qemu_bugs = {}
    if mode.name == "x86-la57" and cap.info_tlb.strip() and not cap.info_mem.strip():
        qemu_bugs["qemu-mem"] = (
            "QEMU's mem_info_la57 tests the present bit of PDPTEs and PDEs the wrong way round "
            "(a present entry ends the range, a missing one is walked), so under 5-level "
            "paging `info mem` prints nothing at all"
        )
    meta = {
        "arch": mode.name,
        "cr3": f"{regs['cr3']:#x}",
        "root": f"{root:#x}",
        "cr0": f"{regs['cr0']:#x}",
        "cr4": f"{regs['cr4']:#x}",
        "efer": f"{regs.get('efer', 0):#x}",
        "cpl": regs["cpl"],
        "ram_bytes": len(ram),
        "frames": len(frames),
        "core": "pt.elf.xz",
        "core_segments": len(segments),
        "kdump": "pt.kdump.xz",
        "qemu_dumps": {
            "elf": "dump-guest-memory paging=false: its notes, with the frames above",
            "kdump": "dump-guest-memory format=kdump-zlib, refiltered to the frames above "
            "(pfnmap.decode.images.kdump_write.refilter_kdump), flattened",
            "notes": [n for n, _t, _d in notes],
        },
        "guest": guest_info(cap.console),
        "tlb_lines": len(cap.info_tlb.splitlines()),
        "mem_lines": len(cap.info_mem.splitlines()),
        "stop_attempts": cap.attempts,
        "qemu_bugs": qemu_bugs,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **meta_extra,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def qemu_elf_notes(path: Path, ram: bytes) -> list[tuple[str, int, bytes]]:
    """The notes of QEMU's ELF core, after checking that its memory is the pmemsave image."""
    from pfnmap.decode.image import open_elf

    with open_elf(path) as img:
        for seg in img.segments:
            if seg.end <= len(ram) and img.read(seg.start, seg.size) != ram[seg.start : seg.end]:
                raise RuntimeError(f"QEMU's core differs from pmemsave at {seg.start:#x}")
        return [(n.name, n.type, n.desc) for n in img.facts.notes]


def compare_whole_dumps(cap: Capture, meta: dict) -> dict[str, str]:
    """Decode QEMU's unfiltered ELF and kdump files with no --arch/--root, against its text."""
    results = {}
    for label, path in (("elf", cap.qemu_elf), ("kdump", cap.qemu_kdump)):
        cmd = [sys.executable, "-c", "from pfnmap.cli.main import main; raise SystemExit(main())",
               "decode", str(path), "--format", "qemu-tlb"]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True)
        want = cap.info_tlb.splitlines()
        got = r.stdout.splitlines()
        verdict = "identical" if r.returncode == 0 and got == want else "DIFFERENT"
        results[f"whole-{label}-qemu-tlb"] = (
            f"{verdict} ({len(got)} lines vs {len(want)}; {r.stderr.strip()[:300]})"
        )
    if shutil.which("makedumpfile"):
        rebuilt = cap.qemu_kdump.with_suffix(".rebuilt")
        with open(cap.qemu_kdump, "rb") as src:
            subprocess.run(["makedumpfile", "-R", str(rebuilt)], stdin=src, check=True,
                           capture_output=True)  # fmt: skip
        from pfnmap.decode.images.base import map_file
        from pfnmap.decode.images.flat import FlatView

        f, mapping, size = map_file(cap.qemu_kdump)  # noqa: RUF059 - kept open for the view
        view = FlatView(mapping, size, str(cap.qemu_kdump))
        same = view.read(0, view.size) == rebuilt.read_bytes()[: view.size]
        results["flat-view-vs-makedumpfile-R"] = "identical" if same else "DIFFERENT"
        rebuilt.unlink()
    return results


def compare_with_decoder(out: Path, meta: dict) -> dict[str, str]:
    """Run ``pfnmap decode`` on the fixture and compare with QEMU's text (if pfnmap has it)."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        core = Path(tmp) / "pt.elf"
        core.write_bytes(lzma.decompress((out / "pt.elf.xz").read_bytes()))
        kd = Path(tmp) / "pt.kdump"
        kd.write_bytes(lzma.decompress((out / "pt.kdump.xz").read_bytes()))
        jobs = []
        for fmt, name in (("qemu-tlb", "info_tlb.txt.xz"), ("qemu-mem", "info_mem.txt.xz")):
            jobs.append((fmt, name, [str(core), "--arch", meta["arch"], "--root", meta["root"]]))
            jobs.append((f"{fmt} (kdump, no options)", name, [str(kd)]))
            jobs.append((f"{fmt} (elf, no options)", name, [str(core)]))
        for label, name, args in jobs:
            fmt = label.split()[0]
            cmd = ["pfnmap", "decode", *args, "--format", fmt]
            if shutil.which("pfnmap") is None:
                cmd = [sys.executable, "-m", "pfnmap.cli.main", *cmd[1:]]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                results[label] = f"pfnmap decode failed ({r.returncode}): {r.stderr.strip()[:500]}"
                continue
            want = lzma.decompress((out / name).read_bytes()).decode().splitlines()
            got = r.stdout.splitlines()
            if want == got:
                results[label] = f"identical ({len(want)} lines)"
            else:
                diff = [
                    f"line {i + 1}: qemu {w!r} pfnmap {g!r}"
                    for i, (w, g) in enumerate(zip(want, got, strict=False))
                    if w != g
                ]
                problems = [ln for ln in r.stderr.splitlines() if "problem:" in ln]
                results[label] = (
                    f"DIFFERENT: qemu {len(want)} lines, pfnmap {len(got)}; "
                    f"{len(diff)} of the common lines differ, first: {diff[:3]}; "
                    f"{len(problems)} decoder problems, last: {problems[-1:]}"
                )
    return results


def qemu_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip()


def build_guest(mode: Mode, work: Path) -> Path:
    exe = work / f"guest-{mode.deb_arch}"
    run(["gcc", "-static", "-O2", "-Wall", *mode.cflags, "-o", str(exe), str(HERE / "guest.c")])
    return exe


def do_mode(mode: Mode, args: argparse.Namespace) -> dict:
    work: Path = args.work
    t0 = time.monotonic()
    vmlinuz, kpkg, kver = kernel_for(mode, work, not args.no_apt)
    busybox, bbver = busybox_for(mode, work, not args.no_apt)
    guest = build_guest(mode, work)
    wdir = work / mode.name
    wdir.mkdir(parents=True, exist_ok=True)
    initrd = wdir / "initrd.cpio.gz"
    size = build_initramfs(initrd, busybox, guest)
    log(f"{mode.name}: kernel {kpkg} {kver}, busybox {bbver}, initramfs {size} bytes")
    cap = boot_and_capture(mode, vmlinuz, initrd, wdir, args.attempts, args.boot_timeout)
    out = args.out / mode.name
    meta = make_fixture(
        mode,
        cap,
        out,
        {
            "kernel_package": kpkg,
            "kernel_version": kver,
            "busybox_version": bbver,
            "qemu": qemu_version(mode.qemu),
            "qemu_cpu": mode.cpu,
            "append": f"{APPEND} {mode.append}".strip(),
            "guest_cc": "gcc -static -O2 " + " ".join(mode.cflags),
        },
    )
    whole = {} if args.no_compare else compare_whole_dumps(cap, meta)
    if not args.keep_ram:
        for p in (cap.ram, cap.qemu_elf, cap.qemu_kdump):
            p.unlink()
    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    elapsed = time.monotonic() - t0
    log(
        f"{mode.name}: {meta['frames']} frames, {meta['tlb_lines']} tlb lines, "
        f"{meta['mem_lines']} mem lines, files {sizes}, {elapsed:.0f}s"
    )
    result = {"mode": mode.name, "seconds": round(elapsed), "sizes": sizes}
    if not args.no_compare:
        result["compare"] = {**compare_with_decoder(out, meta), **whole}
        for fmt, verdict in result["compare"].items():
            log(f"{mode.name} {fmt}: {verdict}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--modes",
        default=",".join(DEFAULT_MODES),
        help=f"comma-separated, from {', '.join(MODES)} (default: %(default)s)",
    )
    p.add_argument("--work", type=Path, default=Path("/tmp/qemu-work"))
    p.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "qemu")
    p.add_argument(
        "--no-apt",
        action="store_true",
        help="do not run apt-get; use the .debs already in WORK/debs",
    )
    p.add_argument("--no-compare", action="store_true", help="do not run pfnmap decode")
    p.add_argument("--keep-ram", action="store_true", help="keep WORK/MODE/ram.raw")
    p.add_argument("--attempts", type=int, default=30, help="stop/cont tries per boot")
    p.add_argument("--boot-timeout", type=float, default=600, help="seconds to GUEST READY")
    args = p.parse_args(argv)
    modes = [MODES[m] for m in args.modes.split(",") if m]
    args.work.mkdir(parents=True, exist_ok=True)
    if not args.no_apt:
        if os.geteuid() != 0:
            raise SystemExit("apt-get needs root; run as root or pass --no-apt")
        apt_setup(modes)
    t0 = time.monotonic()
    results = [do_mode(m, args) for m in modes]
    log(f"done in {time.monotonic() - t0:.0f}s")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
