// otel-run's Node.js shim for ES module apps, loaded with `--import`.
//
// The auto-instrumentations patch ES modules only through the import-in-the-middle
// loader hook, which must be registered before anything is imported: register it
// first, then load the auto-instrumentations' `register` entry point. otel-run
// passes both files as absolute paths, found from the app's own node_modules.
import { register } from 'node:module';
import { pathToFileURL } from 'node:url';

const hook = process.env.OTEL_RUN_NODE_HOOK;
if (hook) {
  register(pathToFileURL(hook));
}
await import(pathToFileURL(process.env.OTEL_RUN_NODE_REGISTER).href);
