// The metrics received: one row per metric stream with its latest value, and
// for a sum or a histogram a small chart of its recent points.

import * as api from "./api.js";
import { h, notice, svg, text, time } from "./dom.js";

export class MetricsPage {
  readonly root = h("section", { class: "page metrics" });
  private readonly message = h("div", { class: "message" });
  private readonly body = h("tbody");
  private shown = "";

  constructor() {
    this.root.append(
      h("h1", {}, "Metrics"),
      this.message,
      h(
        "table",
        { class: "metrics" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ...["Name", "Service", "Kind", "Attributes", "Latest", "Recent"].map((c) => h("th", {}, c)),
          ),
        ),
        this.body,
      ),
    );
  }

  async refresh(): Promise<void> {
    const answer = await api.metrics();
    if (!answer.ok) {
      this.message.replaceChildren(
        answer.missing
          ? notice("This server keeps no metrics (no /api/otel-run/metrics); otel-run agent --ui does.")
          : notice(`Cannot read the metrics: ${answer.error}`, "error"),
      );
      this.body.replaceChildren();
      this.shown = "";
      return;
    }
    const metrics = [...answer.data].sort(
      (a, b) => a.name.localeCompare(b.name) || (a.service ?? "").localeCompare(b.service ?? ""),
    );
    this.message.replaceChildren(metrics.length ? "" : notice("No metrics received yet."));
    const key = JSON.stringify(metrics);
    if (key === this.shown) return;
    this.shown = key;
    this.body.replaceChildren(...metrics.map(row));
  }
}

function row(m: api.Metric): HTMLElement {
  const attrs = (m.attributes ?? []).map((a) => `${a.key}=${text(a.value)}`).join(", ");
  const points = m.points ?? [];
  const last = points[points.length - 1];
  const latest = m.latest ?? last?.value;
  return h(
    "tr",
    { "data-metric": m.name },
    h("td", { class: "name" }, m.name),
    h("td", {}, m.service ?? ""),
    h("td", {}, m.kind),
    h("td", { class: "attrs" }, attrs),
    h(
      "td",
      { class: "num", title: last ? `at ${time(last.time)}` : "" },
      latest === undefined ? "" : `${format(latest)}${m.unit && m.unit !== "1" ? ` ${m.unit}` : ""}`,
    ),
    h("td", {}, m.kind === "sum" || m.kind === "histogram" ? chart(points) : ""),
  );
}

function format(n: number): string {
  if (Number.isInteger(n)) return String(n);
  return Math.abs(n) >= 100 ? n.toFixed(1) : String(Number(n.toPrecision(4)));
}

const W = 120;
const HEIGHT = 28;

/** The points as a line over their own time span and range; nothing to draw for fewer than two. */
export function chart(points: api.MetricPoint[]): Element | string {
  if (points.length < 2) return "";
  const t0 = points[0].time;
  const t1 = points[points.length - 1].time;
  let lo = Infinity;
  let hi = -Infinity;
  for (const p of points) {
    lo = Math.min(lo, p.value);
    hi = Math.max(hi, p.value);
  }
  const x = (t: number) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * (W - 2) + 1 : W / 2);
  const y = (v: number) => (hi > lo ? HEIGHT - 2 - ((v - lo) / (hi - lo)) * (HEIGHT - 4) : HEIGHT / 2);
  const path = points.map((p) => `${x(p.time).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
  return svg(
    "svg",
    { class: "chart", width: W, height: HEIGHT, viewBox: `0 0 ${W} ${HEIGHT}`, role: "img", "aria-label": `${points.length} points from ${format(lo)} to ${format(hi)}` },
    svg("polyline", { points: path, fill: "none", stroke: "currentColor", "stroke-width": 1.5 }),
  );
}
