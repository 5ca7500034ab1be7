//! Python: detect a Python command and what its environment has installed.
//!
//! A command is Python when it is an interpreter (`python`, `python3.11`), a
//! script or console script with a Python shebang (`flask`, `gunicorn`,
//! `manage.py`), or a runner that starts one (`uv run`, `poetry run`, ...). When the
//! interpreter is known, otel-run reads its site-packages directly (no Python
//! start-up): whether the OpenTelemetry SDK is there, and which instrumentors are
//! installed, which it hands to the shim so the shim need not scan entry points.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{Note, Plan, shims};
use crate::bootstrap::python::site;
use crate::settings::vars;

/// Runners whose `run` subcommand starts Python in a project's environment.
const RUNNERS: &[&str] = &["uv", "poetry", "pipenv", "pdm", "hatch", "rye"];

/// What otel-run knows of a Python command's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Python {
    /// The interpreter, when the command names one (not through a runner or a
    /// pyenv-style shim script).
    pub interpreter: Option<PathBuf>,
    /// Its site-packages, when it could be found.
    pub site_packages: Option<PathBuf>,
}

/// The environment's OpenTelemetry packages, read from site-packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub sdk: bool,
    /// (entry point name, "module:Class") of the `opentelemetry_instrumentor` group.
    pub instrumentors: Vec<(String, String)>,
}

/// Detects a Python command from its resolved program and argv.
pub fn detect(program: &Path, argv: &[String]) -> Option<Python> {
    let name = program.file_name()?.to_string_lossy().into_owned();
    let interpreter = if is_interpreter_name(&name) {
        Some(program.to_path_buf())
    } else if RUNNERS.contains(&name.as_str()) && argv.get(1).map(String::as_str) == Some("run") {
        None
    } else {
        Some(shebang_interpreter(program)?)
    };
    // An interpreter that is itself a script (pyenv's shims) hides the real one.
    let interpreter = interpreter.filter(|p| !is_script(p));
    let site_packages = interpreter.as_deref().and_then(site_packages);
    Some(Python {
        interpreter,
        site_packages,
    })
}

fn is_interpreter_name(name: &str) -> bool {
    let Some(version) = name.strip_prefix("python") else {
        return false;
    };
    version.is_empty() || version.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// The first line of a file (a script's `#!` line), if it is readable.
pub fn first_line(path: &Path) -> Option<String> {
    let mut head = [0u8; 256];
    let n = fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].split(|b| *b == b'\n').next()?;
    Some(String::from_utf8_lossy(line).into_owned())
}

fn is_script(path: &Path) -> bool {
    first_line(path).is_some_and(|l| l.starts_with("#!"))
}

/// The interpreter of a `#!` line that runs Python: `#!/venv/bin/python3` or
/// `#!/usr/bin/env python3` (looked up on PATH).
fn shebang_interpreter(program: &Path) -> Option<PathBuf> {
    let line = first_line(program)?;
    let mut words = line.strip_prefix("#!")?.split_whitespace();
    let first = words.next()?;
    let interpreter = if Path::new(first).file_name()? == "env" {
        let name = words.find(|w| !w.starts_with('-'))?;
        which::which(name).ok()?
    } else {
        PathBuf::from(first)
    };
    is_interpreter_name(&interpreter.file_name()?.to_string_lossy()).then_some(interpreter)
}

/// `lib/pythonX.Y/site-packages` of a venv (`pyvenv.cfg` next to `bin/`) or of the
/// installation the interpreter belongs to.
fn site_packages(interpreter: &Path) -> Option<PathBuf> {
    let venv_root = interpreter.parent()?.parent()?;
    let root = if venv_root.join("pyvenv.cfg").is_file() {
        venv_root.to_path_buf()
    } else {
        fs::canonicalize(interpreter)
            .ok()?
            .parent()?
            .parent()?
            .to_path_buf()
    };
    let mut candidates: Vec<PathBuf> = fs::read_dir(root.join("lib"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect();
    candidates.sort();
    candidates.pop()
}

/// Reads the SDK's presence and the instrumentors' entry points from site-packages.
pub fn installed(site_packages: &Path) -> Installed {
    let sdk = site_packages
        .join("opentelemetry/sdk/trace/__init__.py")
        .is_file();
    let mut instrumentors = Vec::new();
    if let Ok(entries) = fs::read_dir(site_packages) {
        let mut dist_infos: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "dist-info"))
            .collect();
        dist_infos.sort();
        for dist_info in dist_infos {
            if let Ok(text) = fs::read_to_string(dist_info.join("entry_points.txt")) {
                instrumentors.extend(entry_points(&text, "opentelemetry_instrumentor"));
            }
        }
    }
    Installed { sdk, instrumentors }
}

/// The `name = value` lines of one `[group]` of an entry_points.txt.
fn entry_points(text: &str, group: &str) -> Vec<(String, String)> {
    let mut in_group = false;
    let mut found = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_group = line == format!("[{group}]");
        } else if in_group && let Some((name, value)) = line.split_once('=') {
            found.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    found
}

/// The shim first on PYTHONPATH, and the instrumentors handed over when otel-run
/// could read the interpreter's site-packages.
pub fn inject(plan: &mut Plan, python: &Python, cache_dir: Option<&Path>) {
    if let (Some(interpreter), Some(site_packages)) = (&python.interpreter, &python.site_packages) {
        let installed = installed(site_packages);
        plan.found.push(format!(
            "interpreter {} ({})",
            interpreter.display(),
            site_packages.display()
        ));
        plan.found.push(format!(
            "OpenTelemetry SDK {}",
            if installed.sdk {
                "installed"
            } else {
                "missing"
            }
        ));
        let names: Vec<&str> = installed
            .instrumentors
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        plan.found.push(format!(
            "instrumentations: {}",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ));
        if !installed.sdk {
            plan.notes.push(Note::new(
                format!(
                    "the OpenTelemetry SDK is not installed for `{}`; the program runs uninstrumented",
                    interpreter.display()
                ),
                format!(
                    "`otel-run bootstrap --python {}` installs it",
                    interpreter.display()
                ),
            ));
            return;
        }
        plan.set(
            vars::PYTHON_INSTRUMENTORS,
            handover(&installed.instrumentors),
        );
        if let Some(note) = untraced(plan, &installed, interpreter, site_packages) {
            plan.notes.push(note);
            // The shim's own warning for no instrumentation at all would repeat it.
            plan.set(SAID, "instrumentors");
        }
    } else {
        plan.found.push(
            "the interpreter is chosen when the command runs (a runner or a shim script); the shim checks its environment then"
                .into(),
        );
    }
    match shims::PYTHON.materialize(cache_dir) {
        Ok(dir) => plan.prepend_path("PYTHONPATH", &dir),
        Err(e) => plan.notes.push(Note::new(
            format!("cannot write the Python shim ({e}); the program runs uninstrumented"),
            "set OTEL_RUN_CACHE_DIR to a writable directory",
        )),
    }
}

/// What the child will see of `name`: planned, else inherited.
fn child_env(plan: &Plan, name: &str) -> Option<String> {
    plan.get(name)
        .map(str::to_string)
        .or_else(|| std::env::var(name).ok())
}

/// The warnings the shim has given (it gives each once per process tree).
const SAID: &str = "OTEL_RUN_PYTHON_SAID";

/// What the program's spans will miss for want of instrumentation packages: all
/// of its libraries when none is installed, else the libraries whose
/// instrumentation is not (`otel-run bootstrap` installs them), unless the child
/// exports no spans or OTEL_PYTHON_DISABLED_INSTRUMENTATIONS leaves them out on
/// purpose. Read from site-packages' names, so a run pays no Python start-up for
/// it; `otel-run doctor` reports this same note.
fn untraced(
    plan: &Plan,
    installed: &Installed,
    interpreter: &Path,
    site_packages: &Path,
) -> Option<Note> {
    let exporters = child_env(plan, vars::TRACES_EXPORTER.name).unwrap_or_else(|| "otlp".into());
    if exporters
        .split(',')
        .all(|e| matches!(e.trim(), "none" | ""))
    {
        return None;
    }
    let disabled: Vec<String> = child_env(plan, "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let without = site::uninstrumented(&site::distributions(site_packages), &disabled);
    let named: Vec<String> = without
        .iter()
        .map(|m| format!("{} {} ({})", m.library, m.version, m.instrumentation))
        .collect();
    let bootstrap = format!("`otel-run bootstrap --python {}`", interpreter.display());
    if installed.instrumentors.is_empty() {
        let libraries = if named.is_empty() {
            String::new()
        } else {
            format!("; not traced: {}", named.join(", "))
        };
        return Some(Note::new(
            format!(
                "no OpenTelemetry instrumentation package is installed for `{}`; only the program's own spans are recorded{libraries}",
                interpreter.display()
            ),
            format!("{bootstrap} installs the ones its libraries need"),
        ));
    }
    if named.is_empty() {
        return None;
    }
    Some(Note::new(
        format!(
            "installed without their instrumentation, so not traced: {}",
            named.join(", ")
        ),
        format!(
            "{bootstrap} installs {}",
            if named.len() == 1 { "it" } else { "them" }
        ),
    ))
}

/// The handed-over list: `name=module:Class,...`.
pub fn handover(instrumentors: &[(String, String)]) -> String {
    instrumentors
        .iter()
        .map(|(name, target)| format!("{name}={target}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A venv layout: bin/python (an ELF stand-in), pyvenv.cfg, site-packages.
    fn venv(root: &Path) -> PathBuf {
        write(&root.join("pyvenv.cfg"), "home = /usr/bin\n");
        write(&root.join("bin/python"), "\x7fELF");
        fs::create_dir_all(root.join("lib/python3.11/site-packages")).unwrap();
        root.join("bin/python")
    }

    #[test]
    fn interpreters_scripts_and_runners() {
        let dir = tempfile::tempdir().unwrap();
        let python = venv(dir.path());
        let site = dir.path().join("lib/python3.11/site-packages");
        assert_eq!(
            detect(&python, &[]).unwrap().site_packages,
            Some(site.clone())
        );
        let flask = dir.path().join("bin/flask");
        write(&flask, &format!("#!{}\nimport flask\n", python.display()));
        let detected = detect(&flask, &[]).unwrap();
        assert_eq!(detected.interpreter, Some(python.clone()));
        assert_eq!(detected.site_packages, Some(site));
        let shell = dir.path().join("bin/tool");
        write(&shell, "#!/bin/sh\necho hi\n");
        assert_eq!(detect(&shell, &[]), None);
        let uv = dir.path().join("bin/uv");
        write(&uv, "\x7fELF");
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            detect(&uv, &argv(&["uv", "run", "app.py"]))
                .unwrap()
                .interpreter,
            None
        );
        assert_eq!(detect(&uv, &argv(&["uv", "pip", "list"])), None);
    }

    #[test]
    fn interpreter_names() {
        for yes in ["python", "python3", "python3.11"] {
            assert!(is_interpreter_name(yes), "{yes}");
        }
        for no in ["pythonista", "ipython", "python-config"] {
            assert!(!is_interpreter_name(no), "{no}");
        }
    }

    #[test]
    fn a_shim_script_interpreter_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("shims/python3");
        write(
            &shim,
            "#!/usr/bin/env bash\nexec pyenv exec python3 \"$@\"\n",
        );
        assert_eq!(
            detect(&shim, &[]).unwrap(),
            Python {
                interpreter: None,
                site_packages: None
            }
        );
    }

    #[test]
    fn a_library_installed_without_its_instrumentation_is_one_note() {
        let dir = tempfile::tempdir().unwrap();
        let python = venv(dir.path());
        let site = dir.path().join("lib/python3.11/site-packages");
        write(&site.join("opentelemetry/sdk/trace/__init__.py"), "");
        fs::create_dir_all(site.join("flask-3.1.3.dist-info")).unwrap();
        let note = |set: &[(&str, &str)]| {
            let mut plan = Plan::default();
            plan.set(vars::TRACES_EXPORTER.name, "otlp");
            for (name, value) in set {
                plan.set(name, *value);
            }
            let found = installed(&site);
            (untraced(&plan, &found, &python, &site), plan)
        };
        // No instrumentation at all: one note, naming the library too.
        let (only, _) = note(&[]);
        let only = only.unwrap();
        assert!(
            only.message
                .contains("no OpenTelemetry instrumentation package")
                && only
                    .message
                    .contains("flask 3.1.3 (opentelemetry-instrumentation-flask)"),
            "{only}"
        );
        write(
            &site.join("opentelemetry_instrumentation_requests-0.66b1.dist-info/entry_points.txt"),
            "[opentelemetry_instrumentor]\nrequests = opentelemetry.instrumentation.requests:RequestsInstrumentor\n",
        );
        let (note_of_flask, _) = note(&[]);
        assert_eq!(
            note_of_flask.unwrap().message,
            "installed without their instrumentation, so not traced: flask 3.1.3 (opentelemetry-instrumentation-flask)"
        );
        assert_eq!(
            note(&[("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "flask")]).0,
            None
        );
        assert_eq!(note(&[(vars::TRACES_EXPORTER.name, "none")]).0, None);
        fs::create_dir_all(site.join("opentelemetry_instrumentation_flask-0.66b1.dist-info"))
            .unwrap();
        assert_eq!(note(&[]).0, None);
    }

    #[test]
    fn reads_the_sdk_and_the_instrumentors() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path();
        write(&site.join("opentelemetry/sdk/trace/__init__.py"), "");
        write(
            &site.join("opentelemetry_instrumentation_flask-0.66b2.dist-info/entry_points.txt"),
            "[opentelemetry_instrumentor]\nflask = opentelemetry.instrumentation.flask:FlaskInstrumentor\n",
        );
        write(
            &site.join("flask-3.1.dist-info/entry_points.txt"),
            "[console_scripts]\nflask = flask.cli:main\n",
        );
        let found = installed(site);
        assert!(found.sdk);
        assert_eq!(
            found.instrumentors,
            vec![(
                "flask".to_string(),
                "opentelemetry.instrumentation.flask:FlaskInstrumentor".to_string()
            )]
        );
        assert_eq!(
            handover(&found.instrumentors),
            "flask=opentelemetry.instrumentation.flask:FlaskInstrumentor"
        );
        assert!(!installed(&site.join("nothing")).sdk);
    }
}
