// otel-run's Node.js shim: starts the OpenTelemetry SDK with the
// auto-instrumentations, as `@opentelemetry/auto-instrumentations-node/register`
// does (configured from the OTEL_* environment), without changing what a signal
// does to the program.
//
// `register` listens for SIGTERM to shut the SDK down and never exits, so a
// server that would die of SIGTERM survives it. Here SIGTERM and SIGINT are
// looked at when they arrive: if the program listens for the signal itself, its
// listener decides and the shim does nothing; otherwise the SDK is flushed, for
// a bounded time, and the signal is raised again with no listener left, so the
// process dies of it as it would without the shim (a repeat of the signal during
// the flush is absorbed).
//
// Loaded with `--require` (CommonJS apps) or from register.mjs (ES module apps).
// otel-run gives the package's directory, found from the app's node_modules, in
// OTEL_RUN_NODE_PACKAGE: the SDK is required from there, as `register` would.
'use strict';

const { createRequire } = require('node:module');
const path = require('node:path');

// Long enough to send a batch over loopback, short enough to fit the grace
// period of a container stop (10 s for `docker stop`).
const FLUSH_BOUND_MS = 5000;
const SIGNALS = ['SIGTERM', 'SIGINT'];

function start(packageDir) {
  const fromPackage = createRequire(path.join(packageDir, 'package.json'));
  const api = fromPackage('@opentelemetry/api');
  const { NodeSDK } = fromPackage('@opentelemetry/sdk-node');
  const auto = fromPackage(packageDir);
  // As `register`: OTEL_LOG_LEVEL shows what the instrumentations say while
  // they load; NodeSDK then sets up its own logger from the same variable.
  const logLevel = process.env.OTEL_LOG_LEVEL;
  if (logLevel) {
    const { diagLogLevelFromString } = fromPackage('@opentelemetry/core');
    api.diag.setLogger(new api.DiagConsoleLogger(), { logLevel: diagLogLevelFromString(logLevel) });
  }
  const config = { instrumentations: auto.getNodeAutoInstrumentations() };
  if (typeof auto.getResourceDetectors === 'function') {
    config.resourceDetectors = auto.getResourceDetectors();
  }
  if (logLevel) {
    api.diag.disable();
  }
  const sdk = new NodeSDK(config);
  sdk.start();
  return sdk;
}

function flushOnExit(sdk) {
  let stopping;
  const shutdown = () => {
    stopping = stopping || sdk.shutdown().catch((error) => {
      process.stderr.write(`otel-run: warning: the OpenTelemetry SDK did not shut down cleanly: ${error}\n`);
    });
    return stopping;
  };
  // A program that ends by itself (its event loop empty) flushes, as with `register`.
  process.once('beforeExit', shutdown);
  for (const signal of SIGNALS) {
    let flushing = false;
    const onSignal = () => {
      // The same signal again while flushing (sent to the process group and
      // forwarded too): the flush is bounded, one is enough.
      if (flushing) {
        return;
      }
      // Counted now, not at start-up: the program may listen after the shim loaded.
      if (process.listenerCount(signal) > 1) {
        return;
      }
      flushing = true;
      let raised = false;
      const raise = () => {
        if (!raised) {
          raised = true;
          // With no listener left, the signal has its default action again.
          process.removeListener(signal, onSignal);
          process.kill(process.pid, signal);
        }
      };
      const bound = setTimeout(raise, FLUSH_BOUND_MS);
      shutdown().finally(() => {
        clearTimeout(bound);
        raise();
      });
    };
    // First in line, so that at the signal every other listener is still counted,
    // even one registered with `once` by a module loaded before the shim.
    process.prependListener(signal, onSignal);
  }
}

const packageDir = process.env.OTEL_RUN_NODE_PACKAGE;
if (packageDir) {
  try {
    flushOnExit(start(packageDir));
  } catch (error) {
    // Never stop the program: it runs uninstrumented.
    const reason = String((error && error.message) || error).split('\n')[0];
    process.stderr.write(`otel-run: warning: the OpenTelemetry SDK did not start (${reason}); the program runs uninstrumented\n`);
  }
}
