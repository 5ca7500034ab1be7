// What the pages compute from Jaeger's JSON: a trace's root, extent and error
// mark, and its spans in waterfall order (each under its parent).
export function tag(tags, key) {
    return tags?.find((t) => t.key === key)?.value;
}
/** A span is in error when Jaeger marks it (`error`) or its OTLP status is ERROR. */
export function isError(span) {
    const error = tag(span.tags, "error");
    return error === true || error === "true" || tag(span.tags, "otel.status_code") === "ERROR";
}
export function kind(span) {
    const k = tag(span.tags, "span.kind");
    return typeof k === "string" ? k : "internal";
}
export function status(span) {
    if (isError(span))
        return "error";
    return tag(span.tags, "otel.status_code") === "OK" ? "ok" : "unset";
}
/** The span's parent in the same trace: its CHILD_OF reference, else its first one. */
export function parentID(span) {
    const refs = (span.references ?? []).filter((r) => r.traceID === span.traceID);
    return (refs.find((r) => r.refType === "CHILD_OF") ?? refs[0])?.spanID;
}
export function summarize(trace) {
    const ids = new Set(trace.spans.map((s) => s.spanID));
    const roots = trace.spans.filter((s) => {
        const parent = parentID(s);
        return parent === undefined || !ids.has(parent);
    });
    // The earliest root: the process span of `otel-run -- COMMAND`, when it is there.
    const root = (roots.length ? roots : trace.spans).reduce((a, b) => (b.startTime < a.startTime ? b : a));
    let start = Infinity;
    let end = -Infinity;
    for (const s of trace.spans) {
        start = Math.min(start, s.startTime);
        end = Math.max(end, s.startTime + s.duration);
    }
    return {
        id: trace.traceID,
        service: trace.processes[root.processID]?.serviceName ?? "?",
        root: root.operationName,
        start,
        duration: end - start,
        spans: trace.spans.length,
        errors: trace.spans.filter(isError).length,
    };
}
/** The spans depth first, children by start time, each right after its parent. */
export function waterfall(trace) {
    const ids = new Set(trace.spans.map((s) => s.spanID));
    const children = new Map();
    const roots = [];
    for (const s of trace.spans) {
        const parent = parentID(s);
        if (parent !== undefined && ids.has(parent) && parent !== s.spanID) {
            const list = children.get(parent) ?? [];
            list.push(s);
            children.set(parent, list);
        }
        else {
            roots.push(s);
        }
    }
    const byStart = (a, b) => a.startTime - b.startTime || a.spanID.localeCompare(b.spanID);
    const rows = [];
    const seen = new Set();
    // An explicit stack: a deep trace must not overflow the call stack.
    const stack = roots
        .sort(byStart)
        .reverse()
        .map((span) => ({ span, depth: 0, orphan: parentID(span) !== undefined }));
    while (stack.length) {
        const row = stack.pop();
        if (seen.has(row.span.spanID))
            continue;
        seen.add(row.span.spanID);
        rows.push(row);
        const kids = (children.get(row.span.spanID) ?? []).sort(byStart);
        for (let i = kids.length - 1; i >= 0; i--) {
            stack.push({ span: kids[i], depth: row.depth + 1, orphan: false });
        }
    }
    // Spans in a reference cycle reach no root: show them at the top level.
    for (const span of trace.spans) {
        if (!seen.has(span.spanID))
            rows.push({ span, depth: 0, orphan: true });
    }
    return rows;
}
