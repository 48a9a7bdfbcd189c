// Two runs side by side: pluralign compare's paired table, the per-attribute error
// difference, and the scenarios whose choice differs for the current target.
import { fmt, h, replace, signed } from "./dom.js";

const iv = (lo, hi, d = 1) => (lo === null ? "—" : `[${signed(lo, d)}, ${signed(hi, d)}]`);

export function renderCompare(el, r, others, chosenB, onPick) {
  const pick = h("select", { id: "compare-b", onchange: (ev) => onPick(ev.target.value) },
    others.map((o) => h("option", { value: o.index, selected: o.index === chosenB }, o.label)));
  const sets = h("table", { id: "compare-sets" },
    h("thead", {}, h("tr", {}, ["set", "targets", "accuracy A", "accuracy B", "A − B",
      `${Math.round(r.level * 100)} % interval`, "weighted A", "weighted B", "A − B", "interval",
      "A beats B", "B beats A"].map((t) => h("th", {}, t)))),
    h("tbody", {}, r.sets.map((s) => h("tr", { dataset: { set: s.set } },
      h("td", {}, s.set), h("td", { class: "num" }, s.targets),
      h("td", { class: "num", dataset: { key: "accuracy_a", value: s.accuracy_a } }, fmt(s.accuracy_a)),
      h("td", { class: "num", dataset: { key: "accuracy_b", value: s.accuracy_b } }, fmt(s.accuracy_b)),
      h("td", { class: "num", dataset: { key: "accuracy_diff", value: s.accuracy_diff } }, signed(s.accuracy_diff)),
      h("td", { class: "num" }, iv(s.accuracy_lo, s.accuracy_hi)),
      h("td", { class: "num" }, fmt(s.weighted_a)), h("td", { class: "num" }, fmt(s.weighted_b)),
      h("td", { class: "num" }, signed(s.weighted_diff)), h("td", { class: "num" }, iv(s.weighted_lo, s.weighted_hi)),
      h("td", { class: "num" }, `${fmt(100 * s.a_beats_b, 0)} %`),
      h("td", { class: "num" }, `${fmt(100 * s.b_beats_a, 0)} %`)))));
  const attrs = h("table", { id: "compare-attributes" },
    h("thead", {}, h("tr", {}, ["attribute", "MSE A", "MSE B", "A − B", "interval"].map((t) => h("th", {}, t)))),
    h("tbody", {}, Object.entries(r.attributes).map(([a, v]) => h("tr", {},
      h("td", {}, a), h("td", { class: "num" }, fmt(v.mse_a, 4)), h("td", { class: "num" }, fmt(v.mse_b, 4)),
      h("td", { class: "num" }, signed(v.diff, 4)), h("td", { class: "num" }, iv(v.lo, v.hi, 4))))));
  const differ = h("table", { id: "compare-differ" },
    h("thead", {}, h("tr", {}, ["scenario", "A chose", "B chose", "A label-closest", "B label-closest"].map((t) => h("th", {}, t)))),
    h("tbody", {}, r.differ.slice(0, 200).map((d) => h("tr", { dataset: { scenario: d.id } },
      h("td", {}, h("a", { href: `#/scenario/${encodeURIComponent(d.id)}` }, d.id)),
      h("td", { class: "num" }, d.a), h("td", { class: "num" }, d.b),
      h("td", {}, d.counted ? (d.a_right ? "✓" : "✗") : "tie"),
      h("td", {}, d.counted ? (d.b_right ? "✓" : "✗") : "tie")))));
  replace(el,
    h("p", {}, h("b", {}, "A: "), r.label_a, " (", r.scorer_a, ")  ·  ", h("label", {}, h("b", {}, "B: "), pick), " (", r.scorer_b, ")"),
    h("p", { class: "muted" }, `${r.benchmark} · split ${r.split} · ${r.scenarios} scenarios · paired bootstrap, ${r.bootstrap} resamples of the scenarios (seed ${r.seed})`),
    h("h3", {}, "per target set"), sets,
    h("h3", {}, "per attribute: mean squared error of the predictions"), attrs,
    h("h3", {}, `scenarios whose choice differs for the current target (${r.differ.length})`),
    h("p", { class: "muted" }, r.target_json), differ);
}
