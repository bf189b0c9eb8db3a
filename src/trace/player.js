// The demo's player: shows one event of the embedded trace at a time.
// Every number it shows comes from the data (src/trace/html.rs computes a
// snapshot per event); this script only lays it out. No framework, no
// network. The event shown is in the URL: #event=N, numbered from 1.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const T = JSON.parse(document.getElementById("trace").textContent);
  // Event fields, by position (see data() in src/trace/html.rs).
  const LINE = 0, LANE = 1, EVENT = 2, DETAIL = 3, FN = 4, FILE = 5, SOCK = 6;
  const n = T.events.length;
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, text) => {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  let cur = 0; // index of the event shown

  // Lanes grouped by node, in the trace's drawing order (network order).
  const groups = [];
  T.lanes.forEach((l, i) => {
    const g = groups.length && groups[groups.length - 1];
    if (g && g.node === l[0]) g.lanes.push(i);
    else groups.push({ node: l[0], lanes: [i] });
  });
  const laneEls = [];
  for (const g of groups) {
    const box = el("div", { class: "node", "data-node": g.node });
    box.style.flexGrow = String(g.lanes.length); // every lane as wide
    box.appendChild(el("h2", {}, g.node));
    const row = el("div", { class: "lanes" });
    for (const i of g.lanes) {
      const [node, conn, role] = T.lanes[i];
      const d = el("div", { class: "lane", "data-lane": node + " " + conn });
      d.appendChild(el("div", { class: "name" }, conn));
      d.appendChild(el("div", { class: "role" }, role));
      d.appendChild(el("div", { class: "state" }));
      d.appendChild(el("div", { class: "buf in" }));
      d.appendChild(el("div", { class: "buf out" }));
      row.appendChild(d);
      laneEls[i] = d;
    }
    box.appendChild(row);
    $("sockets").appendChild(box);
  }

  // Steps: a list to jump to, by first event.
  T.steps.forEach(([first, title], i) => {
    $("steps").appendChild(el("option", { value: String(first) }, i + ": " + title));
  });
  const stepOf = (k) => {
    let s = -1;
    T.steps.forEach(([first], i) => { if (first <= k) s = i; });
    return s;
  };

  // Tables: per node, the last TABLE/CACHE line at or before event k.
  const tableNodes = [];
  for (const [, node] of T.tables) if (!tableNodes.includes(node)) tableNodes.push(node);
  const tableEls = {};
  for (const node of tableNodes) {
    const box = el("div", { class: "table", "data-node": node });
    box.appendChild(el("h3", {}, node));
    box.appendChild(el("div", { class: "head" }));
    box.appendChild(el("div", { class: "cells" }));
    $("tables").appendChild(box);
    tableEls[node] = box;
  }

  const bar = (bytes) => Math.min(100, Math.round(Math.log2(1 + bytes) * 10));

  function showSockets(k) {
    const s = T.events[k][SOCK];
    laneEls.forEach((d, i) => {
      const state = T.states[s[3 * i]], inb = s[3 * i + 1], outb = s[3 * i + 2];
      const was = k > 0 ? T.events[k - 1][SOCK] : null;
      d.setAttribute("data-state", state);
      d.setAttribute("data-in", String(inb));
      d.setAttribute("data-out", String(outb));
      d.classList.toggle("current", T.events[k][LANE] === i);
      d.classList.toggle("changed", !!was && (was[3 * i] !== s[3 * i] || was[3 * i + 1] !== inb || was[3 * i + 2] !== outb));
      const st = d.querySelector(".state");
      const file = T.lanes[i][1] === "F";
      st.textContent = state !== "-" ? state : file ? "(a file)" : "(no state yet)";
      st.className = "state st-" + (state === "-" ? "none" : state);
      d.querySelector(".in").innerHTML = "";
      d.querySelector(".out").innerHTML = "";
      for (const [cls, label, b] of [["in", "in", inb], ["out", "out", outb]]) {
        const box = d.querySelector("." + cls);
        box.appendChild(el("span", { class: "what" }, label));
        const track = el("span", { class: "track" });
        track.appendChild(el("span", { class: "fill", style: "width:" + bar(b) + "%" }));
        box.appendChild(track);
        box.appendChild(el("span", { class: "bytes" }, b + " B"));
      }
    });
  }

  function showTables(k) {
    for (const node of tableNodes) {
      let last = null;
      for (const t of T.tables) if (t[0] <= k && t[1] === node) last = t;
      const box = tableEls[node];
      box.classList.toggle("changed", !!last && last[0] === k);
      const head = box.querySelector(".head"), cells = box.querySelector(".cells");
      cells.innerHTML = "";
      if (!last) {
        box.setAttribute("data-contents", "");
        head.textContent = "no change traced yet";
        continue;
      }
      box.setAttribute("data-contents", last[2]);
      // A cache line reads "FIFO 2/3, next out first: 1:10 2:20".
      const colon = last[2].indexOf(": ");
      const isCache = colon >= 0 && last[2].slice(0, colon).includes("/");
      head.textContent = isCache ? last[2].slice(0, colon) : "index:value";
      let list = (isCache ? last[2].slice(colon + 2) : last[2]).trim();
      if (list === "(empty)") list = "";
      for (const c of list ? list.split(" ") : []) {
        const [i, v] = c.split(":");
        const cell = el("span", { class: "cell" });
        cell.appendChild(el("span", { class: "i" }, i));
        cell.appendChild(el("span", { class: "v" }, v));
        cells.appendChild(cell);
      }
      if (!list) cells.appendChild(el("span", { class: "empty" }, "(empty)"));
    }
  }

  function showNow(k) {
    const e = T.events[k];
    const s = stepOf(k);
    $("step").textContent = s >= 0 ? "step " + s + ": " + T.steps[s][1] : "";
    $("line").textContent = e[LINE];
    $("emitter").innerHTML = "";
    if (e[FN]) {
      $("emitter").append("logged by ");
      $("emitter").appendChild(el("code", { class: "fn" }, e[FN]));
      $("emitter").append(" in ");
      $("emitter").appendChild(el("code", {}, e[FILE]));
    }
    const flying = T.arrows.filter(([from, to]) => from <= k && k < to);
    $("flight").innerHTML = "";
    $("flight").setAttribute("data-count", String(flying.length));
    for (const [from, to, label] of flying) {
      const a = T.lanes[T.events[from][LANE]], b = T.lanes[T.events[to][LANE]];
      $("flight").appendChild(el("div", { class: "msg" },
        "in the kernel: " + a[0] + " " + a[1] + " \u2192 " + b[0] + " " + b[1] + "  " + label));
    }
    $("where").textContent = "event " + (k + 1) + " of " + n;
    $("back").disabled = k === 0;
    $("next").disabled = k === n - 1;
    $("steps").value = s >= 0 ? String(T.steps[s][0]) : "";
  }

  // A window of the sequence diagram around the current event, its
  // columns under the socket boxes above.
  function showSeq(k) {
    const host = $("seq");
    host.innerHTML = "";
    const rows = 16, rowH = 26, before = 10, charW = 6.2;
    const lo = Math.max(0, Math.min(k - before, n - rows)), hi = Math.min(n, lo + rows);
    const base = host.getBoundingClientRect();
    const xs = laneEls.map((d) => {
      const r = d.getBoundingClientRect();
      return r.left - base.left + r.width / 2;
    });
    const width = Math.max(host.clientWidth, 10);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String((hi - lo) * rowH + 10));
    const add = (tag, attrs, text) => {
      const e = document.createElementNS(SVG, tag);
      for (const a in attrs) e.setAttribute(a, attrs[a]);
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e);
      return e;
    };
    const defs = add("defs", {});
    const marker = document.createElementNS(SVG, "marker");
    for (const [a, v] of Object.entries({ id: "tip", viewBox: "0 0 10 10", refX: "10", refY: "5",
      markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" })) marker.setAttribute(a, v);
    const tip = document.createElementNS(SVG, "path");
    tip.setAttribute("d", "M0,0 L10,5 L0,10 z");
    marker.appendChild(tip);
    defs.appendChild(marker);
    const y = (j) => (j - lo) * rowH + 14;
    xs.forEach((x) => add("line", { x1: x, y1: 0, x2: x, y2: (hi - lo) * rowH + 10, class: "lifeline" }));
    add("rect", { x: 0, y: y(k) - 12, width: width, height: rowH, class: "nowrow" });
    for (const [from, to, label] of T.arrows) {
      if (to < lo || from >= hi) continue;
      const x1 = xs[T.events[from][LANE]], x2 = xs[T.events[to][LANE]];
      const cls = from <= k && k < to ? "arrow flying" : k >= to ? "arrow done" : "arrow later";
      add("line", { x1: x1, y1: y(from) - 4, x2: x2, y2: y(to) - 4, class: cls, "marker-end": "url(#tip)" });
      // Above the arrow's start, heading its way (the arrow falls away
      // below it), kept inside the picture.
      const w = label.length * charW;
      let x = x2 >= x1 ? x1 + 8 : x1 - 8 - w;
      x = Math.max(4, Math.min(width - 4 - w, x));
      // (An arrow from above the window shows no label: its line says
      // where it comes from, the rows above are scrolled away.)
      if (from >= lo) add("text", { x: x, y: Math.max(y(from) - 13, 10), class: "label " + cls }, label);
    }
    for (let j = lo; j < hi; j++) {
      const e = T.events[j], x = xs[e[LANE]];
      if (x === undefined) continue;
      add("circle", { cx: x, cy: y(j) - 4, r: j === k ? 5 : 3, class: j === k ? "dot now" : "dot" });
      // Names of the rightmost lanes go left of their dot, inside.
      const left = x + 8 + e[EVENT].length * 7 > width;
      const t = add("text", { x: left ? x - 8 : x + 8, y: y(j), class: j === k ? "ev now" : "ev" }, e[EVENT]);
      if (left) t.setAttribute("text-anchor", "end");
    }
    host.appendChild(svg);
  }

  function show(k) {
    cur = Math.max(0, Math.min(n - 1, k));
    showNow(cur);
    showSockets(cur);
    showTables(cur);
    showSeq(cur);
    document.body.setAttribute("data-event", String(cur + 1));
  }

  function fromHash() {
    const m = /event=(\d+)/.exec(location.hash);
    return m ? parseInt(m[1], 10) - 1 : 0;
  }
  function go(k) {
    k = Math.max(0, Math.min(n - 1, k));
    history.replaceState(null, "", "#event=" + (k + 1));
    show(k);
  }
  function stepJump(dir) {
    const s = stepOf(cur);
    const t = dir > 0 ? s + 1 : (T.steps[s] && T.steps[s][0] < cur ? s : s - 1);
    if (T.steps[t]) go(T.steps[t][0]);
  }

  $("back").addEventListener("click", () => go(cur - 1));
  $("next").addEventListener("click", () => go(cur + 1));
  $("steps").addEventListener("change", (ev) => go(parseInt(ev.target.value, 10)));
  document.addEventListener("keydown", (ev) => {
    if (ev.target && ev.target.tagName === "SELECT") return;
    const moves = { ArrowRight: () => go(cur + 1), ArrowLeft: () => go(cur - 1), Home: () => go(0),
      End: () => go(n - 1), PageDown: () => stepJump(1), PageUp: () => stepJump(-1) };
    if (moves[ev.key]) { ev.preventDefault(); moves[ev.key](); }
  });
  window.addEventListener("hashchange", () => show(fromHash()));
  window.addEventListener("resize", () => showSeq(cur));
  if (n > 0) show(fromHash());
})();
