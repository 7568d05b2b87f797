"""``pfnmap dump`` and the round trip emulator -> dump (raw and ELF) -> decode, on every arch."""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pfnmap import MAP_PRIVATE, MAP_SHARED, PROT_NONE, PROT_READ, PROT_WRITE, Machine
from pfnmap.cli.main import main
from pfnmap.decode.dump import (
    DumpError,
    build_scenario,
    dump_machine,
    hints_from_info,
    machine_hints,
)
from pfnmap.decode.hints import read_vmas_file
from pfnmap.decode.image import machine_image, open_image
from pfnmap.decode.walker import Leaf, Problem, Walker, leaves
from pfnmap.errors import KernelError, PfnmapError
from pfnmap.plugins.manager import default_registry

ARCHES = default_registry().names()


def expected_leaves(proc) -> dict[int, tuple]:
    """The emulator's own view: every non-none pte with its pfn and verdict."""
    out = {}
    for vma in proc.vmas:
        for addr, pte in proc.ptes(vma):
            info = proc.lookup(addr)
            out[addr] = (pte, info.pfn, info.present, info.verdict)
    return out


def decoded_leaves(path: Path, machine: Machine, proc, info: dict) -> dict[int, tuple]:
    arch = machine.arch
    hints = hints_from_info(info, proc.pid)
    out = {}
    with open_image(path) as img:
        for rec in leaves(Walker(img, arch, int(info_root(info, proc.pid), 16)), arch, hints):
            assert isinstance(rec, Leaf), rec
            pfn = rec.pa >> arch.page_shift if rec.present else None
            out[rec.va] = (rec.raw, pfn, rec.present, rec.verdict)
    return out


def info_root(info: dict, pid: int) -> str:
    return next(p["root"] for p in info["processes"] if p["pid"] == pid)


# the dump files ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["raw", "elf"])
def test_dump_writes_image_json_and_vma_files(tmp_path: Path, fmt: str) -> None:
    m = build_scenario("x86-64")
    out = tmp_path / "story.img"
    info = dump_machine(m, out, fmt)
    on_disk = json.loads((tmp_path / "story.img.json").read_text())
    assert on_disk == info
    assert info["schema"] == "pfnmap.decode.dump/1" and info["arch"] == "x86-64"
    assert info["ram"] == [["0x0", hex(m.phys.ram_bytes)]]
    assert [p["comm"] for p in info["processes"]] == ["parent", "child"]
    for p in info["processes"]:
        proc = m.processes[p["pid"]]
        assert int(p["root"], 16) == proc.mm.pgd
        vmas = read_vmas_file(tmp_path / p["vmas_file"])
        assert [(v.start, v.end, v.flags, v.pgoff) for v in vmas] == [
            (v.vm_start, v.vm_end, v.vm_flags, v.vm_pgoff) for v in proc.vmas
        ]
        assert p["decode"].startswith("pfnmap decode story.img --arch x86-64 --root 0x")
    size = out.stat().st_size
    assert size == m.phys.ram_bytes if fmt == "raw" else size > m.phys.ram_bytes


@pytest.mark.parametrize("name", ARCHES)
@pytest.mark.parametrize("fmt", ["raw", "elf"])
def test_story_dump_decodes_to_the_emulators_ptes(tmp_path: Path, name: str, fmt: str) -> None:
    m = build_scenario(name)
    info = dump_machine(m, tmp_path / "d.img", fmt)
    for proc in m.processes.values():
        assert decoded_leaves(tmp_path / "d.img", m, proc, info) == expected_leaves(proc)


@pytest.mark.parametrize("name", ARCHES)
def test_decode_command_lines_in_the_json_work(
    tmp_path: Path, name: str, monkeypatch, capsys
) -> None:
    m = build_scenario(name)
    info = dump_machine(m, tmp_path / "d.elf", "elf")
    monkeypatch.chdir(tmp_path)
    for p in info["processes"]:
        argv = shlex.split(p["decode"])[1:] + ["--format", "jsonl"]
        assert main(argv) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        got = {int(r["va"], 16): r["verdict"] for r in rows if r["record"] == "leaf"}
        proc = m.processes[p["pid"]]
        assert got == {a: v[3] for a, v in expected_leaves(proc).items()}
        assert json.loads(rows[-1]["detail"])["complete"] is True


# the property: random emulator states round-trip ----------------------------------------------
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("anon"), st.integers(1, 6), st.sets(st.integers(0, 5), max_size=4)),
        st.tuples(st.just("mem-io"), st.integers(1, 4), st.integers(0, 60)),
        st.tuples(st.just("mem-ram"), st.integers(1, 4), st.integers(0, 12)),
        st.tuples(st.just("mem-private"), st.integers(1, 4), st.sets(st.integers(0, 3))),
        st.tuples(st.just("mprotect-none"), st.integers(0, 9), st.just(0)),
        st.tuples(st.just("fork"), st.just(0), st.just(0)),
        st.tuples(st.just("exit"), st.integers(0, 9), st.just(0)),
    ),
    min_size=1,
    max_size=8,
)


def play(machine: Machine, ops) -> None:
    arch = machine.arch
    ps = arch.page_size
    io = machine.phys.io_regions[0]
    procs = [machine.spawn("p0")]
    fds = {procs[0].pid: procs[0].open("/dev/mem")}
    mappings: list[tuple[int, int, int]] = []  # (pid, addr, pages)
    for op, a, b in ops:
        p = procs[-1]
        try:
            if op == "anon":
                addr = p.mmap(a * ps)
                for k in b:
                    if k < a:
                        p.write(addr + k * ps, b"w")
                mappings.append((p.pid, addr, a))
            elif op == "mem-io":
                off = io.start + b * ps
                addr = p.mmap(a * ps, PROT_READ, MAP_SHARED, fds[p.pid], offset=off)
                mappings.append((p.pid, addr, a))
            elif op == "mem-ram":
                addr = p.mmap(a * ps, PROT_READ, MAP_SHARED, fds[p.pid], offset=b * ps)
                mappings.append((p.pid, addr, a))
            elif op == "mem-private":
                addr = p.mmap(
                    a * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, fds[p.pid], offset=io.start
                )
                for k in b:
                    if k < a:
                        p.write(addr + k * ps + 8, b"cow")
                mappings.append((p.pid, addr, a))
            elif op == "mprotect-none" and mappings:
                pid, addr, _ = mappings[a % len(mappings)]
                owner = machine.processes.get(pid)
                if owner is not None and owner.mm.find_vma(addr) is not None:
                    owner.mprotect(addr, ps, PROT_NONE)
            elif op == "fork":
                child = p.fork(f"p{len(procs)}")
                fds[child.pid] = next(iter(child.fds))
                procs.append(child)
            elif op == "exit" and len(procs) > 1:
                victim = procs.pop(a % (len(procs) - 1))
                victim.exit()
        except KernelError:
            pass  # a refused call (e.g. a /dev/mem range the mode cannot encode) changes nothing


@pytest.mark.parametrize("name", ARCHES)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=OPS)
def test_random_emulator_states_round_trip_through_raw_and_elf(name: str, ops) -> None:
    m = Machine(name, "8M")
    play(m, ops)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("raw", "elf"):
            path = Path(tmp) / f"d.{fmt}"
            info = dump_machine(m, path, fmt)
            for proc in m.processes.values():
                assert decoded_leaves(path, m, proc, info) == expected_leaves(proc)
    for proc in m.processes.values():  # and straight from the machine, with its own hints
        walker = Walker(machine_image(m), m.arch, proc.mm.pgd)
        records = leaves(walker, m.arch, machine_hints(m, proc))
        got = {r.va: r.verdict for r in records if not isinstance(r, Problem)}
        assert got == {a: v[3] for a, v in expected_leaves(proc).items()}
    m.check_invariants()
    event(f"{sum(len(expected_leaves(p)) > 0 for p in m.processes.values())} processes with ptes")


# errors -----------------------------------------------------------------------------------
def test_dump_errors(tmp_path: Path, capsys) -> None:
    assert main(["dump", str(tmp_path / "x.img"), "--arch", "vax"]) == 2
    assert "unknown arch 'vax'" in capsys.readouterr().err
    assert main(["dump", str(tmp_path / "nodir" / "x.img")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pfnmap: error: cannot write") and err.count("\n") == 1
    assert main(["dump", str(tmp_path / "x.img"), "--format", "zip"]) == 2
    assert main(["dump", str(tmp_path / "x.img"), "--ram", "64K"]) == 2
    assert "--ram" in capsys.readouterr().err
    with pytest.raises(DumpError, match="unknown scenario"):
        build_scenario("x86-64", "bogus")
    with pytest.raises(DumpError, match="unknown dump format"):
        dump_machine(Machine("x86-64", "8M"), tmp_path / "y", "zip")
    with pytest.raises(PfnmapError, match="no process 99"):
        hints_from_info(dump_machine(Machine("x86-64", "8M"), tmp_path / "z", "raw"), 99)


def test_dump_cli_prints_the_decode_commands(tmp_path: Path, capsys) -> None:
    assert main(["dump", str(tmp_path / "s.elf"), "--arch", "sparc64", "--format", "elf"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "sparc64" in out
    assert out.count("pfnmap decode s.elf --arch sparc64 --root 0x") == 2
    with open_image(tmp_path / "s.elf") as img:
        assert img.kind == "elf" and img.elf_byteorder == "big"
