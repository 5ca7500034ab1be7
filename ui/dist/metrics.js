// The metrics received: one row per series (a metric's points of one set of
// attributes) with its latest value, and for a sum or a histogram a small
// chart of its recent history.
import * as api from "./api.js";
import { h, notice, svg, text, time } from "./dom.js";
export class MetricsPage {
    root = h("section", { class: "page metrics" });
    message = h("div", { class: "message" });
    body = h("tbody");
    shown = null;
    constructor() {
        this.root.append(h("h1", {}, "Metrics"), this.message, h("table", { class: "metrics" }, h("thead", {}, h("tr", {}, ...["Name", "Service", "Kind", "Attributes", "Latest", "Recent"].map((c) => h("th", {}, c)))), this.body));
    }
    async refresh() {
        const answer = await api.metrics();
        if (!answer.ok) {
            this.message.replaceChildren(answer.missing
                ? notice("This server keeps no metrics (no /api/otel-run/metrics); otel-run agent --ui does.")
                : notice(`Cannot read the metrics: ${answer.error}`, "error"));
            this.body.replaceChildren();
            this.shown = null;
            return;
        }
        const metrics = [...answer.data].sort((a, b) => a.name.localeCompare(b.name) || (a.service ?? "").localeCompare(b.service ?? ""));
        this.message.replaceChildren(metrics.length ? "" : notice("No metrics received yet."));
        const key = JSON.stringify(metrics);
        if (key === this.shown)
            return;
        this.shown = key;
        this.body.replaceChildren(...metrics.flatMap((m) => (m.series.length ? m.series : [null]).map((s) => row(m, s))));
    }
}
function row(m, s) {
    const attrs = Object.entries(s?.attributes ?? {})
        .map(([k, v]) => `${k}=${text(v)}`)
        .join(", ");
    const charted = m.type === "sum" || m.type.endsWith("histogram");
    return h("tr", { "data-metric": m.name }, h("td", { class: "name", title: m.description ?? "" }, m.name), h("td", {}, m.service ?? ""), h("td", {}, m.type), h("td", { class: "attrs" }, attrs), h("td", { class: "num", title: s ? `at ${time(s.time)}` : "" }, s ? latest(s.value, m.unit) : ""), h("td", {}, charted && s ? chart(s.history ?? [], m.type === "sum" ? "value" : "count") : ""));
}
/** A number with its unit; a histogram or summary as its count and mean. */
function latest(value, unit) {
    const u = unit && unit !== "1" ? ` ${unit}` : "";
    if (typeof value === "number")
        return `${format(value)}${u}`;
    const count = value.count ?? 0;
    const mean = count > 0 && value.sum !== undefined ? `, mean ${format(value.sum / count)}${u}` : "";
    const range = value.min !== undefined && value.max !== undefined ? `, ${format(value.min)}–${format(value.max)}${u}` : "";
    return `count ${format(count)}${mean}${range}`;
}
function format(n) {
    if (Number.isInteger(n))
        return String(n);
    return Math.abs(n) >= 100 ? n.toFixed(1) : String(Number(n.toPrecision(4)));
}
const W = 120;
const HEIGHT = 28;
/** The points as a line over their own time span and range; nothing to draw for fewer than two. */
export function chart(points, what) {
    if (points.length < 2)
        return "";
    const t0 = points[0][0];
    const t1 = points[points.length - 1][0];
    let lo = Infinity;
    let hi = -Infinity;
    for (const [, v] of points) {
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
    }
    const x = (t) => (t1 > t0 ? ((t - t0) / (t1 - t0)) * (W - 2) + 1 : W / 2);
    const y = (v) => (hi > lo ? HEIGHT - 2 - ((v - lo) / (hi - lo)) * (HEIGHT - 4) : HEIGHT / 2);
    const path = points.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    return svg("svg", {
        class: "chart",
        width: W,
        height: HEIGHT,
        viewBox: `0 0 ${W} ${HEIGHT}`,
        role: "img",
        "aria-label": `${what}: ${points.length} points from ${format(lo)} to ${format(hi)}`,
    }, svg("title", {}, `${what}, ${format(lo)} to ${format(hi)}`), svg("polyline", { points: path, fill: "none", stroke: "currentColor", "stroke-width": 1.5 }));
}
