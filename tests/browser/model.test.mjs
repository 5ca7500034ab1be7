// The UI's computations on Jaeger's JSON, without a browser (`node --test`):
// the waterfall's order and nesting, whatever the references hold, and the
// durations typed in the filters.
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseDuration } from "../../ui/dist/list.js";
import { summarize, waterfall } from "../../ui/dist/model.js";

const T = "t1";
function span(id, parent, start, duration = 10, extra = {}) {
  return {
    traceID: T,
    spanID: id,
    operationName: `op-${id}`,
    references: parent ? [{ refType: "CHILD_OF", traceID: T, spanID: parent }] : [],
    startTime: start,
    duration,
    processID: "p1",
    ...extra,
  };
}
const trace = (spans) => ({ traceID: T, spans, processes: { p1: { serviceName: "svc" } } });
const drawn = (t) => waterfall(t).map((r) => `${r.depth}:${r.span.spanID}${r.orphan ? "?" : ""}`);

test("each span comes right after its parent, one level deeper, siblings by start", () => {
  const t = trace([span("c2", "a", 30), span("b", "a", 20), span("a", null, 0, 100), span("d", "b", 25)]);
  assert.deepEqual(drawn(t), ["0:a", "1:b", "2:d", "1:c2"]);
});

test("a span whose parent is not in the trace is a root, marked", () => {
  const t = trace([span("a", null, 0), span("x", "gone", 5)]);
  assert.deepEqual(drawn(t), ["0:a", "0:x?"]);
});

test("spans in a reference cycle are each drawn once, not lost", () => {
  const t = trace([span("a", null, 0), span("p", "q", 1), span("q", "p", 2)]);
  assert.deepEqual(drawn(t).sort(), ["0:a", "0:p?", "0:q?"]);
});

test("a FOLLOWS_FROM reference nests too when it is the only one", () => {
  const s = span("b", null, 5);
  s.references = [{ refType: "FOLLOWS_FROM", traceID: T, spanID: "a" }];
  assert.deepEqual(drawn(trace([span("a", null, 0), s])), ["0:a", "1:b"]);
});

test("a deep chain does not overflow the stack", () => {
  const spans = [span("0", null, 0)];
  for (let i = 1; i < 20000; i++) spans.push(span(String(i), String(i - 1), i));
  const rows = waterfall(trace(spans));
  assert.equal(rows.length, 20000);
  assert.equal(rows[19999].depth, 19999);
});

test("a trace's summary: its earliest root, whole extent and spans in error", () => {
  const err = { tags: [{ key: "otel.status_code", type: "string", value: "ERROR" }] };
  const t = trace([span("b", "a", 50, 100, err), span("a", null, 10, 20)]);
  assert.deepEqual(
    { ...summarize(t) },
    { id: T, service: "svc", root: "op-a", start: 10, duration: 140, spans: 2, errors: 1 },
  );
});

test("durations typed in the filters", () => {
  assert.equal(parseDuration(""), null);
  assert.equal(parseDuration("300us"), 300);
  assert.equal(parseDuration("5ms"), 5000);
  assert.equal(parseDuration("1.5s"), 1_500_000);
  assert.equal(parseDuration("2m"), 120_000_000);
  assert.equal(parseDuration("7"), 7000);
  assert.equal(parseDuration("fast"), "bad");
  assert.equal(parseDuration("-1ms"), "bad");
});
