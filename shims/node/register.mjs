// otel-run's Node.js shim for ES module apps, loaded with `--import`.
//
// The auto-instrumentations patch ES modules only through the import-in-the-middle
// loader hook, which must be registered before anything is imported: register it
// first, then start the SDK with sdk.cjs beside this file. otel-run passes the
// hook as an absolute path, found from the app's own node_modules.
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';

const hook = process.env.OTEL_RUN_NODE_HOOK;
if (hook) {
  register(pathToFileURL(hook));
}
await import(new URL('./sdk.cjs', import.meta.url).href);
