"""The scenario library (pfnmap.scenarios): each scenario's outcome under each era.

Every expectation restates a scenario's docstring, which follows kernel-reference §3, §4, §5.5,
§7 and §8: the seed is 6aab341e, "unpaged" mm/memory.c at ee498ed7, "2.6.15" the seed with the
rc4 and rc6 fixes, "2.6.26" VM_MIXEDMAP and pte_special. The scenarios run on the session's
``--arch``; sunffb's sparc64 column (the report as filed, on rc6) has its own test.
"""

from __future__ import annotations

import pytest

from pfnmap import Machine
from pfnmap.kernel.rules import ERAS
from pfnmap.scenarios import SCENARIOS, Observations, UnknownScenario, get_scenario, run_scenario


def play(name: str, arch: str, era: str) -> Observations:
    return run_scenario(name, Machine(arch, "64M", era=era))


def outcome(obs: Observations, step: str) -> str:
    return obs.step(step).outcome


def value(obs: Observations, key: str, step: str | None = None):
    return obs.row(key, step).value


#: (scenario, era) runs that end with the machine out of balance, and why (each is the era's
#: own behaviour, see the scenario's docstring)
UNBALANCED = {
    ("partial_private", "unpaged"): "the ZERO_PAGE in a VM_UNPAGED hole is never given back",
    ("fork_after_cow", "unpaged"): "an unaligned write fault misses page_is_anon: page leaked",
}


def unbalanced(name: str, era: str, arch: str) -> bool:
    """Runs that end out of balance: :data:`UNBALANCED`, and devmem_grow where vm_normal_page
    calls the page read into the grown part of a VM_PFNMAP vma raw (see its docstring)."""
    if (name, era) in UNBALANCED:
        return True
    if name == "devmem_grow":
        return era in ("unpaged", "2.6.15") or (
            era == "2.6.26" and not Machine(arch).arch.special_mask
        )
    return False


def stops(name: str, era: str, arch: str) -> bool:
    """Runs where the emulated kernel BUGs (the scenario then ends)."""
    if (name, era) == ("insert_page_fork", "seed"):
        return True
    return (name, era) == ("sunffb", "2.6.26") and not Machine(arch).arch.special_mask


def test_registry() -> None:
    """A registry of named scenarios, each with a title, the kernel functions it exercises and
    a docstring saying what each era does."""
    assert list(SCENARIOS) == [
        "partial_private",
        "shared_remaps",
        "sunffb",
        "devmem_cow",
        "fork_after_cow",
        "gup_no_vm_io",
        "insert_page_fork",
        "mixedmap_cow",
        "zero_page",
        "pfnmap_selftest",
        "devmem_grow",
    ]
    for sc in SCENARIOS.values():
        assert sc.title and sc.kernel and "2.6." in sc.doc
    with pytest.raises(UnknownScenario, match="known: partial_private"):
        get_scenario("nope")


@pytest.mark.parametrize("era", list(ERAS))
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_runs_to_its_end(arch_name: str, name: str, era: str) -> None:
    """Each run ends with every task gone and the invariant check, or with the BUG the era
    hits; failures of the kernel are outcomes, never exceptions out of the run."""
    obs = play(name, arch_name, era)
    assert obs.era == era and obs.arch == arch_name
    if stops(name, era, arch_name):
        assert obs.stopped and "BUG" in obs.stopped
        return
    assert obs.stopped is None
    assert obs.steps[-1].outcome in ("ok", "skipped")
    inv = obs.row("invariants")
    if unbalanced(name, era, arch_name):
        assert inv.value != "ok"
    else:
        assert inv.value == "ok", inv.why
    # the machine's rules are given back after the run
    assert obs.rules is ERAS[era]


def test_partial_private(arch_name: str) -> None:
    """remap_pfn_range on half a private vma: accepted before rc6 (unpaged, seed), EINVAL from
    2.6.15 on; the seed COWs the remapped page through the unaligned user address, before the
    seed device memory cannot be COWed (bad pte, OOM)."""
    seed = play("partial_private", arch_name, "seed")
    assert outcome(seed, "mmap") == "ok"
    assert value(seed, "COW copy of page 0") == "shifted"
    assert value(seed, "pte dev[2] (X)", "read the hole") == "COWed page in a PFN vma"
    assert seed.log == []
    for era in ("2.6.15", "2.6.26"):
        obs = play("partial_private", arch_name, era)
        assert outcome(obs, "mmap") == "EINVAL"
        assert "remap_cow_whole_vma" in obs.step("mmap").fields
    unpaged = play("partial_private", arch_name, "unpaged")
    assert outcome(unpaged, "write the remapped part") == "OOM"
    assert unpaged.step("write the remapped part").bad_pte_callers == ["do_wp_page"]
    assert outcome(unpaged, "fork") == "skipped"
    assert "ZERO_PAGE" not in unpaged.row("invariants").why  # the page is named by its pfn
    assert value(unpaged, "pte dev[2] (X)", "read the hole") == "raw pfn"


def test_shared_remaps(arch_name: str) -> None:
    """Repeated remaps of a shared vma: every pte a bad pte at the seed (fork, the child's exit,
    the unmap), raw and silent in every other era."""
    seed = play("shared_remaps", arch_name, "seed")
    assert seed.step("fork").bad_pte_callers == ["copy_one_pte"] * 4
    assert seed.step("child exits").bad_pte_callers == ["zap_pte_range"] * 4
    assert seed.step("X unmaps").bad_pte_callers == ["zap_pte_range"] * 4
    assert value(seed, "the pages show the device's bytes") is True
    for era in ("unpaged", "2.6.15", "2.6.26"):
        obs = play("shared_remaps", arch_name, era)
        assert obs.log == [], era
        assert all(
            r.value == "raw pfn" for r in obs.rows if r.kind == "pte" and r.step == "mmap"
        ), era
        assert value(obs, "the child's write reached the device") is True


def test_sunffb_on_an_arch_that_honours_the_cow_check() -> None:
    """x86 (io_remap_pfn_range is remap_pfn_range): the seed reports every pte at fork, X's
    drawing after fork COWs into RAM; 2.6.15 refuses MAP_PRIVATE, X falls back to MAP_SHARED
    and draws into the framebuffer; before the seed the raw ptes stay writable across fork."""
    seed = play("sunffb", "x86-64", "seed")
    assert outcome(seed, "X mmaps the framebuffer MAP_PRIVATE") == "ok"
    assert seed.step("X forks").bad_pte_callers == ["copy_one_pte"] * 4
    assert seed.step("X draws").bad_pte_callers == ["do_wp_page"]
    assert value(seed, "X's drawing reached the framebuffer") is False
    assert value(seed, "rss (X)") == "file 0 anon 1"
    final = play("sunffb", "x86-64", "2.6.15")
    assert outcome(final, "X mmaps the framebuffer MAP_PRIVATE") == "EINVAL"
    assert outcome(final, "X falls back to MAP_SHARED") == "ok"
    assert final.log == [] and value(final, "X's drawing reached the framebuffer") is True
    unpaged = play("sunffb", "x86-64", "unpaged")
    assert unpaged.log == [] and value(unpaged, "X's drawing reached the framebuffer") is True
    assert "VM_UNPAGED" in value(unpaged, "vma fb (X)")


def test_sunffb_on_sparc64_is_the_rc6_report() -> None:
    """sparc64's own io_remap_pfn_range had no COW check, so 2.6.15 (as the rc6 of the report)
    maps it and logs "Bad pte" from copy_one_pte, then do_wp_page, then unmap; each logged pte
    has the flag bits of the report's 1fa00600a88 (E|PRESENT|READ|MODIFIED: pg_iobits less the
    write bits taken by the COW write-protect and the valid/accessed bits taken by pte_mkold)
    and vm_flags 84473 (the report's 184473 has VM_ACCOUNT, which pfnmap does not model).
    2.6.26 without a special bit: VM_BUG_ON at the fork."""
    obs = play("sunffb", "sparc64", "2.6.15")
    assert outcome(obs, "X mmaps the framebuffer MAP_PRIVATE") == "ok"
    fork = obs.step("X forks")
    assert fork.bad_pte_callers == ["copy_one_pte"] * 4
    for line in fork.log:
        pte = int(line.split()[3].rstrip(","), 16)
        assert pte & 0x1FFF == 0xA88 and not pte >> 63
        assert "process = X, vm_flags = 84473" in line
    assert value(obs, "X's drawing reached the framebuffer") is False
    late = play("sunffb", "sparc64", "2.6.26")
    assert outcome(late, "X forks") == "BUG" and "VM_BUG_ON" in late.stopped


def test_devmem_cow(arch_name: str) -> None:
    """COW of /dev/mem pages: the seed's copy is shifted (user address, unaligned), 2.6.15's is
    aligned; before the seed RAM is copied from its struct page and device memory is a bad pte
    and VM_FAULT_OOM (the task is killed). The device itself never changes."""
    expect = {
        "seed": ("shifted", "shifted"),
        "2.6.15": ("aligned", "aligned"),
        "2.6.26": ("aligned", "aligned"),
    }
    for era, (ram, io) in expect.items():
        obs = play("devmem_cow", arch_name, era)
        assert value(obs, "COW copy of the RAM page") == ram, era
        assert value(obs, "COW copy of the device page") == io, era
        assert value(obs, "the device is unchanged") is True
    unpaged = play("devmem_cow", arch_name, "unpaged")
    assert value(unpaged, "COW copy of the RAM page") == "aligned"
    assert outcome(unpaged, "write into the device window") == "OOM"
    assert outcome(unpaged, "write into the device window: X killed") == "ok"
    assert value(unpaged, "page firmware pfn 4") == "count 1 mapcount 0"


def test_fork_after_cow(arch_name: str) -> None:
    """Every era counts the COWed page at fork and leaves the raw page alone; before the seed the
    raw pte is copied verbatim (young), from the seed on the child's copy is old. The parent's
    later write reuses its page, except before the seed at an unaligned address."""
    raws = {}
    for era in ERAS:
        obs = play("fork_after_cow", arch_name, era)
        assert value(obs, "page COWed", "fork") == "count 2 mapcount 2", era
        assert value(obs, "pte mem[0] (child)", "fork") == "COWed page in a PFN vma"
        assert value(obs, "pte mem[1] (child)", "fork") == "raw pfn"
        assert value(obs, "page firmware pfn 7", "fork") == "count 1 mapcount 0"
        assert value(obs, "X kept its page") is (era != "unpaged")
        raws[era] = obs.row("pte mem[1] (child)", "fork").detail
    m = Machine(arch_name)
    child_raw = {era: int(detail.split()[1], 16) for era, detail in raws.items()}
    assert m.arch.pte_young(child_raw["unpaged"])
    assert not m.arch.pte_young(child_raw["seed"])


def test_gup_no_vm_io(arch_name: str) -> None:
    """get_user_pages: /dev/mem (VM_IO) is EFAULT everywhere; without VM_IO the seed spins on
    both PFN vmas, 2.6.15 and 2.6.26 refuse them, and before the seed device memory spins while
    the RAM window is handed out page by page (pinned, then released)."""
    table = {
        "unpaged": ("livelock", "ok"),
        "seed": ("livelock", "livelock"),
        "2.6.15": ("EFAULT", "EFAULT"),
        "2.6.26": ("EFAULT", "EFAULT"),
    }
    for era, (bar, buf) in table.items():
        obs = play("gup_no_vm_io", arch_name, era)
        assert outcome(obs, "gup /dev/mem (VM_IO)") == "EFAULT"
        assert outcome(obs, "gup the BAR (no VM_IO)") == bar, era
        assert outcome(obs, "gup the RAM buffer (no VM_IO)") == buf, era
        assert "VM_IO" not in value(obs, "vma bar (X)").split("|")
    unpaged = play("gup_no_vm_io", arch_name, "unpaged")
    assert value(unpaged, "pages pinned") == ["0x8", "0x9"]
    assert value(unpaged, "page buffer pfn 8", "gup the RAM buffer (no VM_IO)") == (
        "count 2 mapcount 0"
    )
    assert value(unpaged, "page buffer pfn 8", "put the pages") == "count 1 mapcount 0"


def test_insert_page_fork(arch_name: str) -> None:
    """2.6.15 and 2.6.26: vm_insert_page gives real file pages and VM_INSERTPAGE copies them at
    fork; the seed's per-page remap_pfn_range makes them "COWed pages", counted at fork and
    uncounted twice (BUG at the parent's exit); before the seed nothing is counted."""
    for era in ("2.6.15", "2.6.26"):
        obs = play("insert_page_fork", arch_name, era)
        assert "VM_INSERTPAGE" in value(obs, "vma ring (X)")
        assert value(obs, "rss (X)", "mmap") == "file 3 anon 0"
        assert value(obs, "page ring page 1", "fork") == "count 3 mapcount 2"
        assert value(obs, "the child reads the driver's page") is True
    seed = play("insert_page_fork", arch_name, "seed")
    assert value(seed, "pte ring[0] (X)", "mmap") == "COWed page in a PFN vma"
    assert value(seed, "pte ring[2] (X)", "mmap") == "COWed page in a PFN vma"
    assert value(seed, "page ring page 0", "fork") == "count 2 mapcount 1"
    assert outcome(seed, "X exits") == "BUG" and "page_remove_rmap" in seed.stopped
    unpaged = play("insert_page_fork", arch_name, "unpaged")
    assert value(unpaged, "page ring page 1", "fork") == "count 1 mapcount 0"
    assert value(unpaged, "the child reads the driver's page") is True


def test_mixedmap_cow(arch_name: str) -> None:
    """VM_MIXEDMAP exists from 2.6.26 only (ENOSYS before). With a special bit every inserted pte
    is raw and uncounted; without one the RAM pages are refcounted file pages and the COW of
    one moves it from file_rss to anon_rss."""
    for era in ("unpaged", "seed", "2.6.15"):
        obs = play("mixedmap_cow", arch_name, era)
        assert outcome(obs, "mmap") == "ENOSYS"
    obs = play("mixedmap_cow", arch_name, "2.6.26")
    special = bool(Machine(arch_name).arch.special_mask)
    assert value(obs, "rss (X)", "mmap") == ("file 0 anon 0" if special else "file 2 anon 0")
    assert value(obs, "rss (X)", "X writes page 1") == (
        "file 0 anon 2" if special else "file 1 anon 2"
    )
    assert value(obs, "pte xip[1] (X)", "mmap") == "raw pfn"
    assert value(obs, "pte xip[0] (X)", "mmap") == ("raw pfn" if special else "normal page")
