// The JSON the viewer reads: Jaeger's query API (answered by otel-run's agent
// and by Jaeger itself) and otel-run's own endpoints under /api/otel-run/,
// whose shapes ui/README.md writes down. An endpoint a server lacks answers
// 404: the UI then says what is missing instead of failing.

export interface KeyValue {
  key: string;
  type?: string;
  value: unknown;
}

export interface Reference {
  refType: string;
  traceID: string;
  spanID: string;
}

export interface SpanLog {
  timestamp: number;
  fields: KeyValue[];
}

export interface Span {
  traceID: string;
  spanID: string;
  operationName: string;
  references?: Reference[];
  startTime: number; // microseconds since the epoch
  duration: number; // microseconds
  tags?: KeyValue[];
  logs?: SpanLog[];
  processID: string;
}

export interface Process {
  serviceName: string;
  tags?: KeyValue[];
}

export interface Trace {
  traceID: string;
  spans: Span[];
  processes: Record<string, Process>;
}

/** What the store holds and has dropped; every field a count. */
export interface Summary {
  traces?: number;
  spans?: number;
  logs?: number;
  bytes?: number;
  max_spans?: number;
  max_bytes?: number;
  evicted_traces?: number;
  evicted_spans?: number;
  evicted_logs?: number;
  rejected_spans?: number;
  metric_series?: number;
  dropped_metric_series?: number;
}

/** Attributes as otel-run's endpoints write them: an object of values. */
export type Attributes = Record<string, unknown>;

export interface LogRecord {
  timestamp: number; // microseconds since the epoch; 0 when the SDK set none
  observedTimestamp?: number;
  severityText?: string;
  severityNumber?: number;
  body?: unknown;
  attributes?: Attributes;
  traceID?: string;
  spanID?: string;
  serviceName?: string;
  scope?: string;
}

/** A histogram's (or summary's) latest point. */
export interface Distribution {
  count?: number;
  sum?: number;
  min?: number;
  max?: number;
}

export interface Series {
  attributes?: Attributes;
  time: number; // microseconds since the epoch
  value: number | Distribution;
  /** `[time, value]`, oldest first: a sum's value, a histogram's count. */
  history?: [number, number][];
}

export interface Metric {
  service?: string;
  scope?: string;
  name: string;
  description?: string;
  unit?: string;
  type: string; // gauge, sum, histogram, exponential_histogram, summary
  series: Series[];
}

/** An answer: the data, or `missing` (the server has no such endpoint), or an error's text. */
export type Answer<T> = { ok: true; data: T } | { ok: false; missing: boolean; error: string };

async function get<T>(path: string): Promise<Answer<T>> {
  let response: Response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" } });
  } catch (e) {
    return { ok: false, missing: false, error: `the server did not answer (${String(e)})` };
  }
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.ok && body !== null) {
    return { ok: true, data: body as T };
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
function jaegerError(body: unknown): string | null {
  const errors = (body as { errors?: { msg?: string }[] } | null)?.errors;
  if (!Array.isArray(errors) || errors.length === 0) return null;
  return errors.map((e) => e.msg ?? "error").join("; ");
}

/** Jaeger's envelope `{"data": ...}`, unwrapped. */
async function data<T>(path: string): Promise<Answer<T>> {
  const answer = await get<{ data: T | null; errors?: unknown }>(path);
  if (!answer.ok) return answer;
  const error = jaegerError(answer.data);
  if (error !== null) return { ok: false, missing: false, error };
  return { ok: true, data: answer.data.data ?? ([] as unknown as T) };
}

export function services(): Promise<Answer<string[]>> {
  return data<string[]>("/api/services");
}

export function operations(service: string): Promise<Answer<string[]>> {
  return data<string[]>(`/api/services/${encodeURIComponent(service)}/operations`);
}

export interface TraceQuery {
  service: string;
  operation: string;
  minDuration: string;
  maxDuration: string;
  limit: number;
}

export function traces(q: TraceQuery): Promise<Answer<Trace[]>> {
  const params = new URLSearchParams();
  params.set("service", q.service);
  if (q.operation) params.set("operation", q.operation);
  if (q.minDuration) params.set("minDuration", q.minDuration);
  if (q.maxDuration) params.set("maxDuration", q.maxDuration);
  params.set("limit", String(q.limit));
  // Jaeger's default window is the last hour; the viewer shows everything held.
  params.set("lookback", "custom");
  params.set("start", "0");
  params.set("end", String(Date.now() * 1000 + 60_000_000));
  return data<Trace[]>(`/api/traces?${params}`);
}

export async function trace(id: string): Promise<Answer<Trace | null>> {
  const answer = await data<Trace[]>(`/api/traces/${encodeURIComponent(id)}`);
  if (!answer.ok) return answer;
  return { ok: true, data: answer.data[0] ?? null };
}

export function summary(): Promise<Answer<Summary>> {
  return get<Summary>("/api/otel-run/summary");
}

export function logs(traceID: string): Promise<Answer<LogRecord[]>> {
  return data<LogRecord[]>(`/api/otel-run/logs?traceID=${encodeURIComponent(traceID)}`);
}

export function metrics(): Promise<Answer<Metric[]>> {
  return data<Metric[]>("/api/otel-run/metrics");
}
