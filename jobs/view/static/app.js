// pluralign view: the target explorer drives every view. Moving a slider re-aligns that one
// target from the cache (GET /api/align) and repaints the metrics, the scenario table, the
// open scenario and the run comparison.
import { ApiError, get } from "./api.js";
import { fmt, h, replace, signed } from "./dom.js";
import { renderScenario } from "./scenario.js";
import { renderCompare } from "./compare.js";
import { startService } from "./service.js";

const PAGE = 100;
const state = {
  runs: [], run: 0, target: {}, aligned: null, table: null, search: null,
  filters: { set: "", k: "", attribute: "", outcome: "", text: "" }, page: 0,
  scenario: null, compareWith: null, pending: null,
};
// Slider-to-repaint times (ms), read by benchmarks/view.py.
window.__pluralign = { timings: [], state };

const $ = (id) => document.getElementById(id);

function showError(e) {
  $("error").textContent = e instanceof ApiError ? e.message : String(e);
  if (!(e instanceof ApiError)) console.error(e);
}

function currentRun() { return state.runs[state.run]; }

// ---------------------------------------------------------------- the target explorer

function levelsOf(run) {
  // A slider runs over the benchmark's levels; the neutral level means "not in the target".
  return run.levels;
}

function buildSliders() {
  const run = currentRun();
  const rows = run.attributes.map((a) => {
    const levels = levelsOf(run);
    const value = a in state.target ? state.target[a] : run.neutral;
    const index = Math.max(0, levels.findIndex((l) => Math.abs(l - value) < 1e-9));
    const out = h("output", { id: `out-${a}` }, label(run, levels[index]));
    const input = h("input", {
      type: "range", min: 0, max: levels.length - 1, step: 1, value: index,
      id: `slider-${a}`, "aria-label": a, dataset: { attribute: a },
      oninput: (ev) => {
        const t0 = performance.now();
        const v = levels[Number(ev.target.value)];
        out.textContent = label(run, v);
        setTarget({ ...state.target, [a]: v }, t0);
      },
    });
    return h("div", { class: "slider" }, h("label", { for: `slider-${a}` }, a), input, out);
  });
  replace($("sliders"), rows);
}

function label(run, v) {
  return Math.abs(v - run.neutral) < 1e-9 ? "— (not in target)" : Number(v).toFixed(2);
}

function syncSliders() {
  const run = currentRun();
  for (const a of run.attributes) {
    const v = a in state.target ? state.target[a] : run.neutral;
    const i = levelsOf(run).findIndex((l) => Math.abs(l - v) < 1e-9);
    $(`slider-${a}`).value = String(Math.max(i, 0));
    $(`out-${a}`).textContent = label(run, v);
  }
}

function cleanTarget(target) {
  const run = currentRun();
  return Object.fromEntries(Object.entries(target)
    .filter(([, v]) => Math.abs(v - run.neutral) > 1e-9));
}

async function setTarget(target, t0 = performance.now()) {
  state.target = cleanTarget(target);
  if (state.pending) state.pending.abort();
  const ctl = new AbortController();
  state.pending = ctl;
  try {
    const aligned = await get("/api/align",
      { run: state.run, target: JSON.stringify(state.target) }, ctl.signal);
    if (ctl.signal.aborted) return;
    state.aligned = aligned;
    paintTarget();
    requestAnimationFrame(() => {
      window.__pluralign.timings.push(performance.now() - t0);
      document.body.dataset.aligned = aligned.target_json;
    });
    if (state.view === "compare") await showCompare();
  } catch (e) {
    if (e.name !== "AbortError") showError(e);
  }
}

function paintTarget() {
  const a = state.aligned;
  $("target-json").textContent = a.target_json;
  for (const [id, value, digits] of [["metric-accuracy", a.accuracy, 1],
                                     ["metric-weighted", a.weighted_score, 1]]) {
    $(id).textContent = value === null ? "— (no scenario counts)" : fmt(value, digits);
    $(id).dataset.value = value === null ? "" : String(value);
  }
  $("metric-correct").textContent = String(a.correct);
  $("metric-counted").textContent = String(a.counted);
  const inRun = Object.entries(a.in_run).map(([set, row]) =>
    `${set}: ${fmt(row.accuracy)} % (${row.correct}/${row.counted})`);
  $("in-run").textContent = inRun.length ? `as the run recorded it — ${inRun.join("; ")}`
    : "not among the run's targets (re-aligned from the cache)";
  paintTable();
  if (state.view === "scenario" && state.scenario) paintScenario();
}

function buildPresets() {
  const run = currentRun();
  const options = [h("option", { value: "" }, "choose a preset…")];
  run.presets.forEach((p, i) => options.push(h("option", { value: i }, p.name)));
  replace($("preset"), options);
}

// ---------------------------------------------------------------- the scenario table

async function loadTable() {
  const f = state.filters;
  const count = $("table-count");
  if (count) count.textContent = `re-aligning the targets of ${f.set} for every scenario…`;
  try {
    state.table = await get("/api/table",
      { run: state.run, set: f.set, k: f.k, attribute: f.attribute });
    paintTable();
  } catch (e) { showError(e); }
}

function filteredRows() {
  if (!state.table || !state.aligned) return [];
  const f = state.filters;
  const text = f.text.trim().toLowerCase();
  const out = [];
  state.table.rows.forEach((row, s) => {
    if (f.outcome && state.aligned.outcome[s] !== f.outcome) return;
    if (text && !(state.search ? state.search[s] : row.id.toLowerCase()).includes(text)) return;
    out.push([s, row]);
  });
  return out;
}

function buildTableView() {
  const run = currentRun();
  const f = state.filters;
  const select = (id, key, options) => h("select", {
    id, onchange: (ev) => { f[key] = ev.target.value; state.page = 0; if (["set", "k", "attribute"].includes(key)) loadTable(); else paintTable(); },
  }, options.map(([v, text]) => h("option", { value: v, selected: f[key] === String(v) }, text)));
  const sets = run.target_sets.map((s) => [s.name, `${s.name} (${s.targets})`]);
  // The grid of every target (117,649 on MIC) takes seconds per scenario table: start small.
  const small = run.target_sets.find((s) => s.targets <= 1000) || run.target_sets[0];
  if (!f.set && small) f.set = small.name;
  const ks = [["", "any"], ...run.attributes.map((_, i) => [String(i + 1), String(i + 1)])];
  const attrs = [["", "any"], ...run.attributes.map((a) => [a, a])];
  const filters = h("div", { class: "filters" },
    h("label", {}, "target set ", select("f-set", "set", sets)),
    h("label", {}, "attributes in target ", select("f-k", "k", ks)),
    h("label", {}, "naming attribute ", select("f-attribute", "attribute", attrs)),
    h("label", {}, "current target ", select("f-outcome", "outcome",
      [["", "any"], ["right", "chosen is label-closest"], ["wrong", "chosen is not"],
       ["tie", "labels tie (not counted)"]])),
    h("label", {}, "search ", h("input", {
      id: "f-text", type: "search", value: f.text, placeholder: "id, prompt or response text",
      oninput: async (ev) => {
        f.text = ev.target.value; state.page = 0;
        if (f.text && !state.search) {
          state.search = (await get("/api/search", { run: state.run })).text;
        }
        paintTable();
      },
    })));
  replace($("view-scenarios"), filters, h("p", { id: "table-count" }),
    h("table", { id: "scenario-table" }), h("div", { class: "pager", id: "pager" }));
}

function paintTable() {
  const el = $("scenario-table");
  if (!el || !state.table || !state.aligned) return;
  const rows = filteredRows();
  const first = state.page * PAGE;
  const a = state.aligned;
  $("table-count").textContent = `${rows.length} of ${state.table.rows.length} scenarios; ` +
    `set accuracy over ${state.table.targets} targets of ${state.table.set}`;
  const head = h("tr", {}, ["scenario", "prompt", "responses", "chosen", "label-closest",
    "current target", `${state.table.set} accuracy`].map((t) => h("th", {}, t)));
  const body = rows.slice(first, first + PAGE).map(([s, row]) => h("tr", {
    dataset: { scenario: row.id }, class: `outcome-${a.outcome[s]}`,
  },
  h("td", {}, h("a", { href: `#/scenario/${encodeURIComponent(row.id)}` }, row.id)),
  h("td", { class: "prompt" }, row.prompt),
  h("td", { class: "num" }, row.responses),
  h("td", { class: "num", dataset: { key: "chosen" } }, a.chosen[s]),
  h("td", { class: "num", dataset: { key: "closest" } }, a.closest[s].join(", ")),
  h("td", { dataset: { key: "outcome" } }, { right: "✓ right", wrong: "✗ wrong", tie: "tie" }[a.outcome[s]]),
  h("td", { class: "num", dataset: { key: "set_accuracy", value: row.set_accuracy ?? "" } },
    row.set_accuracy === null ? "—" : `${fmt(row.set_accuracy)} %`)));
  replace(el, h("thead", {}, head), h("tbody", {}, body));
  const pages = Math.max(1, Math.ceil(rows.length / PAGE));
  replace($("pager"),
    h("button", { disabled: state.page === 0, onclick: () => { state.page--; paintTable(); } }, "‹ previous"),
    ` page ${state.page + 1} of ${pages} `,
    h("button", { disabled: state.page >= pages - 1, onclick: () => { state.page++; paintTable(); } }, "next ›"));
}

// ---------------------------------------------------------------- scenario and compare

async function showScenario(id) {
  try {
    state.scenario = await get("/api/scenario", { run: state.run, id });
    paintScenario();
  } catch (e) { showError(e); }
}

function paintScenario() {
  const s = state.scenario.index;
  renderScenario($("view-scenario"), state.scenario, {
    chosen: state.aligned.chosen[s], closest: state.aligned.closest[s],
    outcome: state.aligned.outcome[s], target: state.aligned.target_json,
  });
}

async function showCompare() {
  const others = state.runs.filter((r) => r.index !== state.run);
  if (!others.length) {
    replace($("view-compare"), h("p", {}, "Open the viewer over two or more runs of the same " +
      "benchmark, split and scenarios to compare them: pluralign view RUN_A RUN_B"));
    return;
  }
  if (state.compareWith === null || state.compareWith === state.run) {
    state.compareWith = others[0].index;
  }
  replace($("view-compare"), h("p", { class: "busy" }, "pairing the runs (bootstrap over scenarios)…"));
  try {
    const result = await get("/api/compare", {
      a: state.run, b: state.compareWith, target: JSON.stringify(state.target) });
    renderCompare($("view-compare"), result, others, state.compareWith, (b) => {
      state.compareWith = Number(b); showCompare();
    });
  } catch (e) { showError(e); }
}

// ---------------------------------------------------------------- routing and start

function route() {
  const hash = decodeURIComponent(location.hash.slice(2));
  const [view, ...rest] = hash.split("/");
  state.view = ["scenario", "compare"].includes(view) ? view : "scenarios";
  for (const v of ["scenarios", "scenario", "compare"]) {
    $(`view-${v}`).hidden = v !== state.view;
    document.querySelector(`[data-tab=${v}]`).classList.toggle("active", v === state.view);
  }
  document.body.dataset.view = state.view;
  $("error").textContent = "";
  if (state.view === "scenario") {
    const id = rest.join("/") || (state.scenario && state.scenario.id) || state.table?.rows[0]?.id;
    if (id) showScenario(id);
  } else if (state.view === "compare") {
    showCompare();
  }
}

function showRun() {
  const run = currentRun();
  $("run-facts").textContent = `${run.scorer} · ${run.benchmark} · split ${run.split} · ` +
    `${run.scenarios} scenarios`;
  replace($("run-sets"), h("tr", {}, ["set", "targets", "accuracy", "weighted"].map((t) => h("th", {}, t))),
    run.sets.map((s) => h("tr", { dataset: { set: s.name } }, h("td", {}, s.name),
      h("td", { class: "num" }, s.n_targets),
      h("td", { class: "num", dataset: { key: "mean", value: s.mean ?? "" } }, fmt(s.mean)),
      h("td", { class: "num", dataset: { key: "weighted_mean", value: s.weighted_mean ?? "" } },
        fmt(s.weighted_mean)))));
  buildPresets();
  state.table = null; state.search = null; state.filters.set = ""; state.scenario = null;
  const high = run.presets.find((p) => p.set === "high");
  state.target = high ? { ...high.target } : {};
  buildSliders();
  buildTableView();
  loadTable();
  setTarget(state.target);
}

async function start() {
  let info;
  try {
    info = await get("/api/runs");
  } catch (e) {
    if (e instanceof ApiError && e.message.startsWith("no route")) {
      startService(document.body);  // served by `pluralign serve`: the query service's page
      return;
    }
    showError(e);
    return;
  }
  state.runs = info.runs;
  replace($("run"), state.runs.map((r) => h("option", { value: r.index }, r.label)));
  $("run").addEventListener("change", (ev) => { state.run = Number(ev.target.value); showRun(); route(); });
  $("preset").addEventListener("change", (ev) => {
    if (ev.target.value === "") return;
    const t0 = performance.now();
    state.target = { ...currentRun().presets[Number(ev.target.value)].target };
    syncSliders();
    setTarget(state.target, t0);
  });
  window.addEventListener("hashchange", route);
  showRun();
  route();
  document.body.dataset.ready = "1";
}

start();
