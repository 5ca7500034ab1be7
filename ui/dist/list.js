// The trace list: every trace held for the chosen services, newest first,
// with the filters of the page's bar. Refreshed by the poll without touching
// the filters the user is editing.
import * as api from "./api.js";
import { duration, h, notice, time } from "./dom.js";
import { summarize } from "./model.js";
const LIMIT = 200;
/** The filters, kept while the user opens a trace and comes back. */
const filters = { service: "", operation: "", status: "", min: "", max: "" };
/** A duration typed by the user (`250ms`, `1.5s`, `300us`; a bare number is ms), in µs. */
export function parseDuration(input) {
    const s = input.trim();
    if (s === "")
        return null;
    const m = /^(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m)?$/.exec(s);
    if (!m)
        return "bad";
    const scale = { us: 1, µs: 1, ms: 1000, s: 1_000_000, m: 60_000_000 }[m[2] ?? "ms"] ?? 1000;
    return Number(m[1]) * scale;
}
export class ListPage {
    root = h("section", { class: "page list" });
    serviceSelect = h("select", { name: "service", "aria-label": "service" });
    operationSelect = h("select", { name: "operation", "aria-label": "operation" });
    statusSelect = h("select", { name: "status", "aria-label": "status" }, h("option", { value: "" }, "any status"), h("option", { value: "error" }, "error"), h("option", { value: "ok" }, "no error"));
    minInput = h("input", { name: "min", placeholder: "min duration, e.g. 5ms", size: 20 });
    maxInput = h("input", { name: "max", placeholder: "max duration, e.g. 2s", size: 20 });
    message = h("div", { class: "message" });
    body = h("tbody");
    services = null;
    /** What the rows show (null: redraw), and the latest refresh, whose answer alone is drawn. */
    shown = null;
    generation = 0;
    constructor() {
        this.serviceSelect.value = filters.service;
        this.statusSelect.value = filters.status;
        this.minInput.value = filters.min;
        this.maxInput.value = filters.max;
        const changed = () => this.readFilters();
        this.serviceSelect.addEventListener("change", () => {
            filters.operation = "";
            changed();
            void this.loadOperations();
        });
        this.operationSelect.addEventListener("change", changed);
        this.statusSelect.addEventListener("change", changed);
        this.minInput.addEventListener("input", changed);
        this.maxInput.addEventListener("input", changed);
        this.root.append(h("form", { class: "filters", onsubmit: (e) => e.preventDefault() }, this.serviceSelect, this.operationSelect, this.statusSelect, this.minInput, this.maxInput), this.message, h("table", { class: "traces" }, h("thead", {}, h("tr", {}, h("th", {}, "Start"), h("th", {}, "Service"), h("th", {}, "Root span"), h("th", { class: "num" }, "Duration"), h("th", { class: "num" }, "Spans"), h("th", {}, "Errors"))), this.body));
        this.setServices([]);
        void this.loadOperations();
    }
    readFilters() {
        filters.service = this.serviceSelect.value;
        filters.operation = this.operationSelect.value;
        filters.status = this.statusSelect.value;
        filters.min = this.minInput.value;
        filters.max = this.maxInput.value;
        this.shown = null;
        void this.refresh();
    }
    async loadOperations() {
        const options = [h("option", { value: "" }, "any operation")];
        if (filters.service) {
            const ops = await api.operations(filters.service);
            if (ops.ok)
                options.push(...[...ops.data].sort().map((o) => h("option", { value: o }, o)));
        }
        this.operationSelect.replaceChildren(...options);
        this.operationSelect.value = filters.operation;
    }
    setServices(list) {
        const sorted = [...list].sort();
        if (this.services !== null && sorted.join("\n") === this.services.join("\n"))
            return;
        this.services = sorted;
        this.serviceSelect.replaceChildren(h("option", { value: "" }, "all services"), ...sorted.map((s) => h("option", { value: s }, s)));
        this.serviceSelect.value = filters.service;
    }
    /** Reads the services and the traces again; redraws the rows only if they changed. */
    async refresh() {
        const generation = ++this.generation;
        const services = await api.services();
        if (generation !== this.generation)
            return;
        if (!services.ok) {
            this.message.replaceChildren(notice(`Cannot list the services: ${services.error}`, "error"));
            return;
        }
        this.setServices(services.data);
        const min = parseDuration(filters.min);
        const max = parseDuration(filters.max);
        if (min === "bad" || max === "bad") {
            this.message.replaceChildren(notice("A duration is a number with a unit: 300us, 5ms, 1.5s or 2m (a bare number is ms).", "error"));
            return;
        }
        // Jaeger's API lists the traces of one service: ask each one and merge.
        const all = this.services ?? [];
        const wanted = filters.service ? [filters.service] : all;
        const answers = await Promise.all(wanted.map((service) => api.traces({ service, operation: filters.service ? filters.operation : "", minDuration: "", maxDuration: "", limit: LIMIT })));
        // A filter changed while the traces were read: the newer refresh draws.
        if (generation !== this.generation)
            return;
        const failed = answers.find((a) => !a.ok);
        const byID = new Map();
        for (const answer of answers) {
            if (!answer.ok)
                continue;
            for (const trace of answer.data) {
                if (trace.spans.length)
                    byID.set(trace.traceID, summarize(trace));
            }
        }
        const rows = [...byID.values()]
            .filter((t) => filters.status !== "error" || t.errors > 0)
            .filter((t) => filters.status !== "ok" || t.errors === 0)
            .filter((t) => min === null || t.duration >= min)
            .filter((t) => max === null || t.duration <= max)
            .sort((a, b) => b.start - a.start || a.id.localeCompare(b.id));
        this.message.replaceChildren(failed && !failed.ok
            ? notice(`Some traces could not be read: ${failed.error}`, "error")
            : rows.length === 0
                ? notice(all.length === 0
                    ? "No traces yet. Send OTLP to this agent (otel-run -- COMMAND exports to it); they appear here as they arrive."
                    : "No trace matches these filters.")
                : "");
        const key = rows.map((r) => `${r.id}:${r.spans}:${r.errors}`).join(",");
        if (key === this.shown)
            return;
        this.shown = key;
        const longest = Math.max(1, ...rows.map((r) => r.duration));
        this.body.replaceChildren(...rows.map((r) => row(r, longest)));
    }
}
function row(t, longest) {
    const href = `#/trace/${t.id}`;
    return h("tr", {
        class: t.errors ? "trace error" : "trace",
        "data-trace-id": t.id,
        onclick: () => {
            location.hash = href;
        },
    }, h("td", { class: "time" }, time(t.start)), h("td", {}, t.service), h("td", {}, h("a", { href }, t.root)), h("td", { class: "num duration" }, h("span", { class: "meter", style: `width:${((t.duration / longest) * 100).toFixed(1)}%` }), duration(t.duration)), h("td", { class: "num" }, t.spans), h("td", {}, t.errors ? h("span", { class: "mark error", title: `${t.errors} span(s) in error` }, `✕ ${t.errors}`) : ""));
}
