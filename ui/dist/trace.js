// One trace: the span waterfall (each span under its parent, bars on the
// trace's time axis) with a span's attributes, events and resource opened by
// a click, and the trace's logs beside it.
import * as api from "./api.js";
import { duration, h, notice, text, time } from "./dom.js";
import { kind, status, summarize, waterfall } from "./model.js";
export class TracePage {
    id;
    root = h("section", { class: "page trace" });
    logsPanel = h("aside", { class: "logs" }, h("h2", {}, "Logs"));
    rows = new Map();
    spans = 0;
    constructor(id) {
        this.id = id;
    }
    /** Draws the trace, then again only when more of its spans have arrived. */
    async refresh() {
        const answer = await api.trace(this.id);
        if (!answer.ok || answer.data === null) {
            if (this.spans === 0) {
                const why = answer.ok || answer.missing ? "it is not held (never received, or evicted)" : answer.error;
                this.root.replaceChildren(back(), notice(`Trace ${this.id}: ${why}.`, "error"));
            }
            return;
        }
        const trace = answer.data;
        if (trace.spans.length === this.spans)
            return;
        this.spans = trace.spans.length;
        this.draw(trace);
        await this.loadLogs(summarize(trace).start);
    }
    draw(trace) {
        const t = summarize(trace);
        const open = new Set([...this.rows].filter(([, el]) => el.classList.contains("open")).map(([id]) => id));
        this.rows = new Map();
        const list = h("div", { class: "waterfall", role: "tree" }, axis(t.duration));
        for (const row of waterfall(trace)) {
            const el = spanRow(row, trace, t.start, t.duration);
            this.rows.set(row.span.spanID, el);
            list.append(el);
            if (open.has(row.span.spanID))
                toggle(el, row, trace, t.start);
        }
        this.root.replaceChildren(back(), h("header", { class: "trace-head" }, h("h1", {}, `${t.service}: ${t.root}`), h("p", { class: "facts" }, `${time(t.start)} · ${duration(t.duration)} · ${t.spans} spans`, t.errors ? h("span", { class: "mark error" }, ` · ${t.errors} in error`) : "", h("code", { class: "trace-id" }, t.id))), h("div", { class: "trace-body" }, list, this.logsPanel));
    }
    async loadLogs(start) {
        const answer = await api.logs(this.id);
        const head = h("h2", {}, "Logs");
        if (!answer.ok) {
            this.logsPanel.replaceChildren(head, notice(answer.missing ? "This server keeps no logs (no /api/otel-run/logs)." : answer.error, answer.missing ? "info" : "error"));
            return;
        }
        if (answer.data.length === 0) {
            this.logsPanel.replaceChildren(head, notice("No logs in this trace."));
            return;
        }
        const records = [...answer.data].sort((a, b) => at(a) - at(b));
        this.logsPanel.replaceChildren(head, ...records.map((r) => this.logRecord(r, start)));
    }
    logRecord(r, start) {
        const severity = (r.severityText || severityName(r.severityNumber)).toUpperCase();
        const level = /ERROR|FATAL/.test(severity) ? "error" : /WARN/.test(severity) ? "warn" : "info";
        const span = r.spanID ? this.rows.get(r.spanID) : undefined;
        return h("details", { class: `log ${level}` }, h("summary", {}, h("span", { class: "offset" }, `+${duration(Math.max(0, at(r) - start))}`), severity ? h("span", { class: `severity ${level}` }, severity) : "", h("span", { class: "body" }, text(r.body ?? ""))), kvTable([
            ...(r.serviceName ? [{ key: "service", value: r.serviceName }] : []),
            ...(r.scope ? [{ key: "scope", value: r.scope }] : []),
            ...(r.spanID ? [{ key: "span id", value: r.spanID }] : []),
            ...Object.entries(r.attributes ?? {}).map(([key, value]) => ({ key, value })),
        ]), span
            ? h("button", {
                type: "button",
                onclick: () => {
                    span.scrollIntoView({ block: "center" });
                    span.querySelector(".span-line")?.focus();
                },
            }, "show its span")
            : "");
    }
}
/** A record's time: when it happened, or else when the SDK saw it. */
function at(r) {
    return r.timestamp || r.observedTimestamp || 0;
}
/** OTLP's severity number's name (1–4 TRACE … 21–24 FATAL), for a record without a text. */
function severityName(n) {
    if (!n)
        return "";
    return ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"][Math.min(5, Math.floor((n - 1) / 4))] ?? "";
}
function back() {
    return h("a", { class: "back", href: "#/" }, "← all traces");
}
/** The time axis over the bars: 0, ¼, ½, ¾ and the whole trace. */
function axis(total) {
    return h("div", { class: "axis" }, h("span", { class: "name-col" }, "Span"), h("span", { class: "timeline" }, ...[0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { class: "tick", style: `left:${f * 100}%` }, duration(total * f)))));
}
/** A service's colour, from its name: any hue but the reds, which mean an error. */
function hue(service) {
    let n = 0;
    for (const c of service)
        n = (n * 31 + c.charCodeAt(0)) % 300;
    return 30 + n;
}
function spanRow(row, trace, start, total) {
    const span = row.span;
    const service = trace.processes[span.processID]?.serviceName ?? "?";
    const st = status(span);
    const left = total > 0 ? ((span.startTime - start) / total) * 100 : 0;
    const width = total > 0 ? Math.max((span.duration / total) * 100, 0.2) : 100;
    const el = h("div", {
        class: `span ${st}`,
        role: "treeitem",
        "data-span-id": span.spanID,
        "data-name": span.operationName,
        "data-depth": row.depth,
        "aria-level": row.depth + 1,
    });
    const line = h("div", { class: "span-line", tabindex: 0, "aria-expanded": "false" }, h("span", { class: "name-col", style: `padding-left:${row.depth * 14 + 4}px` }, h("span", { class: "swatch", style: `background:hsl(${hue(service)} 60% 50%)`, title: service }), h("span", { class: "op" }, span.operationName), h("span", { class: `kind ${kind(span)}` }, kind(span)), st === "error" ? h("span", { class: "mark error", title: "status ERROR" }, "✕") : "", row.orphan ? h("span", { class: "orphan", title: "its parent span is not in this trace" }, "↰?") : ""), h("span", { class: "timeline" }, h("span", {
        class: "bar",
        style: `left:${left.toFixed(3)}%;width:${width.toFixed(3)}%;background:hsl(${hue(service)} 60% 50%)`,
    }), h("span", { class: "bar-label", style: `left:${Math.min(left + width, 100).toFixed(3)}%` }, duration(span.duration))));
    const open = () => toggle(el, row, trace, start);
    line.addEventListener("click", open);
    line.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            open();
        }
    });
    el.append(line);
    return el;
}
/** Opens or closes a span's details; they are built on the first open. */
function toggle(el, row, trace, start) {
    const line = el.querySelector(".span-line");
    const existing = el.querySelector(".details");
    if (existing) {
        existing.remove();
        el.classList.remove("open");
        line.setAttribute("aria-expanded", "false");
        return;
    }
    el.classList.add("open");
    line.setAttribute("aria-expanded", "true");
    el.append(details(row, trace, start));
}
function details(row, trace, start) {
    const span = row.span;
    const process = trace.processes[span.processID];
    const events = span.logs ?? [];
    return h("div", { class: "details" }, h("p", { class: "facts" }, `start +${duration(span.startTime - start)} · duration ${duration(span.duration)} · kind ${kind(span)} · status ${status(span)}`, h("code", {}, span.spanID)), h("h3", {}, "Attributes"), kvTable(span.tags ?? [], "attributes"), h("h3", {}, `Events (${events.length})`), events.length
        ? h("ol", { class: "events" }, ...events.map((e) => h("li", {}, h("span", { class: "offset" }, `+${duration(e.timestamp - start)}`), kvTable(e.fields))))
        : h("p", { class: "none" }, "none"), h("h3", {}, "Resource"), kvTable([{ key: "service.name", value: process?.serviceName ?? "?" }, ...(process?.tags ?? [])], "resource"));
}
function kvTable(pairs, name) {
    if (pairs.length === 0)
        return h("p", { class: "none" }, "none");
    return h("table", { class: `kv ${name ?? ""}` }, h("tbody", {}, ...[...pairs]
        .sort((a, b) => a.key.localeCompare(b.key))
        .map((p) => h("tr", {}, h("th", {}, p.key), h("td", {}, text(p.value))))));
}
