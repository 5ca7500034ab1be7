// The viewer's entry: the header with the store's summary, the router over
// `#/` (traces), `#/trace/ID` and `#/metrics`, and the poll that shows what
// arrives without a reload.

import * as api from "./api.js";
import { h } from "./dom.js";
import { ListPage } from "./list.js";
import { MetricsPage } from "./metrics.js";
import { TracePage } from "./trace.js";

const POLL_MS = 2000;

interface Page {
  root: HTMLElement;
  refresh(): Promise<void>;
}

const main = document.getElementById("main")!;
const store = document.getElementById("store")!;
let page: Page | null = null;
let route = "";

function pageFor(hash: string): Page {
  const trace = /^#\/trace\/([0-9a-fA-F]+)/.exec(hash);
  if (trace) return new TracePage(trace[1]);
  if (hash.startsWith("#/metrics")) return new MetricsPage();
  return new ListPage();
}

function navigate(): void {
  const hash = location.hash || "#/";
  if (hash === route) return;
  route = hash;
  page = pageFor(hash);
  for (const link of document.querySelectorAll<HTMLAnchorElement>("nav a")) {
    const target = link.getAttribute("href")!;
    link.classList.toggle("current", target === "#/" ? !hash.startsWith("#/metrics") : hash.startsWith(target));
  }
  main.replaceChildren(page.root);
  void page.refresh();
}

async function refreshSummary(): Promise<void> {
  const answer = await api.summary();
  if (!answer.ok) {
    store.replaceChildren(answer.missing ? "" : h("span", { class: "mark error" }, "store: no answer"));
    return;
  }
  const s = answer.data;
  const n = (v: number | undefined) => (v ?? 0).toLocaleString("en");
  const of = (v: number | undefined, noun: string, plural = `${noun}s`) => `${n(v)} ${v === 1 ? noun : plural}`;
  // Whatever the store dropped is said: evicted to stay within its limits, or refused.
  const dropped = [
    s.evicted_traces ? `evicted ${of(s.evicted_traces, "trace")} (${of(s.evicted_spans, "span")})` : "",
    s.evicted_logs ? `evicted ${of(s.evicted_logs, "log")}` : "",
    s.rejected_spans ? `rejected ${of(s.rejected_spans, "span")}` : "",
    s.dropped_metric_series ? `dropped ${of(s.dropped_metric_series, "metric series", "metric series")}` : "",
  ].filter(Boolean);
  store.replaceChildren(
    h(
      "span",
      { title: s.max_bytes ? `at most ${n(s.max_spans)} spans and ${n(s.max_bytes)} bytes` : "" },
      `${of(s.traces, "trace")}, ${of(s.spans, "span")}${s.max_spans ? ` of ${n(s.max_spans)}` : ""} held`,
    ),
    h(
      "span",
      { class: dropped.length ? "evicted mark warn" : "evicted", title: "whole oldest traces are evicted to stay within the limits" },
      ` · ${dropped.length ? dropped.join(", ") : "evicted: none"}`,
    ),
  );
}

async function poll(): Promise<void> {
  try {
    await Promise.all([page?.refresh(), refreshSummary()]);
  } finally {
    setTimeout(() => void poll(), POLL_MS);
  }
}

window.addEventListener("hashchange", navigate);
navigate();
setTimeout(() => void poll(), POLL_MS);
void refreshSummary();
