"""The demo story (pfnmap.cli.demo.run_demo): each step's outcome, on the --arch under test.

The oracle is the seed's semantics (6aab341e, kernel-reference §2.3 and §3): raw PFN ptes are
never counted, a COW of a raw pte copies from the user address into an anon page, fork shares
that page and not the raw pfns, and everything is returned on unmap and exit.
"""

from __future__ import annotations

import dataclasses
import io

import pytest
from helpers import io_bytes, io_pfn
from rich.console import Console

from pfnmap import SEED, Machine, Verdict
from pfnmap.cli.demo import (
    DEMO_PAGES,
    PAYLOAD,
    SAMPLE_BYTES,
    DemoError,
    DemoResult,
    run_demo,
)
from pfnmap.cli.demo_render import (
    format_size,
    render_comparison,
    render_demo,
    semantic_signature,
)
from pfnmap.errors import KernelBug, KernelError, OutOfMemory
from pfnmap.kernel.reports import BadPteReport

RAW, COWED = Verdict.RAW_PFN, Verdict.COWED


@pytest.fixture
def result(machine: Machine) -> DemoResult:
    # the conftest machine fixture checks every count and table again after the test
    return run_demo(machine)


def render(*results: DemoResult) -> str:
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    for r in results:
        render_demo(console, r)
    if len(results) > 1:
        render_comparison(console, list(results))
    return out.getvalue()


def test_steps_come_in_story_order(result: DemoResult, machine: Machine):
    assert [s.key for s in result.steps] == list("abcdef")
    assert result.arch == machine.arch.name
    assert result.page_size == machine.arch.page_size
    assert all(step.kernel for step in result.steps)


def test_a_device_memory_is_mapped_raw(result: DemoResult, machine: Machine):
    a = result.step("a")
    (vma,) = a.vmas
    assert {"VM_IO", "VM_RESERVED", "VM_PFNMAP", "VM_SHARED"} <= set(vma.flags)
    assert vma.pgoff == io_pfn(machine) == a.facts["first_pfn"]
    assert vma.end - vma.start == DEMO_PAGES * machine.arch.page_size
    assert [r.pfn for r in a.ptes] == [io_pfn(machine, i) for i in range(DEMO_PAGES)]
    assert [r.verdict for r in a.ptes] == [RAW] * DEMO_PAGES
    assert not any(r.has_struct_page for r in a.ptes)
    assert all(machine.arch.pte_pfn(r.raw) == r.pfn for r in a.ptes)
    # remap_pfn_range filled the ptes at mmap time: reading takes no fault
    assert a.facts["faults"] == 0
    assert a.rss == {"parent": {"file_rss": 0, "anon_rss": 0}}
    assert a.facts["sample"] == io_bytes(machine, 0, SAMPLE_BYTES)
    assert a.facts["data_ok"]


def test_b_ram_through_dev_mem_is_raw_and_uncounted(result: DemoResult, machine: Machine):
    b = result.step("b")
    pfns = b.facts["pfns"]
    assert pfns == list(range(len(pfns))) and pfns
    assert b.vmas[0].pgoff == 0
    assert [r.verdict for r in b.ptes] == [RAW] * len(pfns)
    assert all(r.has_struct_page for r in b.ptes)
    for track in b.pages:
        before, after = track.first, track.last
        assert before == after
        assert (after.count, after.mapcount) == (1, 0)
        assert after.reserved
    assert b.facts["pages_unchanged"]
    assert b.rss["parent"] == {"file_rss": 0, "anon_rss": 0}
    assert b.facts["sample"] == machine.phys.read(0, SAMPLE_BYTES)


def test_c_write_to_private_dev_mem_cows_from_the_user_address(
    result: DemoResult, machine: Machine
):
    c = result.step("c")
    f = c.facts
    arch = machine.arch
    ps = arch.page_size
    assert "VM_SHARED" not in c.vmas[0].flags and "VM_PFNMAP" in c.vmas[0].flags
    assert not f["pte_writable_before"] and f["pte_writable_after"]
    assert f["verdict_before"] is RAW
    assert f["verdict_after"] is COWED
    assert f["neighbour_verdict"] is RAW  # only the written page was copied
    assert f["write_faults"] == [(True, "MINOR")]
    cow = f["cow_pfn"]
    assert machine.phys.pfn_valid(cow)
    assert cow != c.vmas[0].pgoff
    page = c.pages[0].last
    assert (page.count, page.mapcount) == (1, 1) and page.anon
    assert (f["file_rss"], f["anon_rss"]) == (0, 1)
    assert f["payload_ok"]
    # the seed copies a page's worth from the (unaligned) fault address: the new page starts
    # with the device bytes found `offset` bytes into the page
    device_offset = DEMO_PAGES * ps
    assert f["copy_source"] == "shifted"
    assert f["page_start_after"] == io_bytes(machine, device_offset + f["offset"], SAMPLE_BYTES)
    assert f["page_start_before"] == io_bytes(machine, device_offset, SAMPLE_BYTES)
    assert c.notes and "cow_user_page" in c.notes[0]
    assert 0 < f["offset"] < ps


def test_c_with_the_rc4_alignment_fix_the_copy_is_aligned(arch_name: str):
    rules = dataclasses.replace(SEED, name="seed+rc4-cow-align", cow_copy_aligned=True)
    machine = Machine(arch_name, "64M", rules=rules)
    c = run_demo(machine).step("c")
    assert c.facts["copy_source"] == "aligned"
    assert c.facts["page_start_after"] == c.facts["page_start_before"]
    assert c.facts["verdict_after"] is COWED


def test_d_fork_write_protects_and_counts_only_the_cowed_page(result: DemoResult):
    d = result.step("d")
    f = d.facts
    cow, raw_private = f["labels"].index("private, COWed page"), f["labels"].index("private, raw")
    assert f["parent_writable_before"][cow] and not f["parent_writable_after"][cow]
    assert not any(f["parent_writable_after"])
    # shared mappings are not COW mappings: the parent's ptes are left exactly as they were
    for i, label in enumerate(f["labels"]):
        if label.startswith("shared"):
            assert f["parent_raw_after"][i] == f["parent_raw_before"][i]
    expected = [COWED if i == cow else RAW for i in range(len(f["labels"]))]
    assert f["child_verdicts"] == expected
    assert not any(f["child_young"])  # copy_one_pte marks every child copy old
    assert f["child_raw"][raw_private] != f["child_raw"][cow]
    assert (f["cow_count"], f["cow_mapcount"]) == (2, 2)
    cowed = d.pages[0]
    assert (cowed.at("before fork").count, cowed.at("before fork").mapcount) == (1, 1)
    assert f["firmware_unchanged"]
    assert f["child_rss"] == {"file_rss": 0, "anon_rss": 1}
    assert d.rss["parent"] == {"file_rss": 0, "anon_rss": 1}


def test_e_munmap_and_exit_give_everything_back(result: DemoResult, machine: Machine):
    e = result.step("e")
    f = e.facts
    assert f["after_munmap"] == (1, 1)
    assert f["after_child_exit"] == (1, 1)
    assert f["after_parent_exit"] == (0, 0)
    assert f["child_rss_after_munmap"] == {"file_rss": 0, "anon_rss": 0}
    assert f["firmware_counts"] == [(1, 0)] * len(result.step("b").facts["pfns"])
    assert f["free_pages_restored"]
    assert f["processes_left"] == 0 and not machine.processes


def test_f_no_bad_pte_and_every_invariant_check_passes(result: DemoResult, machine: Machine):
    f = result.step("f")
    assert f.facts["bad_ptes"] == 0 and f.facts["log"] == []
    assert result.bad_ptes == [] and result.log == []
    assert all(step.bad_ptes == [] for step in result.steps)
    assert [step.invariants for step in result.steps] == [None] * 6
    assert f.facts["invariants_ok"] and result.ok
    assert f.facts["total_faults"] == machine.faults == sum(len(s.faults) for s in result.steps)


def test_the_recorder_is_unregistered_afterwards(machine: Machine):
    before = len(machine.plugin_manager.get_plugins())
    run_demo(machine)
    assert len(machine.plugin_manager.get_plugins()) == before


def test_running_out_of_memory_names_the_step(machine: Machine):
    phys = machine.phys
    hoard = [phys.alloc_page() for _ in range(phys.free_pages() - 3)]
    with pytest.raises(DemoError) as info:
        run_demo(machine)
    assert info.value.out_of_memory
    assert info.value.arch == machine.arch.name
    assert info.value.key in "abcdef"
    assert f"step ({info.value.key})" in str(info.value)
    # give the machine back in a state the fixture's teardown can audit
    for proc in list(machine.processes.values()):
        proc.exit()
    for pfn in hoard:
        phys.put_page(pfn)


def test_only_an_out_of_memory_cause_counts_as_out_of_memory():
    try:
        try:
            raise OutOfMemory("no free RAM pages")
        except OutOfMemory as oom:
            raise KernelError(11, "remap_pfn_range failed") from oom
    except KernelError as wrapped:
        assert DemoError("x86-64", "a", "t", wrapped).out_of_memory
    assert not DemoError("x86-64", "a", "t", KernelBug("boom")).out_of_memory


def test_render_shows_every_step_and_the_decisions(result: DemoResult, machine: Machine):
    text = render(result)
    for step in result.steps:
        assert f"({step.key}) {step.title}" in text
    width = machine.arch.pte_level.entry_bytes * 2
    assert f"{result.step('a').ptes[0].raw:0{width}x}" in text
    assert "raw pfn" in text and "COWed page in a PFN vma" in text
    assert PAYLOAD.decode() in text
    assert f"{format_size(machine.arch.page_size)} pages" in text
    assert "machine log: empty" in text
    assert "FAILED" not in text
    assert max(len(line) for line in text.splitlines()) <= 120


def test_render_shows_bad_pte_lines_and_failures(result: DemoResult):
    line = "Bad pte = 00000000f0000025, process = parent, vm_flags = 844f9, vaddr = 2aaaaaaab000"
    result.log.append(line)
    result.bad_ptes.append(BadPteReport(line, 0xF0000025, "parent", 0x844F9, 0x1000, "test"))
    result.step("c").invariants = "page 0x15: count=2 mapcount=1, expected count=1 mapcount=1"
    assert not result.ok
    text = render(result)
    assert line in text
    assert "expected count=1" in text
    assert "bad ptes or failed invariant checks" in text


def test_comparison_agrees_across_runs_and_flags_a_difference(arch_name: str):
    first = run_demo(Machine(arch_name, "64M"))
    second = run_demo(Machine(arch_name, "32M"))
    assert semantic_signature(first) == semantic_signature(second)
    assert "Every arch made the same decisions" in render(first, second)
    second.step("d").ptes[-1] = dataclasses.replace(second.step("d").ptes[-1], verdict=COWED)
    assert semantic_signature(first) != semantic_signature(second)
    assert "disagree" in render(first, second)


@pytest.mark.parametrize(
    ("size", "text"),
    [(4096, "4 KiB"), (8192, "8 KiB"), (2 << 20, "2 MiB"), (1 << 30, "1 GiB"), (5000, "5000 B")],
)
def test_format_size(size: int, text: str):
    assert format_size(size) == text
