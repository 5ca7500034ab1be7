"""otel-run's Python shim: zero-code OpenTelemetry for the program otel-run runs.

otel-run puts this file's directory first on PYTHONPATH, so Python imports it as
`sitecustomize` at start-up, in every Python process of the run (reloaders,
workers and other subprocesses included). It is written to cost almost nothing
until it is needed: it imports nothing beyond `os` and `sys`, and hooks the
imports that matter.

- Instrumentors are activated when their library is first imported (a post-import
  hook), not eagerly: a program that never imports Flask never loads Flask's
  instrumentor. The list of instrumentors comes from otel-run
  (OTEL_RUN_PYTHON_INSTRUMENTORS) when it could read the target environment;
  otherwise it is read from the installed entry points. Django's waits for its
  settings, which the program may set up after importing Django.
- Each signal's SDK provider starts when it is first needed: the program asks for
  the global provider, or a span, a measurement or a log record is made through
  the API with none set. OpenTelemetry's own code asking for a provider (an
  instrumentor being activated) gets the API's proxy instead, which follows the
  provider set later: a program that sets up its own after importing an
  instrumented library keeps it.
- Every provider, the program's or the shim's, exports through otel-run: its
  processors or readers are added to each one the program builds, unless one of
  the program's own already exports to the same place (otel_run_sdk.py).
- With otel-run's agent (OTEL_RUN_AGENT_ENDPOINT), spans, metrics and logs go to it
  as OTLP/JSON over loopback HTTP with the standard library: no exporter package,
  protobuf or gRPC import is needed.
- Log records reach OpenTelemetry without a handler on the root logger, which
  would turn the program's `logging.basicConfig()` into a no-op and silence the
  messages Python and werkzeug print when no handler is configured.
- A propagator named in OTEL_PROPAGATORS that is not installed is said, and left
  out, rather than failing every instrumentor that imports the propagation API.
- A program that leaves SIGTERM at its default action gets a handler that flushes
  the SDK, for a bounded time, and then dies of the signal as it would have; a
  program's own handler is never touched.
- Its messages follow otel-run's own level (`-v`, OTEL_RUN_LOG_LEVEL).

The modules beside this file, which find this one as `_shim`, are loaded only
when needed: otel_run_api.py once OpenTelemetry is imported, otel_run_sdk.py and
the exporters once a provider is built. Finally it runs the user's own
`sitecustomize`, if there is one, which Python would otherwise not see behind
this one.
"""

import os
import sys

_SELF = sys.modules[__name__]
_PREFIX = "otel-run: "
_SAID = "OTEL_RUN_PYTHON_SAID"

# Entry point names whose library is imported under another module name.
_MODULE_OF = {
    "aiohttp-client": "aiohttp",
    "aiohttp-server": "aiohttp",
    "aio-pika": "aio_pika",
    "boto3sqs": "boto3",
    "confluent-kafka": "confluent_kafka",
    "grpc_aio_client": "grpc",
    "grpc_aio_server": "grpc",
    "grpc_client": "grpc",
    "grpc_server": "grpc",
    "kafka": "kafka",
    "mysql": "mysql.connector",
    "mysqlclient": "MySQLdb",
    "tortoiseorm": "tortoise",
    "urllib": "urllib.request",
}


def _on_django_settings(conf, activate):
    """django.conf: `activate` once the settings are set up. The Django
    instrumentor reads them (it adds its middleware), and reading them before
    the program has set DJANGO_SETTINGS_MODULE (`manage.py` does, after importing
    Django or an instrumentation of it) would set them up empty for good."""
    cls = conf.LazySettings
    done = []

    def after(method):
        original = getattr(cls, method)

        def wrapper(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            if not done:
                done.append(True)
                activate(conf)
            return result

        wrapper.__wrapped__ = original
        setattr(cls, method, wrapper)

    after("_setup")
    after("configure")


# Instrumentors activated once their library is configured rather than imported:
# entry point name -> (module, callable(module, activate)).
_ON_CONFIGURED = {"django": ("django.conf", _on_django_settings)}

# Python programs that run other Python programs (`poetry run ...`).
_RUNNERS = {"poetry", "pipenv", "pdm", "hatch"}

# Entry points that are not about a library import.
_NOT_ON_IMPORT = {"system_metrics"}

_EXPORTER_VARIABLES = {
    "traces": "OTEL_TRACES_EXPORTER",
    "metrics": "OTEL_METRICS_EXPORTER",
    "logs": "OTEL_LOGS_EXPORTER",
}

_LEVELS = {"trace": 0, "debug": 1, "info": 2, "warn": 3, "warning": 3, "error": 4, "off": 5, "none": 5}


def _level():
    """otel-run's own level (its `-v` or OTEL_LOG_LEVEL, handed over as
    OTEL_RUN_LOG_LEVEL), else OTEL_LOG_LEVEL."""
    value = os.environ.get("OTEL_RUN_LOG_LEVEL") or os.environ.get("OTEL_LOG_LEVEL") or "warn"
    return _LEVELS.get(value.strip().lower(), 3)


def _debug(message):
    if _level() <= 1:
        sys.stderr.write("%sdebug: python: %s\n" % (_PREFIX, message))


def _info(message):
    if _level() <= 2:
        sys.stderr.write("%spython: %s\n" % (_PREFIX, message))


def _warn_once(key, message, hint=None):
    """Says `message` once for the whole process tree (subprocesses inherit the marker)."""
    said = [s for s in os.environ.get(_SAID, "").split(",") if s]
    if key in said or _level() > 3:
        return
    os.environ[_SAID] = ",".join(said + [key])
    text = "%swarning: %s\n" % (_PREFIX, message)
    if hint:
        text += "hint: %s\n" % hint
    sys.stderr.write(text)


def _exporters(variable):
    value = os.environ.get(variable, "otlp").strip().lower()
    return [e.strip() for e in value.split(",") if e.strip() and e.strip() != "none"]


def _exported(signal):
    return bool(_exporters(_EXPORTER_VARIABLES[signal]))


# --- The modules beside this one ---------------------------------------------------

def _sdk_call(function, *args):
    """Calls otel_run_sdk's `function`; None if the SDK side cannot load."""
    try:
        return getattr(_sibling("otel_run_sdk"), function)(*args)
    except Exception as error:  # telemetry must never break the program
        _warn_once("sdk-" + function, "otel-run's Python shim failed in %s: %r" % (function, error))
        return None


def _hook(function):
    """An import callback that calls otel_run_api's `function` with the module."""
    return lambda module: getattr(_sibling("otel_run_api"), function)(module)


def _known_propagators_only(exec_module, module):
    _sibling("otel_run_api").known_propagators_only(exec_module, module)


# --- Log records, without a handler on the root logger --------------------------

_bridges = []  # handlers fed what a handler on the root logger would be
_sdk_bridge_wanted = False  # OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED, until the first record
_feeding = None  # threading.local(): a record logged while one is fed is not fed


def _bridge_logging(logging):
    """Feeds the bridge handlers from `Logger.callHandlers`, with the records a
    handler on the root logger would get (its level applied, loggers that do not
    propagate left out), without being one: a handler there makes
    `logging.basicConfig()` a no-op and stops Python's last-resort output and
    werkzeug's and Flask's own handlers, which are added only while the logger
    has none to go to. Installed once."""
    global _feeding
    if _feeding is not None:
        return
    import threading

    _feeding = threading.local()
    call_handlers = logging.Logger.callHandlers

    def callHandlers(self, record):
        if not getattr(_feeding, "busy", False):
            _feeding.busy = True
            try:
                _feed(logging, self, record)
            finally:
                _feeding.busy = False
        return call_handlers(self, record)

    callHandlers.__wrapped__ = call_handlers
    logging.Logger.callHandlers = callHandlers


def _feed(logging, logger, record):
    global _sdk_bridge_wanted
    node = logger
    while node.propagate and node.parent is not None:
        node = node.parent
    if node is not logging.root:
        return
    if _sdk_bridge_wanted:
        _sdk_bridge_wanted = False
        handler = _sdk_call("sdk_logging_handler")
        if handler is not None:
            _bridges.append(handler)
    for handler in _bridges:
        if record.levelno >= handler.level:
            handler.handle(record)


def _on_logging_imported(logging):
    global _sdk_bridge_wanted
    if os.environ.get("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "").strip().lower() == "true":
        _sdk_bridge_wanted = True
        _bridge_logging(logging)


def _take_root_handlers(logging, before):
    """OpenTelemetry handlers an instrumentor put on the root logger
    (opentelemetry-instrumentation-logging's) move to the bridge, or go when
    logs are not exported."""
    for handler in [h for h in logging.root.handlers if h not in before]:
        if type(handler).__module__.startswith("opentelemetry."):
            logging.root.removeHandler(handler)
            if _exported("logs"):
                _bridges.append(handler)
                _bridge_logging(logging)
                _debug("log records reach %s without it on the root logger" % type(handler).__name__)


def _quiet_last_resort(logging):
    """A handler for `logging.lastResort` while an instrumentor is activated:
    OpenTelemetry's own messages about setting up (which a handler on the root
    logger would have swallowed) become debug lines; others print as before."""
    previous = logging.lastResort

    class ToDebug(logging.Handler):
        def handle(self, record):
            if record.name.startswith("opentelemetry"):
                _debug("%s: %s" % (record.name, record.getMessage()))
            elif previous is not None and record.levelno >= previous.level:
                previous.handle(record)
            return True

    return ToDebug()


# --- SIGTERM: flush, then die of it --------------------------------------------

# Long enough to send what is queued over loopback, short enough to fit the grace
# period of a container stop (10 s for `docker stop`).
_FLUSH_BOUND_SECONDS = 5.0
_terminating = False


def _install_sigterm_flush():
    """A program left with SIGTERM's default action dies at once, before the
    SDK's batches are sent. Give it a handler that sends them first and then
    dies of the signal all the same. A program that has a handler keeps it; one
    that sets its own later replaces this one (`signal.signal`)."""
    import _signal

    if _signal.getsignal(_signal.SIGTERM) == _signal.SIG_DFL:
        _signal.signal(_signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum, frame):
    global _terminating
    import _signal

    if _signal.getsignal(signum) is not _on_sigterm:
        # Called by the program's own handler, which took this one for the
        # previous one: flush, and let the program's handler decide.
        _flush_for_exit()
        return
    if _terminating:
        # The same signal again during the flush (sent to the process group and
        # forwarded too): the flush is bounded, one is enough.
        return
    _terminating = True
    _flush_for_exit()
    _signal.signal(signum, _signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _flush_for_exit():
    """Flushes what otel-run exports from, if anything was set up."""
    sdk = sys.modules.get("otel_run_sdk")
    if sdk is not None:
        sdk.flush_for_exit(_FLUSH_BOUND_SECONDS)


# --- Instrumentors, activated on import ----------------------------------------

def _instrumentors():
    """[(entry point name, "module:Class")], from otel-run or the entry points."""
    handed_over = os.environ.get("OTEL_RUN_PYTHON_INSTRUMENTORS")
    if handed_over is not None:
        pairs = (item.split("=", 1) for item in handed_over.split(",") if "=" in item)
        return [(name.strip(), target.strip()) for name, target in pairs]
    from importlib.metadata import entry_points

    return [(ep.name, ep.value) for ep in entry_points(group="opentelemetry_instrumentor")]


def _activate(name, target):
    import importlib
    import logging

    module_name, _, class_name = target.partition(":")
    before = list(logging.root.handlers)
    last_resort, logging.lastResort = logging.lastResort, _quiet_last_resort(logging)
    try:
        instrumentor = getattr(importlib.import_module(module_name), class_name)()
        # The instrumentor checks that the library's version is one it supports.
        instrumentor.instrument()
        _info("instrumented %s" % name)
        _quiet_second_instrument(name, instrumentor)
    except Exception as error:  # an instrumentor must never break the program
        _warn_once("instrument-" + name, "could not instrument %s for `%s`: %r" % (name, sys.executable, error))
    finally:
        logging.lastResort = last_resort
    _take_root_handlers(logging, before)


def _quiet_second_instrument(name, instrumentor):
    """A program that instruments the library itself (`RequestsInstrumentor().instrument()`)
    finds it done: a debug line says so instead of the instrumentor's warning on
    the program's stderr. Instrumentors are singletons: the instance is the one
    the program gets."""
    instrument = instrumentor.instrument

    def instrument_once(*args, **kwargs):
        if getattr(instrumentor, "_is_instrumented_by_opentelemetry", False):
            _debug("the program instruments %s, which otel-run has instrumented already" % name)
            return None
        return instrument(*args, **kwargs)

    instrumentor.instrument = instrument_once


# Modules an activation imports besides its library: the standard library and
# the instrumentation stack's own dependencies.
_STDLIB = getattr(sys, "stdlib_module_names", frozenset())
_OWN = {"opentelemetry", "wrapt", "packaging", "importlib_metadata", "zipp", "typing_extensions", "deprecated"}

_pending = []  # actions waiting for a safe moment, in import order
_activating = False


def _imports_in_progress(finished):
    """The modules whose import is under way in this thread, but `finished`."""
    names = []
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "_find_and_load" and code.co_filename.startswith("<frozen importlib"):
            name = frame.f_locals.get("name") or ""
            if name != finished and not name.startswith(finished + "."):
                names.append(name)
        frame = frame.f_back
    return names


def _on_import(action):
    """Runs `action` (an instrumentor's activation) once a module is imported, as
    soon as that is safe: an activation imports parts of the standard library and
    of OpenTelemetry, so it waits while one of those is itself half-imported (the
    module was imported from inside it), and one activation never runs inside
    another. It still runs before the code that imported the module goes on."""

    def callback(module):
        _pending.append(action)
        _run_pending(module.__name__)

    return callback


def _run_pending(finished):
    global _activating
    if _activating:
        return
    for name in _imports_in_progress(finished):
        if name.partition(".")[0] in _STDLIB or name.partition(".")[0] in _OWN:
            return
    _activating = True
    try:
        while _pending:
            _pending.pop(0)()
    finally:
        _activating = False


class _PostImportHook:
    """A meta path finder that runs callbacks once a watched module has executed,
    or executes it through a wrapper (`around`)."""

    def __init__(self, callbacks, around):
        self.callbacks = callbacks  # module name -> [callable(module)]
        self.around = around  # module name -> callable(exec_module, module)

    def find_spec(self, name, path=None, target=None):
        if name not in self.callbacks and name not in self.around:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _Loader(spec.loader, self.callbacks.pop(name, []), self.around.pop(name, None))
                return spec
            if spec is not None:
                return None
        return None

    def run_now(self, name):
        for callback in self.callbacks.pop(name, []):
            _call_back(callback, sys.modules[name])


def _call_back(callback, module):
    """A callback must never fail the program's import."""
    try:
        callback(module)
    except Exception as error:
        _warn_once("hook-" + module.__name__, "otel-run's Python shim failed after importing %s: %r"
                   % (module.__name__, error))


class _Loader:
    """Wraps a module's loader: executes it, puts the original back, then calls back."""

    def __init__(self, loader, callbacks, around):
        self._loader = loader
        self._callbacks = callbacks
        self._around = around

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        if self._around is not None:
            self._around(self._loader.exec_module, module)
        else:
            self._loader.exec_module(module)
        for callback in self._callbacks:
            _call_back(callback, module)


def _install():
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    # A runner (`poetry run`) is only the way to the program: leave it alone.
    if os.path.basename(sys.argv[0] if sys.argv else "") in _RUNNERS:
        return
    # otel-run hands the instrumentors over only after finding the SDK installed.
    if os.environ.get("OTEL_RUN_PYTHON_INSTRUMENTORS") is None and not _sdk_installed():
        _warn_once("sdk", "the OpenTelemetry SDK is not installed for `%s`; the program runs uninstrumented"
                   % sys.executable, "`otel-run bootstrap --python %s` installs it" % sys.executable)
        return
    signals = [s for s in _EXPORTER_VARIABLES if _exported(s)]
    if not signals:
        return
    callbacks = {
        "opentelemetry.trace": [_hook("patch_trace_api")],
        "opentelemetry.metrics": [_hook("patch_metrics_api")],
        "opentelemetry._logs": [_hook("patch_logs_api")],
        "opentelemetry.sdk.trace": [_hook("watch_tracer_providers")],
        "opentelemetry.sdk.metrics": [_hook("watch_meter_providers")],
        "opentelemetry.util.http": [_hook("quick_environ_reads")],
    }
    if "logs" in signals:
        callbacks["logging"] = [_on_logging_imported]
    around = {}
    if os.environ.get("OTEL_PROPAGATORS", "").strip():
        around["opentelemetry.propagate"] = _known_propagators_only
    disabled = {d.strip() for d in os.environ.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "").split(",")}
    instrumentors = _instrumentors()
    if "traces" in signals and not instrumentors:
        _warn_once("instrumentors", "no OpenTelemetry instrumentation package is installed for `%s`; "
                   "only the program's own spans are recorded" % sys.executable,
                   "`otel-run bootstrap --python %s` installs the ones its libraries need" % sys.executable)
    for name, target in instrumentors:
        if name in disabled or name in _NOT_ON_IMPORT:
            continue
        activate = _on_import(lambda n=name, t=target: _activate(n, t))
        if name in _ON_CONFIGURED:
            module, watch = _ON_CONFIGURED[name]
            callbacks.setdefault(module, []).append(lambda m, w=watch, a=activate: w(m, a))
        else:
            callbacks.setdefault(_MODULE_OF.get(name, name), []).append(activate)
    hook = _PostImportHook(callbacks, around)
    sys.meta_path.insert(0, hook)
    _debug("`%s` (pid %d) exports %s; %d instrumentors wait for their libraries"
           % (sys.executable, os.getpid(), ", ".join(signals), len(instrumentors)))
    for module in list(callbacks):
        if module in sys.modules:
            hook.run_now(module)
    _install_sigterm_flush()


def _path_finder():
    """The import system's own path finder, already loaded: importing `importlib`
    here would cost more than the rest of this file."""
    return next(f for f in sys.meta_path if getattr(f, "__name__", "") == "PathFinder")


def _sibling(name):
    """A module beside this file, imported from here whatever the program did to
    sys.path, with this module as its `_shim`."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    here = os.path.dirname(os.path.abspath(__file__))
    spec = _path_finder().find_spec(name, [here])
    if spec is None:
        raise ImportError("otel-run's `%s` is missing from %s" % (name, here))
    module = type(sys)(name)
    module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
    module._shim = _SELF
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _sdk_installed():
    return any(os.path.isfile(os.path.join(entry or os.curdir, "opentelemetry", "sdk", "trace", "__init__.py"))
               for entry in sys.path)


def _chain_user_sitecustomize():
    """Runs the `sitecustomize` this file hides, if there is one."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = _path_finder().find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = type(sys)("sitecustomize")
    module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
    ours = sys.modules.get("sitecustomize")
    sys.modules["sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules["sitecustomize"] = ours


try:
    _install()
except Exception as _error:  # never break the program
    sys.stderr.write("%swarning: Python instrumentation failed to start: %r\n" % (_PREFIX, _error))
_chain_user_sitecustomize()
