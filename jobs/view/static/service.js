// The page `pluralign serve` answers GET / with: the scorers the query service holds and one
// target re-aligned through POST /v1/align (a bearer token, when the service needs one).
import { h, replace, fmt } from "./dom.js";

export async function startService(body) {
  const out = h("div", { id: "service" });
  replace(body, h("header", {}, h("h1", {}, "pluralign serve")), out);
  const token = h("input", { id: "svc-token", type: "password", placeholder: "bearer token (if the service needs one)" });
  const headers = () => (token.value ? { Authorization: `Bearer ${token.value}` } : {});
  const scorers = h("table", { id: "svc-scorers" });
  const result = h("pre", { id: "svc-result" });
  const query = h("textarea", { id: "svc-query", rows: 6, cols: 70 },
    JSON.stringify({ benchmark: "helpsteer2", split: "eval", scorer: "ridge", targets: ["high", "low"] }, null, 1));
  async function list() {
    const r = await fetch("/v1/scorers", { headers: headers() });
    const data = await r.json();
    if (!r.ok) { result.textContent = data.error; return; }
    const rows = data.scorers || [];
    const keys = rows.length ? Object.keys(rows[0]) : [];
    replace(scorers, h("tr", {}, keys.map((k) => h("th", {}, k))),
      rows.map((row) => h("tr", {}, keys.map((k) => h("td", {}, typeof row[k] === "object" ? JSON.stringify(row[k]) : row[k])))));
  }
  async function align() {
    const r = await fetch("/v1/align", { method: "POST", headers: { "Content-Type": "application/json", ...headers() }, body: query.value });
    const data = await r.json();
    if (!r.ok) { result.textContent = data.error; return; }
    result.textContent = (data.targets || []).map((t) =>
      `${JSON.stringify(t.target)}  accuracy ${fmt(t.accuracy)}  weighted ${fmt(t.weighted_score)}`).join("\n") || JSON.stringify(data);
  }
  replace(out,
    h("p", {}, "The query service re-aligns any target from the score cache. Open ",
      h("code", {}, "pluralign view RUN_DIR"), " for the per-scenario drill-down."),
    h("p", {}, token, " ", h("button", { onclick: list }, "list scorers")),
    scorers,
    h("h2", {}, "POST /v1/align"), query, h("p", {}, h("button", { id: "svc-align", onclick: align }, "align")), result);
  list().catch((e) => { result.textContent = String(e); });
  document.body.dataset.ready = "service";
}
