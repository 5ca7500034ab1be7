//! Node.js: the OpenTelemetry auto-instrumentations' `register` entry point,
//! loaded through NODE_OPTIONS, but only when the package resolves for the app:
//! a `--require` that does not resolve would stop the app from starting.
//!
//! Files are named by absolute path: Node resolves NODE_OPTIONS' modules from the
//! working directory, not from the app. A CommonJS app requires `register`; an ES
//! module app imports otel-run's shim, which registers the import-in-the-middle
//! hook first (without it, ES modules such as Express 5 are not patched).

use std::path::{Path, PathBuf};

use super::{Note, Plan, shims};

pub const PACKAGE: &str = "@opentelemetry/auto-instrumentations-node";
/// Commands that start Node.js.
const LAUNCHERS: &[&str] = &["node", "nodejs", "npm", "npx", "yarn", "pnpm"];

pub fn is_node(program: &Path, shebang: Option<&str>) -> bool {
    program
        .file_name()
        .is_some_and(|n| LAUNCHERS.contains(&n.to_string_lossy().as_ref()))
        || shebang.is_some_and(|line| line.split_whitespace().any(|w| w.ends_with("node")))
}

/// The app's directory: the script's for `node path/app.js`, else `cwd`.
pub fn app_dir(argv: &[String], cwd: &Path) -> PathBuf {
    argv.iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| cwd.join(a))
        .filter(|p| p.is_file())
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| cwd.to_path_buf())
}

/// A package's directory, as Node's resolution finds it from `dir`.
fn resolve(dir: &Path, package: &str) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join("node_modules").join(package))
        .find(|p| p.join("package.json").is_file())
}

/// The file a package exports as `subpath` (`./register`), from its package.json.
fn export(package: &Path, subpath: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(package.join("package.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let target = &json["exports"][subpath];
    let file = target
        .as_str()
        .or_else(|| target["require"].as_str())
        .or_else(|| target["default"].as_str())?;
    Some(package.join(file.trim_start_matches("./"))).filter(|p| p.is_file())
}

/// Whether the nearest package.json above `dir` says `"type": "module"`.
fn is_esm(dir: &Path) -> bool {
    dir.ancestors()
        .map(|d| d.join("package.json"))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|json| json["type"] == "module")
}

/// Adds the register hook to NODE_OPTIONS when the package resolves for the app
/// in `app_dir`.
pub fn inject(plan: &mut Plan, app_dir: &Path) {
    let register = resolve(app_dir, PACKAGE).and_then(|p| export(&p, "./register"));
    let Some(register) = register else {
        plan.notes.push(Note::new(
            format!("`{PACKAGE}` is not installed for the app in `{}`; it runs uninstrumented", app_dir.display()),
            format!("`otel-run bootstrap --node` run in `{}` installs it (npm install --no-save {PACKAGE} @opentelemetry/sdk-node)", app_dir.display()),
        ));
        return;
    };
    let option = if is_esm(app_dir) {
        let shim = match shims::NODE.materialize() {
            Ok(dir) => dir.join("register.mjs"),
            Err(e) => {
                plan.notes.push(Note::new(
                    format!("cannot write the Node.js shim ({e}); the program runs uninstrumented"),
                    "make `~/.cache` writable, or set XDG_CACHE_HOME",
                ));
                return;
            }
        };
        let hook = resolve(app_dir, "@opentelemetry/instrumentation").map(|p| p.join("hook.mjs"));
        if let Some(hook) = hook.filter(|h| h.is_file()) {
            plan.set("OTEL_RUN_NODE_HOOK", hook.display().to_string());
        }
        plan.set("OTEL_RUN_NODE_REGISTER", register.display().to_string());
        format!("--import {}", quoted(&shim))
    } else {
        format!("--require {}", quoted(&register))
    };
    plan.extend("NODE_OPTIONS", |existing| {
        if existing.trim().is_empty() {
            option
        } else {
            format!("{existing} {option}")
        }
    });
    // The default detectors include cloud ones that look for a metadata server and
    // warn on every start when there is none.
    if std::env::var_os("OTEL_NODE_RESOURCE_DETECTORS").is_none() {
        plan.set(
            "OTEL_NODE_RESOURCE_DETECTORS",
            "env,host,os,process,serviceinstance,container",
        );
    }
}

/// NODE_OPTIONS splits on spaces unless quoted.
fn quoted(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains(' ') {
        format!("\"{text}\"")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(package_json: &str, with_package: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("package.json"), package_json).unwrap();
        if with_package {
            let pkg = dir.path().join("node_modules").join(PACKAGE);
            std::fs::create_dir_all(pkg.join("build/src")).unwrap();
            std::fs::write(
                pkg.join("package.json"),
                r#"{"exports": {"./register": "./build/src/register.js"}}"#,
            )
            .unwrap();
            std::fs::write(pkg.join("build/src/register.js"), "").unwrap();
        }
        dir
    }

    #[test]
    fn commonjs_requires_the_register_file() {
        let cjs = app(r#"{"name": "a"}"#, true);
        let mut plan = Plan::default();
        inject(&mut plan, cjs.path());
        let register = cjs
            .path()
            .join("node_modules")
            .join(PACKAGE)
            .join("build/src/register.js");
        assert_eq!(
            plan.get("NODE_OPTIONS"),
            Some(format!("--require {}", register.display()).as_str())
        );
    }

    #[test]
    fn esm_imports_the_shim_which_loads_register() {
        let esm = app(r#"{"type": "module"}"#, true);
        let mut plan = Plan::default();
        inject(&mut plan, esm.path());
        let options = plan.get("NODE_OPTIONS").unwrap();
        assert!(
            options.starts_with("--import ") && options.ends_with("register.mjs"),
            "{options}"
        );
        let register = esm
            .path()
            .join("node_modules")
            .join(PACKAGE)
            .join("build/src/register.js");
        assert_eq!(
            plan.get("OTEL_RUN_NODE_REGISTER"),
            Some(register.display().to_string().as_str())
        );
    }

    #[test]
    fn an_app_without_the_package_is_left_alone() {
        let bare = app(r#"{"name": "a"}"#, false);
        let mut plan = Plan::default();
        inject(&mut plan, bare.path());
        assert!(plan.set.is_empty());
        assert!(plan.notes[0].message.contains("is not installed"));
    }

    #[test]
    fn launchers_and_shebangs() {
        assert!(is_node(Path::new("/usr/bin/npx"), None));
        assert!(is_node(Path::new("/app/cli"), Some("#!/usr/bin/env node")));
        assert!(!is_node(Path::new("/app/cli"), Some("#!/bin/sh")));
    }
}
