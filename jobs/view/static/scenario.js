// One scenario: its prompt, every response with labels, predictions and each sample's
// reasoning and raw answer; the response chosen for the current target and the label-closest.
import { fmt, h, replace } from "./dom.js";

export function renderScenario(el, sc, current) {
  const badge = (r) => [
    r === current.chosen ? h("span", { class: "badge chosen" }, "chosen for the current target") : null,
    current.closest.includes(r) ? h("span", { class: "badge closest" }, "label-closest") : null,
  ];
  const cards = sc.responses.map((resp) => {
    const rows = sc.attributes.map((a) => {
      const samples = resp.samples.filter((d) => d.attribute === a);
      return h("tr", { dataset: { attribute: a } },
        h("th", {}, a),
        h("td", { class: "num", dataset: { key: "label" } }, fmt(resp.labels[a], 2)),
        h("td", { class: "num", dataset: { key: "prediction" } }, fmt(resp.predictions[a], 3)),
        h("td", { class: "samples" }, samples.map((d) => h("details", { class: d.error ? "failed" : "" },
          h("summary", {}, `sample ${d.sample}: `, d.error ? `failed — ${d.error}` : fmt(d.prediction, 3)),
          d.reasoning ? h("p", { class: "reasoning" }, h("b", {}, "reasoning: "), d.reasoning) : null,
          d.raw ? h("pre", { class: "raw" }, d.raw) : h("p", { class: "muted" }, "no raw answer stored")))));
    });
    return h("article", {
      class: `response${resp.index === current.chosen ? " is-chosen" : ""}`,
      dataset: { response: resp.index },
    },
    h("h3", {}, `response ${resp.index} `, badge(resp.index)),
    h("pre", { class: "text" }, resp.text),
    h("table", { class: "attrs" },
      h("thead", {}, h("tr", {}, ["attribute", "label", "prediction", "samples (reasoning, raw answer)"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows)));
  });
  const outcome = { right: "the chosen response is label-closest", wrong: "the chosen response is not label-closest", tie: "the labels tie for this target: not counted" }[current.outcome];
  replace(el,
    h("h2", { id: "scenario-id" }, sc.id),
    h("p", {}, h("a", { href: "#/scenarios" }, "‹ all scenarios"), ` · current target ${current.target}: ${outcome}`),
    h("h3", {}, "prompt"), h("pre", { class: "text prompt-full" }, sc.prompt),
    cards);
}
