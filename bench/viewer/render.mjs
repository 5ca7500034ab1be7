// First render of a 1 000-span trace in the viewer: how long from the
// navigation to `#/trace/ID` until the waterfall holds every span, and until
// the browser has painted the frame after that, in Debian's chromium
// (headless, driven by playwright-core; `.ci/browser/install.sh` installs
// both). The trace is synthetic (a seeded random tree, 3 services, tags on
// every span, events on some, 50 logs) and answered by a stand-in API, so the
// figure is the UI's own: fetching one trace's JSON over loopback, laying out
// the rows and drawing them.
//
//   node bench/viewer/render.mjs [--spans 1000] [--runs 7]
//
// stdout: one line per run and the median, as JSON lines; also written to
// bench/viewer/results/render.jsonl.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { serve } from "../../tests/browser/serve.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const { chromium } = await import("../../tests/browser/node_modules/playwright-core/index.mjs").catch(() => {
  console.error("render.mjs: playwright-core is not installed in tests/browser/: run `bash .ci/browser/install.sh`");
  process.exit(1);
});
const { values: opt } = parseArgs({
  options: {
    spans: { type: "string", default: "1000" },
    runs: { type: "string", default: "7" },
    chromium: { type: "string", default: process.env.OTEL_RUN_TEST_CHROMIUM ?? "/usr/bin/chromium" },
  },
});
const spans = Number(opt.spans);
const runs = Number(opt.runs);

/** A deterministic pseudo-random sequence (mulberry32), so every run draws the same trace. */
function random(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function makeTrace(n) {
  const rnd = random(42);
  const traceID = "4bf92f3577b34da6a3ce929d0e0e4736";
  const start = Date.now() * 1000 - 10_000_000;
  const hex = (i) => i.toString(16).padStart(16, "0");
  const all = [];
  for (let i = 0; i < n; i++) {
    // Each span under one of the earlier ones, recent ones more often: a deep, bushy tree.
    const parent = i === 0 ? null : all[Math.floor(i - 1 - rnd() * Math.min(i, 20))];
    const begin = parent ? parent.startTime + Math.floor(rnd() * parent.duration * 0.5) : start;
    const duration = parent ? Math.max(1, Math.floor(rnd() * (parent.startTime + parent.duration - begin))) : 5_000_000;
    const span = {
      traceID,
      spanID: hex(i + 1),
      operationName: i === 0 ? "python" : `op-${i % 37}`,
      references: parent ? [{ refType: "CHILD_OF", traceID, spanID: parent.spanID }] : [],
      startTime: begin,
      duration,
      tags: [
        { key: "span.kind", type: "string", value: ["server", "client", "internal"][i % 3] },
        { key: "otel.status_code", type: "string", value: i % 97 === 0 ? "ERROR" : "OK" },
        { key: "http.route", type: "string", value: `/items/${i % 13}` },
        { key: "db.rows", type: "int64", value: i * 7 },
      ],
      logs: i % 10 === 0 ? [{ timestamp: begin + 1, fields: [{ key: "event", type: "string", value: "retry" }] }] : [],
      processID: `p${(i % 3) + 1}`,
    };
    all.push(span);
  }
  const process = (name) => ({ serviceName: name, tags: [{ key: "host.name", type: "string", value: "bench" }] });
  return { traceID, spans: all, processes: { p1: process("frontend"), p2: process("checkout"), p3: process("payments") } };
}

const trace = makeTrace(spans);
const traceJSON = JSON.stringify({ data: [trace], total: 0, limit: 0, offset: 0, errors: null });
const logsJSON = JSON.stringify({
  data: Array.from({ length: 50 }, (_, i) => ({
    timestamp: trace.spans[i * 3].startTime,
    severityText: i % 11 ? "INFO" : "ERROR",
    body: `log record ${i}`,
    attributes: { "code.lineno": i },
    traceID: trace.traceID,
    spanID: trace.spans[i * 3].spanID,
    serviceName: "frontend",
  })),
});

function api(req, res) {
  const path = new URL(req.url, "http://x").pathname;
  const json = (body) => res.writeHead(200, { "content-type": "application/json" }).end(body);
  if (path === `/api/traces/${trace.traceID}`) return json(traceJSON);
  if (path === "/api/otel-run/logs") return json(logsJSON);
  if (path === "/api/otel-run/summary")
    return json(JSON.stringify({ traces: 1, spans, max_spans: 200000, evicted_traces: 0, evicted_spans: 0 }));
  return res.writeHead(404).end();
}

const server = await serve(join(here, "../../ui/dist"), null, api);
const profile = mkdtempSync(join(tmpdir(), "otel-run-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: opt.chromium,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 800 },
});
// Marks, from the navigation's start, the moment the waterfall holds every span and the next frame.
await context.addInitScript((count) => {
  const observer = new MutationObserver(() => {
    if (document.querySelectorAll(".waterfall .span").length < count) return;
    observer.disconnect();
    window.__drawn = performance.now();
    requestAnimationFrame(() => setTimeout(() => (window.__painted = performance.now()), 0));
  });
  observer.observe(document, { childList: true, subtree: true });
}, spans);

const lines = [];
mkdirSync(join(here, "results"), { recursive: true });
try {
  for (let run = 0; run < runs; run++) {
    const page = await context.newPage();
    await page.goto(`${server.url}/#/trace/${trace.traceID}`);
    await page.waitForFunction(() => window.__painted !== undefined, null, { timeout: 60000 });
    const t = await page.evaluate(() => ({
      drawn: window.__drawn,
      painted: window.__painted,
      // When the trace's JSON had arrived: what comes after is the UI's own work.
      answered: performance.getEntriesByType("resource").find((e) => e.name.includes("/api/traces/"))?.responseEnd ?? 0,
    }));
    if (run === 0) await page.screenshot({ path: join(here, "results/trace.png") });
    const line = {
      run,
      spans,
      answered_ms: +t.answered.toFixed(1),
      drawn_ms: +t.drawn.toFixed(1),
      painted_ms: +t.painted.toFixed(1),
    };
    lines.push(line);
    console.log(JSON.stringify(line));
    await page.close();
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  server.close();
}
// The first run loads the modules cold; the median is over the others when there are any.
const warm = lines.length > 1 ? lines.slice(1) : lines;
const median = (key) => {
  const v = warm.map((l) => l[key]).sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)];
};
const summary = {
  spans,
  runs: warm.length,
  median_answered_ms: median("answered_ms"),
  median_drawn_ms: median("drawn_ms"),
  median_painted_ms: median("painted_ms"),
  cold_painted_ms: lines[0].painted_ms,
};
console.log(JSON.stringify(summary));
writeFileSync(join(here, "results/render.jsonl"), [...lines, summary].map((l) => JSON.stringify(l)).join("\n") + "\n");
