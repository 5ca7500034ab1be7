// A stand-in for the viewer's server when there is none: the built UI's files
// from a directory, and every /api/ request passed to a Jaeger query API
// (whose answers the viewer's API shares; otel-run's own endpoints then 404,
// which the UI must bear). Used by viewer.mjs --serve and bench/viewer.
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";

const TYPES = { ".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8" };

/** Serves `dir` and proxies /api/ to `api` (or answers it with `handler`) on 127.0.0.1; resolves to { url, close }. */
export function serve(dir, api, handler) {
  const server = createServer(async (req, res) => {
    try {
      if (req.url.startsWith("/api/")) {
        if (handler) return handler(req, res);
        const upstream = await fetch(new URL(req.url, api));
        res.writeHead(upstream.status, { "content-type": upstream.headers.get("content-type") ?? "application/json" });
        return res.end(Buffer.from(await upstream.arrayBuffer()));
      }
      const path = new URL(req.url, "http://x").pathname;
      const name = path === "/" ? "index.html" : normalize(path).replace(/^\/+/, "");
      if (name.includes("..")) throw new Error("outside");
      const body = await readFile(join(dir, name));
      res.writeHead(200, { "content-type": TYPES[extname(name)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() }),
    ),
  );
}
