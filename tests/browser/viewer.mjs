// otel-run's viewer in a real browser (Debian's chromium, driven by
// playwright-core): the trace list shows a trace that arrives after the page
// loaded (the poll, no reload), clicking it shows the waterfall with each span
// under its parent, clicking a span opens its attributes, and every request
// stays on the viewer's own origin. A screenshot of each page goes to --out.
//
//   node viewer.mjs --url http://127.0.0.1:16686 --service S --chain a>b>c \
//        --attribute b:key=value --out DIR
//   node viewer.mjs --serve ui/dist --api http://127.0.0.1:QUERY ...
//        (no viewer server: serve the built UI here and pass /api/ to a
//        Jaeger query API, whose paths the viewer's API answers too)
//
// It prints `ready` on stdout once the empty list is up, for the caller to
// send the trace then. Exit status 1 with the reason on stderr on a failure.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { serve } from "./serve.mjs";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    serve: { type: "string" },
    api: { type: "string" },
    service: { type: "string" },
    chain: { type: "string" },
    attribute: { type: "string" },
    out: { type: "string" },
    chromium: { type: "string", default: process.env.OTEL_RUN_TEST_CHROMIUM ?? "/usr/bin/chromium" },
    timeout: { type: "string", default: "30000" },
  },
});
for (const name of ["service", "chain", "attribute", "out"]) {
  if (!opt[name]) fail(`--${name} is required`);
}
if (!opt.url === !opt.serve) fail("give either --url or --serve DIST --api URL");
const timeout = Number(opt.timeout);
const chain = opt.chain.split(">");
const [attrSpan, attrPair] = opt.attribute.split(":");
const [attrKey, attrValue] = attrPair.split("=");

function fail(message) {
  console.error(`viewer.mjs: ${message}`);
  process.exit(1);
}

const { chromium } = await import("playwright-core").catch(() =>
  fail("playwright-core is not installed in tests/browser/: run `bash .ci/browser/install.sh`"),
);
const server = opt.serve ? await serve(opt.serve, opt.api) : null;
const base = opt.url ?? server.url;
const origin = new URL(base).origin;
const profile = mkdtempSync(join(tmpdir(), "otel-run-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: opt.chromium,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1280, height: 800 },
});
const offsite = [];
const pageErrors = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(timeout);
  // Self-contained: anything asked of another origin is refused and reported.
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    offsite.push(url);
    return route.abort();
  });
  page.on("pageerror", (e) => pageErrors.push(String(e)));

  await page.goto(`${base}/`);
  await page.locator("table.traces").waitFor();
  console.log("ready");

  // The trace arrives after the page loaded: only the poll can show it. Its
  // spans may come in more than one export (the program's, then otel-run's
  // process span): the row is the trace once its root is the chain's first.
  const row = page
    .locator("tr.trace", { hasText: opt.service })
    .filter({ has: page.locator("td a", { hasText: new RegExp(`^${chain[0]}$`) }) });
  try {
    await row.waitFor();
  } catch (e) {
    const listed = await page.locator("tr.trace").allInnerTexts();
    fail(`no trace of ${opt.service} with the root ${chain[0]} in the list: ${JSON.stringify(listed)}\n${e}`);
  }
  await page.screenshot({ path: join(opt.out, "list.png"), fullPage: true });

  // The filters hide it: it has no span in error, it is shorter than 1000 s and longer than 1 µs.
  await hiddenBy(page, row, () => page.selectOption("select[name=status]", "error"));
  await page.selectOption("select[name=status]", "ok");
  await row.waitFor();
  await hiddenBy(page, row, () => page.fill("input[name=min]", "1000s"));
  await page.fill("input[name=min]", "");
  await hiddenBy(page, row, () => page.fill("input[name=max]", "1us"));
  await page.fill("input[name=max]", "");
  await page.selectOption("select[name=service]", opt.service);
  await row.waitFor();

  await row.click();
  await page.locator(".waterfall .span").first().waitFor();
  // Wait until every span of the chain is drawn (spans may still arrive).
  for (const name of chain) await page.locator(`.waterfall .span[data-name="${name}"]`).first().waitFor();
  const rows = await page.$$eval(".waterfall .span", (els) =>
    els.map((el) => ({ name: el.dataset.name, depth: Number(el.dataset.depth) })),
  );
  checkChain(rows, chain);
  // Beside it, the trace's logs: records, or a notice saying there are none or the server keeps none.
  await page.locator("aside.logs details.log, aside.logs .notice").first().waitFor();
  await page.screenshot({ path: join(opt.out, "trace.png"), fullPage: true });

  const span = page.locator(`.waterfall .span[data-name="${attrSpan}"]`).first();
  await span.locator(".span-line").click();
  const attrs = span.locator(".details table.attributes");
  await attrs.waitFor();
  const found = await attrs.locator("tr", { has: page.locator("th", { hasText: new RegExp(`^${attrKey}$`) }) }).locator("td").allInnerTexts();
  if (found[0] !== attrValue) fail(`span ${attrSpan}: attribute ${attrKey} is ${JSON.stringify(found)}, not ${attrValue}`);
  await span.locator(".details table.resource").waitFor();
  await page.screenshot({ path: join(opt.out, "span.png"), fullPage: true });

  await page.locator("nav a", { hasText: "Metrics" }).click();
  await page.locator("section.metrics h1").waitFor();
  await page.locator("section.metrics .notice, section.metrics tbody tr").first().waitFor();
  await page.screenshot({ path: join(opt.out, "metrics.png"), fullPage: true });

  if (offsite.length) fail(`the viewer asked other origins: ${offsite.join(", ")}`);
  if (pageErrors.length) fail(`errors in the page: ${pageErrors.join("; ")}`);
  console.error(`viewer.mjs: ok; screenshots in ${opt.out}`);
} catch (e) {
  fail(String(e?.stack ?? e));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  server?.close();
}

/** `act` makes `row` leave the list and a notice say that nothing matches. */
async function hiddenBy(page, row, act) {
  await act();
  await row.waitFor({ state: "detached" });
  await page.locator(".message .notice", { hasText: "No trace matches" }).waitFor();
}

/** Each name of the chain is drawn inside the previous one's subtree, one level deeper. */
function checkChain(rows, chain) {
  const drawn = rows.map((r) => `${"  ".repeat(r.depth)}${r.name}`).join("\n");
  let at = rows.findIndex((r) => r.name === chain[0]);
  if (at < 0) fail(`no span ${chain[0]} in the waterfall:\n${drawn}`);
  for (const name of chain.slice(1)) {
    const parent = rows[at];
    let child = -1;
    for (let i = at + 1; i < rows.length && rows[i].depth > parent.depth; i++) {
      if (rows[i].name === name && rows[i].depth === parent.depth + 1) {
        child = i;
        break;
      }
    }
    if (child < 0) fail(`${name} is not drawn under ${parent.name}:\n${drawn}`);
    at = child;
  }
}
