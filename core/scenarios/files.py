"""Scenario files: a story in TOML (format 1), read and checked before anything runs.

A file names a machine and lists steps (spawn, open, mmap, write, fork, ...) with optional
expectations; :mod:`pfnmap.scenarios.play` runs it and ``pfnmap run FILE`` prints the report.
:func:`load` reads a file and checks every key, type, name and the order of the steps (a write to
a mapping that no earlier step made, a task used before it was spawned or after it exited), and
raises :class:`ScenarioFileError` as ``FILE:LINE: what is wrong`` for the first problem.

TOML (Python's own ``tomllib``) does not say where a value came from, so :class:`_Lines` scans the
text once for table headers and ``key =`` lines and maps each value's path to its line.
The keys are in :mod:`pfnmap.scenarios.schema`; docs/scenario-files.rst describes them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pfnmap.arches import DEFAULT_ARCH
from pfnmap.errors import PfnmapError
from pfnmap.kernel.units import parse_size
from pfnmap.scenarios import schema

#: a path into the parsed document: keys and array indices
Path_ = tuple[str | int, ...]


class ScenarioFileError(PfnmapError):
    """A scenario file that cannot be run: ``FILE:LINE: message``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


# where each value came from ---------------------------------------------------------------
_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"]+(?:\s*\.\s*[A-Za-z0-9_\-\"]+)*)\s*=")


class _Lines:
    """Line numbers of table headers and ``key =`` lines, by document path."""

    def __init__(self, text: str) -> None:
        self.lines: dict[Path_, int] = {}
        counts: dict[Path_, int] = {}
        current: Path_ = ()
        # the index of the last element of each array of tables, by its dotted name
        last: dict[tuple[str, ...], int] = {}
        in_string: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            header = _HEADER.match(line)
            if header:
                names = tuple(p.strip().strip('"') for p in header.group(2).split("."))
                path: list[str | int] = []
                for depth, name in enumerate(names):
                    path.append(name)
                    if depth < len(names) - 1 and names[: depth + 1] in last:
                        path.append(last[names[: depth + 1]])
                if header.group(1) == "[[":
                    # the element's index among those of the same array under the same parent
                    index = counts.get(tuple(path), 0)
                    counts[tuple(path)] = index + 1
                    last[names] = index
                    path.append(index)
                current = tuple(path)
                self.lines.setdefault(current, number)
                continue
            key = _KEY.match(line)
            if key:
                names = tuple(p.strip().strip('"') for p in key.group(1).split("."))
                self.lines.setdefault(current + names, number)
                rest = line[key.end() :]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_string = quote

    def of(self, path: Path_) -> int | None:
        """The line of ``path``, or of the nearest enclosing value that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None


# expressions ------------------------------------------------------------------------------
_TERM = re.compile(
    r"^(?:(?P<pages>\d+)\s*pages?|(?P<num>0[xX][0-9a-fA-F_]+|\d[\d_]*)"
    r"|(?P<size>\d+\s*[KMGT]i?B?)|(?P<name>[A-Za-z_][\w.\-]*))$"
)


@dataclass(frozen=True)
class Expr:
    """An address or size: signed terms, each an int, ``N pages`` or a name."""

    text: str
    terms: tuple[tuple[int, str, int | str], ...]  # (sign, "int"|"pages"|"name", value)

    @property
    def names(self) -> list[str]:
        return [str(v) for _, kind, v in self.terms if kind == "name"]

    def eval(self, page_size: int, names: dict[str, int] | None = None) -> int:
        total = 0
        for sign, kind, value in self.terms:
            if kind == "int":
                total += sign * int(value)
            elif kind == "pages":
                total += sign * int(value) * page_size
            else:
                total += sign * (names or {})[str(value)]
        return total


def parse_expr(value: Any, allow_names: bool) -> Expr:
    """``"cow + 1 page + 0x10"`` -> Expr; ints pass through. ValueError says what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected an int or a string such as '2 pages', not {value!r}")
    if isinstance(value, int):
        return Expr(str(value), ((1, "int", value),))
    text = value.strip()
    if not text:
        raise ValueError("an empty address or size")
    terms: list[tuple[int, str, int | str]] = []
    sign = 1
    for token in re.split(r"\s*([+-])\s*", text):
        if token in ("+", "-"):
            sign = 1 if token == "+" else -1
            continue
        m = _TERM.match(token.strip())
        if not token.strip() or m is None:
            raise ValueError(f"{token!r} in {text!r} is not a number, 'N pages', a size or a name")
        if m.group("pages"):
            terms.append((sign, "pages", int(m.group("pages"))))
        elif m.group("num"):
            terms.append((sign, "int", int(m.group("num").replace("_", ""), 0)))
        elif m.group("size"):
            terms.append((sign, "int", parse_size(m.group("size").replace(" ", ""))))
        else:
            if not allow_names:
                raise ValueError(f"{token!r} in {text!r}: a size takes no names")
            terms.append((sign, "name", m.group("name")))
        sign = 1
    return Expr(text, tuple(terms))


_PROT = {"r": 1, "w": 2, "x": 4}


def parse_prot(value: str) -> int:
    """``"rw"`` -> PROT_READ|PROT_WRITE; ``"none"`` -> PROT_NONE."""
    text = value.strip().lower()
    if text in ("none", "-", ""):
        return 0
    if any(c not in _PROT for c in text) or len(set(text)) != len(text):
        raise ValueError(f"{value!r} is not a protection (use r, rw, rwx, rx or none)")
    return sum(_PROT[c] for c in text)


# the model --------------------------------------------------------------------------------
@dataclass
class Expect:
    """One ``[[step.expect]]`` entry (or ``[[end.expect]]``)."""

    line: int | None
    checks: dict[str, Any]
    at: Expr | None = None
    task: str | None = None
    eras: tuple[str, ...] = ()
    arches: tuple[str, ...] = ()

    def applies(self, era: str, arch: str) -> bool:
        return (not self.eras or era in self.eras) and (not self.arches or arch in self.arches)

    def describe(self) -> str:
        where = f" at {self.at.text}" if self.at is not None else ""
        who = f" ({self.task})" if self.task else ""
        parts = ", ".join(f"{k} = {show_value(v)}" for k, v in self.checks.items())
        return f"{parts}{where}{who}"


def show_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {show_value(v)}" for k, v in value.items()) + "}"
    return repr(value) if isinstance(value, str) else str(value)


@dataclass
class Step:
    """One ``[[step]]``: what to do, by which task, with which arguments."""

    index: int
    line: int | None
    do: str
    task: str
    args: dict[str, Any]
    title: str = ""
    why: str = ""
    kernel: tuple[str, ...] = ()
    expects: list[Expect] = field(default_factory=list)

    def describe(self) -> str:
        """``mmap parent io: 4 pages rw shared file=mem offset=fb0`` style summary."""
        parts = []
        for key, value in self.args.items():
            if isinstance(value, Expr):
                value = value.text
            elif key == "prot":
                value = _prot_text(value)
            parts.append(f"{key}={value}" if not isinstance(value, str) else f"{key}={value!r}")
        return f"{self.do} ({self.task})" + (": " + ", ".join(parts) if parts else "")


def _prot_text(prot: int) -> str:
    return "".join(c for c, bit in _PROT.items() if prot & bit) or "none"


@dataclass
class Device:
    line: int | None
    kind: str
    path: str
    args: dict[str, Any]


@dataclass
class ScenarioFile:
    """A checked scenario file, ready for :func:`pfnmap.scenarios.play.play`."""

    path: str
    name: str
    title: str
    description: str
    arch: str
    ram: int
    era: str
    devices: list[Device]
    steps: list[Step]
    end: list[Expect]
    version: int = schema.FORMAT_VERSION


# checking ---------------------------------------------------------------------------------
class _Checker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = _Lines(text)

    def fail(self, where: Path_, message: str) -> ScenarioFileError:
        return ScenarioFileError(self.path, self.lines.of(where), message)

    def table(self, value: Any, where: Path_, keys: dict[str, str], what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"{what} must be a table")
        for key in value:
            if key not in keys:
                known = ", ".join(keys)
                raise self.fail(where + (key,), f"unknown key {key!r} in {what} (known: {known})")
        return {k: self.value(v, where + (k,), keys[k], k) for k, v in value.items()}

    def value(self, value: Any, where: Path_, kind: str, key: str) -> Any:
        def wrong(expected: str) -> ScenarioFileError:
            return self.fail(where, f"{key} must be {expected}, not {show_value(value)}")

        if kind in ("table", "array"):
            return value
        if kind == "str":
            if not isinstance(value, str):
                raise wrong("a string")
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise wrong("an integer")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise wrong("true or false")
            return value
        if kind == "strlist":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise wrong("a list of strings")
            return tuple(value)
        if kind in ("size", "vaddr", "paddr"):
            try:
                expr = parse_expr(value, allow_names=kind != "size")
            except ValueError as exc:
                raise self.fail(where, f"{key}: {exc}") from None
            return expr
        if kind == "prot":
            if not isinstance(value, str):
                raise wrong("a string such as 'rw'")
            try:
                return parse_prot(value)
            except ValueError as exc:
                raise self.fail(where, f"{key}: {exc}") from None
        if kind == "mapflags":
            if value not in ("shared", "private"):
                raise wrong("'shared' or 'private'")
            return value
        if kind == "fields":
            if not isinstance(value, dict) or not all(
                isinstance(v, (int, bool)) for v in value.values()
            ):
                raise wrong("a table of field names to integers or booleans")
            return {k: int(v) for k, v in value.items()}
        if kind == "pieces":
            ok = isinstance(value, list) and all(
                isinstance(p, list) and len(p) == 3 and all(type(x) is int for x in p)
                for p in value
            )
            if not ok:
                raise wrong("a list of [vma page, pages, window page] triples")
            return [tuple(p) for p in value]
        if kind == "layout":
            ok = isinstance(value, list) and all(
                isinstance(p, list) and len(p) == 2 and p[0] in ("ram", "io") and type(p[1]) is int
                for p in value
            )
            if not ok:
                raise wrong('a list of ["ram", index] or ["io", page] pairs')
            return [tuple(p) for p in value]
        raise AssertionError(kind)

    def array(self, value: Any, where: Path_, what: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.fail(where, f"{what} must be an array of tables ([[{what}]])")
        return value


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioFileError(path, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioFileError(path, None, f"cannot read it: {exc}") from None


_TOML_WHERE = re.compile(r"\(at line (\d+), column \d+\)")


def loads(text: str, path: str = "<string>") -> ScenarioFile:
    """Parse and check a scenario file's text (``path`` only names it in errors)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        m = _TOML_WHERE.search(message)
        line = int(m.group(1)) if m else None
        detail = _TOML_WHERE.sub("", message).strip()
        raise ScenarioFileError(path, line, f"not valid TOML: {detail}") from None
    c = _Checker(path, text)
    top = c.table(doc, (), schema.TOP, "the file")
    version = top.get("format")
    if version is None:
        raise c.fail((), f"the file must start with 'format = {schema.FORMAT_VERSION}'")
    if version != schema.FORMAT_VERSION:
        raise c.fail(
            ("format",),
            f"format {version} is not one this pfnmap reads (it reads {schema.FORMAT_VERSION})",
        )
    machine = c.table(top.get("machine", {}), ("machine",), schema.MACHINE, "[machine]")
    ram = machine.get("ram")
    devices = _devices(c, machine.get("device", []))
    steps = _steps(c, top.get("step", []), devices)
    end_table = c.table(top.get("end", {}), ("end",), schema.END, "[end]")
    end = [
        _expect(c, e, ("end", "expect", j), pte_ok=False)
        for j, e in enumerate(c.array(end_table.get("expect", []), ("end", "expect"), "end.expect"))
    ]
    return ScenarioFile(
        path=path,
        name=top.get("name") or Path(path).stem,
        title=top.get("title", ""),
        description=top.get("description", ""),
        arch=machine.get("arch", DEFAULT_ARCH),
        ram=ram.eval(4096) if ram is not None else parse_size("64M"),
        era=machine.get("era", "seed"),
        devices=devices,
        steps=steps,
        end=end,
    )


def load(path: str | Path) -> ScenarioFile:
    """Read and check the scenario file at ``path``."""
    return loads(_read_text(str(path)), str(path))


def _devices(c: _Checker, raw: Any) -> list[Device]:
    out = []
    paths: set[str] = set()
    for i, dev in enumerate(c.array(raw, ("machine", "device"), "machine.device")):
        where: Path_ = ("machine", "device", i)
        kind = dev.get("kind")
        if kind not in schema.DEVICES:
            raise c.fail(
                where + ("kind",),
                f"a device needs kind = one of {', '.join(schema.DEVICES)} (got {kind!r})",
            )
        keys = {"kind": "str", "path": "str", **schema.DEVICES[kind]}
        args = c.table(dev, where, keys, f"a {kind} device")
        path = args.pop("path", None)
        args.pop("kind")
        if not path:
            raise c.fail(where, "a device needs a path, e.g. path = '/dev/fb'")
        if path in paths or path in ("/dev/mem", "/dev/zero"):
            raise c.fail(where + ("path",), f"{path} exists already")
        paths.add(path)
        out.append(Device(c.lines.of(where), kind, path, args))
    return out


class _Order:
    """What exists at each step: tasks alive, their fd names, mapping names."""

    def __init__(self) -> None:
        self.alive: set[str] = set()
        self.gone: set[str] = set()
        self.fds: dict[str, set[str]] = {}
        self.mappings: set[str] = set()


def _steps(c: _Checker, raw: Any, devices: list[Device]) -> list[Step]:
    steps: list[Step] = []
    order = _Order()
    files = {"/dev/mem", "/dev/zero"} | {d.path for d in devices}
    current: str | None = None
    for i, entry in enumerate(c.array(raw, ("step",), "step")):
        where: Path_ = ("step", i)
        do = entry.get("do")
        if not isinstance(do, str) or do not in schema.STEPS:
            raise c.fail(
                where + ("do",) if "do" in entry else where,
                f"a step needs do = one of {', '.join(schema.STEPS)} (got {show_value(do)})",
            )
        keys = {**schema.STEP_COMMON, **schema.STEPS[do]}
        args = c.table(entry, where, keys, f"a {do} step")
        for key in schema.REQUIRED.get(do, ()):
            if key not in args:
                raise c.fail(where, f"a {do} step needs {key}")
        task = args.pop("task", None) or current
        if task is None:
            raise c.fail(where, f"{do}: which task? (task = 'NAME'; start with a spawn step)")
        current = task
        common = {k: args.pop(k) for k in ("do", "title", "why", "kernel", "expect") if k in args}
        step = Step(
            i,
            c.lines.of(where),
            do,
            task,
            args,
            common.get("title", ""),
            common.get("why", ""),
            common.get("kernel", ()),
        )
        _check_order(c, where, step, order, files)
        step.expects = [
            _expect(c, e, where + ("expect", j), pte_ok=True)
            for j, e in enumerate(c.array(common.get("expect", []), where + ("expect",), "expect"))
        ]
        for j, e in enumerate(step.expects):
            for name in e.at.names if e.at is not None else ():
                if name not in order.mappings:
                    raise c.fail(
                        where + ("expect", j, "at"), f"no mapping named {name!r} at this step"
                    )
            if e.task is not None and e.task not in order.alive | order.gone:
                raise c.fail(where + ("expect", j, "task"), f"no task named {e.task!r}")
        steps.append(step)
    return steps


def _check_order(c: _Checker, where: Path_, step: Step, order: _Order, files: set[str]) -> None:
    task, args = step.task, step.args
    if step.do == "spawn":
        if task in order.alive or task in order.gone:
            raise c.fail(where, f"a task named {task!r} exists already")
        order.alive.add(task)
        order.fds[task] = set()
        return
    if task not in order.alive:
        state = "has exited" if task in order.gone else "does not exist yet (spawn or fork it)"
        raise c.fail(where, f"{step.do}: task {task!r} {state}")
    for key in ("at", "offset", "length"):
        expr = args.get(key)
        for name in expr.names if isinstance(expr, Expr) and key == "at" else ():
            if name not in order.mappings:
                raise c.fail(
                    where + (key,),
                    f"{step.do} at {expr.text!r}: no mapping named {name!r} yet "
                    "(an mmap step with that name must come first)",
                )
    if step.do == "open":
        if args["path"] not in files:
            known = ", ".join(sorted(files))
            raise c.fail(where + ("path",), f"no file {args['path']!r} (known: {known})")
        args.setdefault("fd", args["path"])
        order.fds[task].add(args["fd"])
    elif step.do == "close":
        if args["fd"] not in order.fds[task]:
            raise c.fail(where + ("fd",), f"task {task!r} has no open file {args['fd']!r}")
        order.fds[task].discard(args["fd"])
    elif step.do == "mmap":
        name = args["name"]
        if name in order.mappings:
            raise c.fail(where + ("name",), f"a mapping named {name!r} exists already")
        if "file" in args and args["file"] not in order.fds[task]:
            raise c.fail(
                where + ("file",),
                f"task {task!r} has no open file {args['file']!r} (open it first)",
            )
        if "offset" in args and "file" not in args:
            raise c.fail(where + ("offset",), "offset needs a file")
        args.setdefault("prot", 3)
        args.setdefault("flags", "private")
        order.mappings.add(name)
    elif step.do == "fork":
        child = args["child"]
        if child in order.alive or child in order.gone:
            raise c.fail(where + ("child",), f"a task named {child!r} exists already")
        order.alive.add(child)
        order.fds[child] = set(order.fds[task])
    elif step.do == "exit":
        order.alive.discard(task)
        order.gone.add(task)
    elif step.do == "poke" and ("value" in args) == ("fields" in args):
        raise c.fail(where, "a poke step needs value = RAW or fields = {...}, not both")


def _expect(c: _Checker, raw: Any, where: Path_, pte_ok: bool) -> Expect:
    args = c.table(raw, where, schema.EXPECT, "an expectation")
    checks = {k: args[k] for k in schema.CHECKS if k in args}
    if not checks:
        raise c.fail(
            where, f"an expectation checks nothing (give one of {', '.join(schema.CHECKS)})"
        )
    if "outcome" in checks and not pte_ok:
        raise c.fail(where + ("outcome",), "outcome is checked at a step, not at the end")
    pte = [k for k in schema.PTE_CHECKS if k in checks]
    if pte and not pte_ok:
        raise c.fail(where + (pte[0],), f"{pte[0]} is checked at a step, not at the end")
    if pte and "at" not in args:
        raise c.fail(where + (pte[0],), f"{pte[0]} needs at = the address of the pte")
    if "verdict" in checks and checks["verdict"] not in schema.VERDICTS:
        raise c.fail(
            where + ("verdict",),
            f"verdict {checks['verdict']!r} is not one of {', '.join(schema.VERDICTS)}",
        )
    return Expect(
        c.lines.of(where),
        checks,
        args.get("at"),
        args.get("task"),
        args.get("eras", ()),
        args.get("arches", ()),
    )


# the shipped files ------------------------------------------------------------------------
def shipped() -> dict[str, str]:
    """name -> path of the scenario files that come with pfnmap (pfnmap run NAME)."""
    folder = resources.files("pfnmap.scenarios") / "stories"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            out[entry.name.removesuffix(".toml")] = str(entry)
    return out
