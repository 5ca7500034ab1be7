"""What otel-run bootstrap needs to know of a Python environment, as JSON on stdout.

Run by the target interpreter itself, with the standard library only: the
interpreter, whether it has pip, every installed distribution, the propagators
its entry points name, and the library-to-instrumentation table of the
opentelemetry-instrumentation release installed there, if any. `--table-only` prints just that table (used to
generate the table otel-run ships).
"""

import json
import re
import sys

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*$")


def _normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _split(requirement):
    match = _REQUIREMENT.match(requirement)
    if not match:
        return None, ""
    return _normalize(match.group(1)), match.group(2).replace(" ", "")


def table():
    """The installed opentelemetry-instrumentation's own table, or None."""
    try:
        from opentelemetry.instrumentation import bootstrap_gen
        from opentelemetry.instrumentation.version import __version__
    except Exception:  # absent, or a release without the table
        return None

    def instrumentation(requirement):
        name, spec = _split(requirement)
        # "==<this release>" means "the release line chosen"; anything else is
        # versioned on its own and kept as written.
        return {"name": name, "spec": "line" if spec == "==" + __version__ else spec}

    libraries = []
    for entry in bootstrap_gen.libraries:
        library, spec = _split(entry["library"])
        libraries.append(
            {"library": library, "spec": spec, "instrumentation": instrumentation(entry["instrumentation"])}
        )
    defaults = [instrumentation(r) for r in bootstrap_gen.default_instrumentations]
    return {"line": __version__, "libraries": libraries, "defaults": defaults}


def _entry_points(group):
    import importlib.metadata

    try:
        return importlib.metadata.entry_points(group=group)
    except TypeError:  # Python 3.9: a dict of groups
        return importlib.metadata.entry_points().get(group, [])


def environment():
    import importlib.metadata
    import importlib.util

    distributions = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            distributions.setdefault(_normalize(name), dist.version)
    return {
        "executable": sys.executable,
        "version": ".".join(map(str, sys.version_info[:3])),
        "prefix": sys.prefix,
        "venv": sys.prefix != sys.base_prefix,
        "pip": importlib.util.find_spec("pip") is not None,
        "distributions": distributions,
        "propagators": sorted({ep.name for ep in _entry_points("opentelemetry_propagator")}),
        "table": table(),
    }


if __name__ == "__main__":
    json.dump(table() if "--table-only" in sys.argv else environment(), sys.stdout)
