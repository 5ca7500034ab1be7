// The JSON the viewer reads: Jaeger's query API (answered by otel-run's agent
// and by Jaeger itself) and otel-run's own endpoints under /api/otel-run/,
// whose shapes ui/README.md writes down. An endpoint a server lacks answers
// 404: the UI then says what is missing instead of failing.
async function get(path) {
    let response;
    try {
        response = await fetch(path, { headers: { Accept: "application/json" } });
    }
    catch (e) {
        return { ok: false, missing: false, error: `the server did not answer (${String(e)})` };
    }
    let body = null;
    try {
        body = await response.json();
    }
    catch {
        body = null;
    }
    if (response.ok && body !== null) {
        return { ok: true, data: body };
    }
    // A server without the endpoint answers 404, or (Jaeger) its own page.
    const json = (response.headers.get("content-type") ?? "").includes("json");
    return {
        ok: false,
        missing: response.status === 404 || (response.ok && !json),
        error: jaegerError(body) ?? `${path}: HTTP ${response.status}`,
    };
}
/** Jaeger's `{"errors": [{"code", "msg"}]}`, as one line. */
function jaegerError(body) {
    const errors = body?.errors;
    if (!Array.isArray(errors) || errors.length === 0)
        return null;
    return errors.map((e) => e.msg ?? "error").join("; ");
}
/** Jaeger's envelope `{"data": ...}`, unwrapped. */
async function data(path) {
    const answer = await get(path);
    if (!answer.ok)
        return answer;
    const error = jaegerError(answer.data);
    if (error !== null)
        return { ok: false, missing: false, error };
    return { ok: true, data: answer.data.data ?? [] };
}
export function services() {
    return data("/api/services");
}
export function operations(service) {
    return data(`/api/services/${encodeURIComponent(service)}/operations`);
}
export function traces(q) {
    const params = new URLSearchParams();
    params.set("service", q.service);
    if (q.operation)
        params.set("operation", q.operation);
    if (q.minDuration)
        params.set("minDuration", q.minDuration);
    if (q.maxDuration)
        params.set("maxDuration", q.maxDuration);
    params.set("limit", String(q.limit));
    // Jaeger's default window is the last hour; the viewer shows everything held.
    params.set("lookback", "custom");
    params.set("start", "0");
    params.set("end", String(Date.now() * 1000 + 60_000_000));
    return data(`/api/traces?${params}`);
}
export async function trace(id) {
    const answer = await data(`/api/traces/${encodeURIComponent(id)}`);
    if (!answer.ok)
        return answer;
    return { ok: true, data: answer.data[0] ?? null };
}
export function summary() {
    return get("/api/otel-run/summary");
}
export function logs(traceID) {
    return data(`/api/otel-run/logs?traceID=${encodeURIComponent(traceID)}`);
}
export function metrics() {
    return data("/api/otel-run/metrics");
}
