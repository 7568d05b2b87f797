"use strict";
// pfnmap's page: draws the JSON block (id="pfnmap-data") as steps, an era comparison or a
// decoded dump. Plain DOM and SVG, no library, no network. Entries and addresses are hex
// strings in the data and BigInt here, since they may pass 2**53.
(function () {
  const DATA = JSON.parse(document.getElementById("pfnmap-data").textContent);
  const SVGNS = "http://www.w3.org/2000/svg";
  const view = document.getElementById("view");

  // DOM helpers ------------------------------------------------------------------------
  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
  }
  function append(e, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
  }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, kids);
    return e;
  }
  function sv(tag, attrs, ...kids) {
    const e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    append(e, kids);
    return e;
  }
  function hex(value, digits) {
    return BigInt(value).toString(16).padStart(digits || 1, "0");
  }
  function badge(text, cls) {
    return el("span", { class: "badge " + (cls || ""), text: text });
  }
  function verdictBadge(v) {
    return v ? badge(v, "v-" + v) : badge("-", "");
  }

  // bit boxes ------------------------------------------------------------------------------
  // One cell per bit, the top bit on the left, fields as the arch's construct layout lists
  // them; bits that changed since the step before are outlined and tinted.
  function bitbox(fmt, rawHex, changedHex, detailed) {
    const W = fmt.width;
    const cell = detailed ? 14 : 6;
    const numH = detailed ? 12 : 0;
    const cellH = detailed ? 18 : 10;
    const labelH = detailed ? 66 : 0;
    const width = W * cell;
    const height = numH + cellH + labelH;
    const raw = BigInt(rawHex);
    const changed = BigInt(changedHex || "0x0");
    const svg = sv("svg", {
      class: "bitbox " + (detailed ? "detailed" : "mini"), width: width, height: height,
      viewBox: `0 0 ${width} ${height}`, role: "img", "data-raw": rawHex,
      "data-changed": changedHex || "0x0", "data-format": fmt.name,
      "aria-label": `${fmt.name} ${rawHex}`,
    });
    const fieldOf = [];
    for (const [name, shift, w] of fmt.fields) {
      for (let b = shift; b < shift + w; b++) fieldOf[b] = name;
    }
    for (let b = W - 1; b >= 0; b--) {
      const x = (W - 1 - b) * cell;
      const set = (raw >> BigInt(b)) & 1n;
      const ch = (changed >> BigInt(b)) & 1n;
      const rect = sv("rect", {
        class: `bit ${set ? "set" : "clear"}${ch ? " changed" : ""}`, x: x, y: numH,
        width: cell, height: cellH, "data-bit": b, "data-field": fieldOf[b] || "?",
      });
      rect.append(sv("title", { text: `bit ${b} (${fieldOf[b]}) = ${set}${ch ? ", changed" : ""}` }));
      svg.append(rect);
      if (detailed && (b % 8 === 0 || b === W - 1)) {
        svg.append(sv("text", { class: "num", x: x + cell / 2, y: 9, "text-anchor": "middle", text: b }));
      }
    }
    for (const [name, shift, w] of fmt.fields) {
      const xl = (W - shift - w) * cell;
      svg.append(sv("line", { class: "field", x1: xl, y1: numH - 2, x2: xl, y2: numH + cellH + 3 }));
      if (!detailed) continue;
      const value = (raw >> BigInt(shift)) & ((1n << BigInt(w)) - 1n);
      const cx = xl + (w * cell) / 2;
      if (w * cell >= name.length * 6.4 + 4) {
        svg.append(sv("text", { x: cx, y: numH + cellH + 13, "text-anchor": "middle", text: name }));
        if (w > 1) {
          svg.append(sv("text", { class: "num", x: cx, y: numH + cellH + 25, "text-anchor": "middle", text: "0x" + value.toString(16) }));
        }
      } else {
        const y = numH + cellH + 7;
        svg.append(sv("text", { x: cx - 2, y: y, transform: `rotate(62 ${cx - 2} ${y})`, text: name }));
      }
    }
    svg.append(sv("line", { class: "field", x1: width, y1: numH - 2, x2: width, y2: numH + cellH + 3 }));
    return svg;
  }

  function fieldTable(fmt, rawHex, prevHex, prevLabel) {
    const raw = BigInt(rawHex);
    const prev = prevHex ? BigInt(prevHex) : null;
    const rows = fmt.fields.map(([name, shift, w]) => {
      const mask = (1n << BigInt(w)) - 1n;
      const v = (raw >> BigInt(shift)) & mask;
      const p = prev === null ? null : (prev >> BigInt(shift)) & mask;
      const bits = w === 1 ? `${shift}` : `${shift + w - 1}..${shift}`;
      return el("tr", { class: p !== null && p !== v ? "changed" : null, "data-field": name },
        el("td", { class: "mono", text: name }), el("td", { class: "mono", text: bits }),
        el("td", { class: "mono", text: "0x" + v.toString(16) }),
        el("td", { class: "mono", text: p === null ? "" : (p !== v ? "was 0x" + p.toString(16) : "") }));
    });
    return el("table", { class: "grid fields" },
      el("tr", {}, el("th", { text: "field" }), el("th", { text: "bits" }), el("th", { text: "value" }), el("th", { text: prevLabel || "step before" })),
      rows);
  }

  // steps: demo and scenario runs ------------------------------------------------------------
  function stepsView() {
    const steps = DATA.steps;
    const arch = DATA.arch;
    const digits = arch.levels[arch.levels.length - 1].entry_bytes * 2;
    document.getElementById("subtitle").textContent = DATA.subtitle + (DATA.description ? " — " + DATA.description : "");
    let selected = null; // [task, va]
    let fieldsOpen = false; // whether the detail's field table is unfolded
    const nav = setupNav(steps.length, (i) => render(i));

    function leafFmt(level) { return arch.levels[level].leaf; }

    function defaultSelection(step) {
      const all = [];
      for (const t of step.tasks) for (const l of t.leaves) all.push([t.comm, l]);
      const touched = new Set(step.touched.map(([t, va]) => t + " " + BigInt(va)));
      const isT = ([t, l]) => touched.has(t + " " + BigInt(l.va));
      const pick = all.find((x) => isT(x) && x[1].changed !== "0x0") || all.find(isT) ||
        all.find((x) => x[1].changed !== "0x0");
      return pick ? [pick[0], pick[1].va] : null;
    }

    function findLeaf(step, sel) {
      if (!sel) return null;
      const t = step.tasks.find((t) => t.comm === sel[0]);
      const l = t && t.leaves.find((l) => BigInt(l.va) === BigInt(sel[1]));
      return l ? [t, l] : null;
    }

    function render(i) {
      const step = steps[i];
      const before = i > 0 ? steps[i - 1] : null;
      if (!findLeaf(step, selected)) selected = defaultSelection(step);
      view.replaceChildren();
      const head = el("section", { id: "step-head", "data-step": step.number },
        el("h2", {}, `Step ${step.number} of ${steps.length}: `, step.title || step.what),
        el("p", { class: "mono" }, step.what, step.line ? `  (${DATA.source}:${step.line})` : ""),
        el("p", {}, "outcome ", badge(step.outcome, step.outcome === "ok" ? "ok" : "fail"),
          step.detail ? " " + step.detail : "", step.data ? " — " + step.data : ""),
        step.kernel.length ? el("p", { class: "kernel", text: "kernel path: " + step.kernel.join(" → ") }) : null,
        step.why ? el("p", { class: "why", text: step.why }) : null);
      view.append(head);
      const detail = el("div", { id: "detail" });
      view.append(detail);
      drawDetail(detail, step);
      const tasks = el("div", { class: "tasks" });
      for (const t of step.tasks) tasks.append(taskCard(step, t));
      if (!step.tasks.length) tasks.append(el("p", { class: "muted", text: "no task is alive: no page tables" }));
      view.append(el("h2", { text: "page tables" }), tasks);
      view.append(pagesTable(step, before));
      view.append(logSection(step));
    }

    function drawDetail(detail, step) {
      const found = findLeaf(step, selected);
      detail.replaceChildren();
      if (!found) {
        detail.append(el("p", { class: "muted", text: "click a pte in a tree to see its bits" }));
        return;
      }
      const [t, l] = found;
      const fmt = leafFmt(l.level);
      const page = step.pages.find((p) => p.pfn !== null && l.pfn !== null && BigInt(p.pfn) === BigInt(l.pfn));
      detail.setAttribute("data-task", t.comm);
      detail.setAttribute("data-va", l.va);
      detail.append(
        el("h3", {}, `${t.comm}: ${fmt.name} for VA 0x${hex(l.va)} = `, el("span", { class: "hex", text: hex(l.raw, digits) }), " ",
          verdictBadge(l.verdict), l.new ? " (new in this step)" : (l.changed !== "0x0" ? (l.prev_from !== t.comm ? ` (bits that differ from ${l.prev_from}'s pte before are outlined)` : " (changed bits outlined)") : "")),
        el("p", { class: "reason" }, "vm_normal_page: ", el("b", { text: l.verdict || "-" }), " — ", l.reason || ""),
        bitbox(fmt, l.raw, l.changed, true),
        el("p", { class: "muted" },
          l.pfn !== null ? `pfn 0x${hex(l.pfn)}` : "not present",
          page ? `; struct page: count ${page.count}, mapcount ${page.mapcount}, flags ${page.flags.join(",") || "-"}` : (l.pfn !== null ? "; no struct page" : ""),
          l.shared.length ? `; the same frame is mapped by ${l.shared.join(", ")}` : "",
          `; entry at 0x${hex(l.entry_addr)}`),
        fieldsBox(fieldTable(fmt, l.raw, l.prev, l.prev_from && l.prev_from !== t.comm ? l.prev_from + "'s before" : "")));
    }

    function fieldsBox(table) {
      const box = el("details", { class: "fields-box", open: fieldsOpen,
        ontoggle: (ev) => { fieldsOpen = ev.target.open; } },
        el("summary", { text: "every field of this entry" }), table);
      return box;
    }

    function taskCard(step, t) {
      const card = el("div", { class: "task", "data-task": t.comm },
        el("h3", {}, `${t.comm} (pid ${t.pid})`),
        el("p", { class: "rss" }, `pgd 0x${hex(t.pgd)}; file_rss ${t.file_rss}, anon_rss ${t.anon_rss}`),
        el("ul", { class: "vmas" }, t.vmas.map((v) => el("li", { class: "mono", text:
          `vma 0x${hex(v.start)}-0x${hex(v.end)} ${v.backing} pgoff 0x${hex(v.pgoff)} ${v.flags.join("|")}` }))));
      const tables = new Map(t.tables.map((tb) => [BigInt(tb.addr), tb]));
      const leaves = new Map(t.leaves.map((l) => [BigInt(l.va), l]));
      const root = el("ul", { class: "tree root" }, el("li", {}, tableNode(step, t, tables, leaves, BigInt(t.pgd))));
      card.append(root);
      if (t.truncated) card.append(el("p", { class: "muted", text: "more leaves than a snapshot keeps: truncated" }));
      return card;
    }

    function tableNode(step, t, tables, leaves, addr, label) {
      const tb = tables.get(addr);
      if (!tb) return el("span", { class: "muted", text: `table 0x${hex(addr)} (not read)` });
      const lv = arch.levels[tb.level];
      const ul = el("ul", { class: "tree" });
      for (const e of tb.entries) {
        const idx = `[${e.index}]`;
        const edigits = lv.entry_bytes * 2;
        if (e.kind === "table") {
          ul.append(el("li", {}, tableNode(step, t, tables, leaves, BigInt(e.child), `${idx} ${hex(e.raw, edigits)} →`)));
        } else if (e.kind === "leaf") {
          const l = leaves.get(BigInt(e.va));
          ul.append(el("li", {}, l ? leafRow(step, t, l, idx) : el("span", { class: "entry mono", text: `${idx} ${hex(e.raw, edigits)} (leaf not kept)` })));
        } else {
          ul.append(el("li", { class: "entry mono", text: `${idx} ${hex(e.raw, edigits)}: not present, not a table` }));
        }
      }
      return el("details", { open: true, "data-level": tb.level, "data-table": tb.addr },
        el("summary", {}, el("span", { class: "entry mono", text: label ? label + " " : "" }),
          `${lv.name} table at 0x${hex(tb.addr)}`, el("span", { class: "muted", text: ` (${tb.entries.length} in use)` }),
          tb.shared.length ? el("span", { class: "shared", text: ` shared with ${tb.shared.join(", ")}` }) : null),
        ul);
    }

    function leafRow(step, t, l, idx) {
      const isSel = selected && selected[0] === t.comm && BigInt(selected[1]) === BigInt(l.va);
      const fmt = leafFmt(l.level);
      const row = el("div", {
        class: "leaf" + (l.changed !== "0x0" ? " changed" : "") + (isSel ? " selected" : ""),
        "data-va": l.va, "data-task": t.comm, "data-verdict": l.verdict || "",
        title: l.reason, tabindex: 0,
        onclick: (ev) => {
          // only the selection and the detail change: the trees keep their place
          selected = [t.comm, l.va];
          for (const r of view.querySelectorAll(".leaf.selected")) r.classList.remove("selected");
          ev.currentTarget.classList.add("selected");
          drawDetail(document.getElementById("detail"), step);
        },
      },
      el("span", { class: "entry mono", text: idx }),
      el("span", { class: "mono", text: `VA 0x${hex(l.va)}` }),
      el("span", { class: "hex", text: hex(l.raw, digits) }),
      bitbox(fmt, l.raw, l.changed, false),
      verdictBadge(l.verdict),
      el("span", { class: "mono muted", text: l.pfn !== null ? `pfn 0x${hex(l.pfn)}` : "not present" }),
      l.shared.length ? el("span", { class: "shared", text: `frame shared with ${l.shared.join(", ")}` }) : null);
      return row;
    }

    function pagesTable(step, before) {
      const prev = new Map((before ? before.pages : []).map((p) => [p.pfn, p]));
      const sec = el("section", { id: "pages" }, el("h2", { text: "struct pages of the mapped frames" }));
      if (!step.pages.length) {
        sec.append(el("p", { class: "muted", text: "no mapped frame has a struct page" }));
        return sec;
      }
      const rows = step.pages.map((p) => {
        const q = prev.get(p.pfn);
        const changed = !q || q.count !== p.count || q.mapcount !== p.mapcount;
        return el("tr", { class: changed ? "changed" : null, "data-pfn": p.pfn },
          el("td", { class: "mono", text: p.pfn }), el("td", { text: p.count }), el("td", { text: p.mapcount }),
          el("td", { class: "mono", text: p.flags.join(",") || "-" }), el("td", { text: p.mapped_by.join(", ") }),
          el("td", { class: "muted", text: q ? (changed ? `was ${q.count}/${q.mapcount}` : "") : "newly mapped" }));
      });
      sec.append(el("table", { class: "grid" },
        el("tr", {}, ["pfn", "count", "mapcount", "flags", "mapped by", "step before"].map((h) => el("th", { text: h }))), rows));
      return sec;
    }

    function logSection(step) {
      const sec = el("section", { id: "log" }, el("h2", { text: "faults, log and expectations" }));
      sec.append(el("p", {}, `page faults: ${step.faults.length}`,
        step.faults.length ? " (" + step.faults.map((f) => `${f.comm} ${f.write ? "write" : "read"} at ${f.address} → VM_FAULT_${f.result}`).join(", ") + ")" : "",
        `; print_bad_pte lines: ${step.bad_ptes.length}; check_invariants: `,
        step.invariants === null ? badge("ok", "ok") : badge("FAILED", "fail"), step.invariants ? " " + step.invariants : ""));
      for (const line of step.log) sec.append(el("div", { class: "log" + (line.includes("Bad pte") ? " bad" : ""), text: line }));
      if (step.checks.length) {
        sec.append(el("ul", { class: "checks" }, step.checks.map((c) => el("li", { class: c.ok ? "ok" : "fail" },
          `expect ${c.expect}`, c.ok ? "" : ` — got ${c.got}`, c.line ? el("span", { class: "muted", text: `  (${DATA.source}:${c.line})` }) : ""))));
      }
      return sec;
    }
  }

  // step navigation: slider, buttons, keys, #step=N ---------------------------------------
  function setupNav(count, draw) {
    const nav = document.getElementById("controls");
    const slider = document.getElementById("step");
    const prev = document.getElementById("prev");
    const next = document.getElementById("next");
    const label = document.getElementById("step-label");
    nav.hidden = false;
    slider.max = String(Math.max(0, count - 1));
    let index = 0;
    function go(i) {
      index = Math.max(0, Math.min(count - 1, i));
      slider.value = String(index);
      prev.disabled = index === 0;
      next.disabled = index === count - 1;
      label.textContent = `step ${index + 1} of ${count}`;
      draw(index);
      history.replaceState(null, "", "#step=" + (index + 1));
    }
    slider.addEventListener("input", () => go(Number(slider.value)));
    prev.addEventListener("click", () => go(index - 1));
    next.addEventListener("click", () => go(index + 1));
    document.addEventListener("keydown", (ev) => {
      if (ev.target instanceof HTMLInputElement && ev.target.type === "text") return;
      if (ev.key === "ArrowRight" || ev.key === "j") { go(index + 1); ev.preventDefault(); }
      else if (ev.key === "ArrowLeft" || ev.key === "k") { go(index - 1); ev.preventDefault(); }
      else if (ev.key === "Home") { go(0); ev.preventDefault(); }
      else if (ev.key === "End") { go(count - 1); ev.preventDefault(); }
    });
    const fromHash = () => {
      const m = /step=(\d+)/.exec(location.hash);
      return m ? Number(m[1]) - 1 : null;
    };
    window.addEventListener("hashchange", () => {
      const i = fromHash();
      if (i !== null && i !== index) go(i);
    });
    go(fromHash() ?? 0);
    return { index: () => index, go: go };
  }

  // compare: eras side by side ---------------------------------------------------------------
  function compareView() {
    document.getElementById("subtitle").textContent = DATA.subtitle;
    const eras = DATA.eras;
    let onlyDiff = false;
    const steps = DATA.steps;
    const nav = setupNav(steps.length, (i) => render(i));
    function render(i) {
      const step = steps[i];
      view.replaceChildren();
      const toggle = el("input", { type: "checkbox", id: "only-diff", checked: onlyDiff,
        onchange: (ev) => { onlyDiff = ev.target.checked; render(nav.index()); } });
      view.append(el("h2", {}, `Step ${i + 1} of ${steps.length}: ${step.name}`, " ",
        step.differs ? badge(`${step.differs} differ`, "fail") : badge("same in every era", "ok")));
      view.append(el("p", {}, el("label", {}, toggle, " only the observations that differ")));
      const rows = step.rows.filter((r) => !onlyDiff || r.differs).map((r) => {
        const first = r.cells[eras[0]];
        return el("tr", { class: r.differs ? "differs" : null, "data-key": r.key },
          el("td", {}, r.key, el("div", { class: "muted", text: r.kind })),
          eras.map((e) => {
            const c = r.cells[e];
            const diff = r.differs && (c.value !== first.value || c.detail !== first.detail);
            const fmt = DATA.arch.levels[DATA.arch.levels.length - 1].leaf;
            const box = c.raw && fmt ? bitbox(fmt, c.raw, first.raw && e !== eras[0] ? "0x" + (BigInt(c.raw) ^ BigInt(first.raw)).toString(16) : "0x0", false) : null;
            return el("td", { class: diff ? "diffcell" : null, "data-era": e },
              String(c.value), c.detail ? el("div", { class: "mono muted", text: c.detail }) : null, box,
              c.why ? el("div", { class: "muted", text: c.why }) : null);
          }),
          el("td", { class: "mono muted", text: r.fields.join(" ") }));
      });
      view.append(el("table", { class: "grid compare" },
        el("tr", {}, el("th", { text: "observation" }), eras.map((e) => el("th", { text: e })), el("th", { text: "rules fields" })), rows));
      const overview = el("ol", {}, steps.map((s, j) => el("li", {},
        el("a", { href: "#step=" + (j + 1), onclick: (ev) => { ev.preventDefault(); nav.go(j); } }, s.name),
        s.differs ? el("span", { class: "shared", text: ` ${s.differs} differ` }) : "")));
      view.append(el("h2", { text: "every step" }), overview);
      if (DATA.rules_differ.length) {
        view.append(el("h2", { text: "rules fields that differ" }), el("table", { class: "grid" },
          el("tr", {}, el("th", { text: "field" }), eras.map((e) => el("th", { text: e }))),
          DATA.rules_differ.map((r) => el("tr", {}, el("td", { class: "mono", text: r.field }), eras.map((e) => el("td", { class: "mono", text: String(r.values[e]) }))))));
      }
      for (const e of eras) {
        if (DATA.stopped[e]) view.append(el("p", { class: "log bad", text: `${e}: the run stopped: ${DATA.stopped[e]}` }));
      }
    }
  }

  // decode: a lazily expanded tree of a dump's tables, with search --------------------------
  function decodeView() {
    const d = DATA;
    document.getElementById("subtitle").textContent = d.subtitle;
    const levels = d.arch.levels;
    const n = d.leaves.va.length;
    const vaBig = new Array(n);
    function va(i) { return vaBig[i] === undefined ? (vaBig[i] = BigInt(d.leaves.va[i])) : vaBig[i]; }
    const s = d.summary;
    view.append(el("section", { id: "summary" }, el("h2", { text: "summary" }),
      el("table", { class: "grid" }, Object.entries(s).map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { class: "mono", text: String(v) }))))));
    if (d.truncated) view.append(el("p", { class: "log bad", text: `the page holds the first ${n} leaves of ${s.leaves} (a page holds at most that many)` }));
    if (d.problems.length) {
      view.append(el("h2", { text: "problems" }), el("div", {}, d.problems.map((p) => el("div", { class: "log bad", text: p }))));
    }
    const input = el("input", { id: "search", type: "text", placeholder: "VA or PA, e.g. 0x7f0000001000" });
    const kind = el("select", { id: "search-kind" }, el("option", { value: "va", text: "VA" }), el("option", { value: "pa", text: "PA" }));
    const result = el("span", { id: "search-result", class: "muted" });
    const go = el("button", { type: "button", text: "find", onclick: () => search() });
    input.addEventListener("keydown", (ev) => { if (ev.key === "Enter") search(); });
    view.append(el("h2", { text: "tables" }), el("div", { class: "search" }, kind, input, go, result));
    const tree = el("ul", { class: "tree root", id: "tree" });
    view.append(tree);
    const PAGE = 256;

    // children of a node: the leaves in [lo, hi) grouped by their index at `level`
    function groups(lo, hi, level) {
      const lv = levels[level];
      const shift = BigInt(lv.shift);
      const mask = (1n << BigInt(lv.bits)) - 1n;
      const out = [];
      let i = lo;
      while (i < hi) {
        const idx = (va(i) >> shift) & mask;
        let j = i + 1;
        while (j < hi && ((va(j) >> shift) & mask) === idx && d.leaves.level[j] > level) j++;
        if (d.leaves.level[i] === level) j = i + 1;
        out.push([Number(idx), i, j]);
        i = j;
      }
      return out;
    }

    function leafLine(i, idx) {
      const L = d.leaves;
      const lv = levels[L.level[i]];
      const fmt = lv.leaf;
      return el("div", { class: "leaf", "data-i": i, "data-va": L.va[i], "data-pa": L.pa[i] },
        el("span", { class: "entry mono", text: `[${idx}]` }),
        el("span", { class: "mono", text: `VA ${L.va[i]}` }), el("span", { class: "mono", text: `PA ${L.pa[i]}` }),
        el("span", { class: "muted", text: d.size_names[L.size[i]] }), el("span", { class: "hex", text: hex(L.raw[i], lv.entry_bytes * 2) }),
        fmt ? bitbox(fmt, L.raw[i], "0x0", false) : null,
        el("span", { class: "mono muted", text: d.flags[L.flags[i]] }),
        L.verdict[i] >= 0 ? verdictBadge(d.verdicts[L.verdict[i]]) : null);
    }

    function fill(ul, lo, hi, level, start) {
      const gs = groups(lo, hi, level);
      const end = Math.min(gs.length, start + PAGE);
      for (let g = start; g < end; g++) {
        const [idx, a, b] = gs[g];
        if (b - a === 1 && d.leaves.level[a] === level) {
          ul.append(el("li", {}, leafLine(a, idx)));
          continue;
        }
        ul.append(el("li", {}, node(a, b, level + 1, `${levels[level].name}[${idx}]`)));
      }
      if (end < gs.length) {
        const more = el("button", { class: "more", type: "button", text: `show ${Math.min(PAGE, gs.length - end)} more of ${gs.length - end}` });
        more.addEventListener("click", () => { more.parentElement.remove(); fill(ul, lo, hi, level, end); });
        ul.append(el("li", {}, more));
      }
    }

    function node(lo, hi, level, label) {
      const ul = el("ul", { class: "tree" });
      const det = el("details", { "data-lo": lo, "data-hi": hi, "data-level": level },
        el("summary", {}, el("span", { class: "mono", text: label }),
          el("span", { class: "muted", text: ` VA ${d.leaves.va[lo]}…, ${hi - lo} leaves` })), ul);
      det.addEventListener("toggle", () => { if (det.open && !ul.childElementCount) fill(ul, lo, hi, level, 0); });
      return det;
    }

    if (n) fill(tree, 0, n, 0, 0);
    else tree.append(el("li", { class: "muted", text: "no leaf" }));

    function findVa(x) {
      let lo = 0, hi = n - 1, best = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (va(mid) <= x) { best = mid; lo = mid + 1; } else hi = mid - 1;
      }
      if (best >= 0 && x < va(best) + BigInt(d.sizes[d.leaves.size[best]])) return best;
      return -1;
    }
    function findPa(x) {
      for (let i = 0; i < n; i++) {
        const pa = BigInt(d.leaves.pa[i]);
        if (pa <= x && x < pa + BigInt(d.sizes[d.leaves.size[i]])) return i;
      }
      return -1;
    }
    function reveal(i) {
      // open the nodes on the leaf's path, level by level, then mark it
      let ul = tree, lo = 0, hi = n, level = 0;
      for (;;) {
        if (!ul.childElementCount) fill(ul, lo, hi, level, 0);
        const gs = groups(lo, hi, level);
        const g = gs.findIndex(([, a, b]) => a <= i && i < b);
        while (ul.querySelectorAll(":scope > li").length <= g) {
          const more = ul.querySelector(":scope > li > button.more");
          if (!more) break;
          more.click();
        }
        const li = ul.querySelectorAll(":scope > li")[g];
        const det = li && li.querySelector(":scope > details");
        if (!det) break;
        det.open = true;
        const [, a, b] = gs[g];
        ul = det.querySelector(":scope > ul"); lo = a; hi = b; level += 1;
        if (!ul.childElementCount) fill(ul, lo, hi, level, 0);
      }
      for (const h of tree.querySelectorAll(".hit")) h.classList.remove("hit");
      const line = tree.querySelector(`.leaf[data-i="${i}"]`);
      if (line) { line.classList.add("hit"); line.scrollIntoView({ block: "center" }); }
      return line;
    }
    function search() {
      let x;
      try { x = BigInt(input.value.trim().replace(/_/g, "")); } catch (e) { result.textContent = "not a number"; return; }
      const i = kind.value === "va" ? findVa(x) : findPa(x);
      if (i < 0) { result.textContent = `no leaf maps ${kind.value.toUpperCase()} 0x${x.toString(16)}`; return; }
      reveal(i);
      result.textContent = `VA ${d.leaves.va[i]} → PA ${d.leaves.pa[i]} (${d.size_names[d.leaves.size[i]]})`;
    }
  }

  try {
    if (DATA.kind === "steps") stepsView();
    else if (DATA.kind === "compare") compareView();
    else if (DATA.kind === "decode") decodeView();
    document.body.setAttribute("data-ready", "1");
  } catch (err) {
    view.replaceChildren(el("pre", { class: "log bad", text: "pfnmap page error: " + err }));
    throw err;
  }
})();
