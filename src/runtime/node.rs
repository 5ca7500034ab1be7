//! Node.js: otel-run's shim, loaded through NODE_OPTIONS, starts the SDK with
//! the OpenTelemetry auto-instrumentations, but only when the packages resolve
//! for the app: the app would not start with a `--require` that fails.
//!
//! The shim does what the package's `register` entry point does, except that it
//! leaves SIGTERM and SIGINT as the program has them (`shims/node/sdk.cjs` says
//! how). Files are named by absolute path: Node resolves NODE_OPTIONS' modules
//! from the working directory, not from the app. A CommonJS app requires the
//! shim; an ES module app imports `register.mjs`, which registers the
//! import-in-the-middle hook first (without it, ES modules such as Express 5 are
//! not patched).

use std::path::{Path, PathBuf};

use super::{Note, Plan, shims};
use crate::settings::vars;

pub const PACKAGE: &str = "@opentelemetry/auto-instrumentations-node";
/// The SDK the shim starts, resolved from the package as it would resolve it.
const SDK: &str = "@opentelemetry/sdk-node";
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

/// Whether the nearest package.json above `dir` says `"type": "module"`.
fn is_esm(dir: &Path) -> bool {
    dir.ancestors()
        .map(|d| d.join("package.json"))
        .find(|p| p.is_file())
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|json| json["type"] == "module")
}

/// Adds otel-run's shim to NODE_OPTIONS when the packages resolve for the app
/// in `app_dir`.
pub fn inject(plan: &mut Plan, app_dir: &Path, cache_dir: Option<&Path>) {
    let package = resolve(app_dir, PACKAGE).filter(|p| resolve(p, SDK).is_some());
    let Some(package) = package else {
        plan.notes.push(Note::new(
            format!("`{PACKAGE}` is not installed for the app in `{}`; it runs uninstrumented", app_dir.display()),
            format!("`otel-run bootstrap --node` run in `{}` installs it (npm install --no-save {PACKAGE} {SDK})", app_dir.display()),
        ));
        return;
    };
    let shim = match shims::NODE.materialize(cache_dir) {
        Ok(dir) => dir,
        Err(e) => {
            plan.notes.push(Note::new(
                format!("cannot write the Node.js shim ({e}); the program runs uninstrumented"),
                "set OTEL_RUN_CACHE_DIR to a writable directory",
            ));
            return;
        }
    };
    plan.set(vars::NODE_PACKAGE, package.display().to_string());
    let option = if is_esm(app_dir) {
        let hook = resolve(app_dir, "@opentelemetry/instrumentation").map(|p| p.join("hook.mjs"));
        if let Some(hook) = hook.filter(|h| h.is_file()) {
            plan.set(vars::NODE_HOOK, hook.display().to_string());
        }
        format!("--import {}", quoted(&shim.join("register.mjs")))
    } else {
        format!("--require {}", quoted(&shim.join("sdk.cjs")))
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

    fn app(package_json: &str, packages: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("package.json"), package_json).unwrap();
        for package in packages {
            let pkg = dir.path().join("node_modules").join(package);
            std::fs::create_dir_all(&pkg).unwrap();
            std::fs::write(pkg.join("package.json"), "{}").unwrap();
        }
        dir
    }

    #[test]
    fn commonjs_requires_the_shim_which_starts_the_sdk_from_the_package() {
        let cjs = app(r#"{"name": "a"}"#, &[PACKAGE, SDK]);
        let mut plan = Plan::default();
        inject(&mut plan, cjs.path(), None);
        let options = plan.get("NODE_OPTIONS").unwrap();
        assert!(
            options.starts_with("--require ") && options.ends_with("sdk.cjs"),
            "{options}"
        );
        let package = cjs.path().join("node_modules").join(PACKAGE);
        assert_eq!(
            plan.get(vars::NODE_PACKAGE),
            Some(package.display().to_string().as_str())
        );
    }

    #[test]
    fn esm_imports_the_shim_which_registers_the_hook_first() {
        let esm = app(r#"{"type": "module"}"#, &[PACKAGE, SDK]);
        let mut plan = Plan::default();
        inject(&mut plan, esm.path(), None);
        let options = plan.get("NODE_OPTIONS").unwrap();
        assert!(
            options.starts_with("--import ") && options.ends_with("register.mjs"),
            "{options}"
        );
        assert!(plan.get(vars::NODE_PACKAGE).is_some());
    }

    #[test]
    fn an_app_without_the_packages_is_left_alone() {
        for packages in [&[][..], &[PACKAGE]] {
            let bare = app(r#"{"name": "a"}"#, packages);
            let mut plan = Plan::default();
            inject(&mut plan, bare.path(), None);
            assert!(plan.set.is_empty(), "{packages:?}");
            assert!(plan.notes[0].message.contains("is not installed"));
        }
    }

    #[test]
    fn launchers_and_shebangs() {
        assert!(is_node(Path::new("/usr/bin/npx"), None));
        assert!(is_node(Path::new("/app/cli"), Some("#!/usr/bin/env node")));
        assert!(!is_node(Path::new("/app/cli"), Some("#!/bin/sh")));
    }
}
