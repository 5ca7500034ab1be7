//! Node.js: the OpenTelemetry auto-instrumentations' `register` entry point,
//! required (CommonJS) or imported (ES modules) through NODE_OPTIONS, but only
//! when the package resolves for the app: a `--require` that does not resolve
//! would stop the app from starting.

use std::path::{Path, PathBuf};

use super::{Note, Plan};

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

/// The package's directory, as Node's resolution finds it from `dir`.
fn resolve(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join("node_modules").join(PACKAGE))
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

/// Appends the register hook to NODE_OPTIONS when the package resolves for the
/// app in `app_dir`, from `cwd` (where Node resolves `--require` from).
pub fn inject(plan: &mut Plan, app_dir: &Path, cwd: &Path) {
    let Some(package) = resolve(app_dir) else {
        plan.notes.push(Note::new(
            format!("`{PACKAGE}` is not installed for the app in `{}`; it runs uninstrumented", app_dir.display()),
            format!("`otel-run bootstrap` installs it (npm install --no-save {PACKAGE} @opentelemetry/sdk-node)"),
        ));
        return;
    };
    // Node resolves a bare `--require` from the working directory: name the file
    // itself when the package is not visible from there.
    let entry = if resolve(cwd).as_deref() == Some(package.as_path()) {
        format!("{PACKAGE}/register")
    } else {
        package.join("build/src/register.js").display().to_string()
    };
    let flag = if is_esm(app_dir) {
        "--import"
    } else {
        "--require"
    };
    let existing = plan.existing("NODE_OPTIONS");
    let option = format!("{flag} {entry}");
    let value = if existing.trim().is_empty() {
        option
    } else {
        format!("{existing} {option}")
    };
    plan.set("NODE_OPTIONS", value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(package_json: &str, with_package: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("package.json"), package_json).unwrap();
        if with_package {
            let pkg = dir.path().join("node_modules").join(PACKAGE);
            std::fs::create_dir_all(&pkg).unwrap();
            std::fs::write(pkg.join("package.json"), "{}").unwrap();
        }
        dir
    }

    #[test]
    fn commonjs_requires_and_esm_imports() {
        let cjs = app(r#"{"name": "a"}"#, true);
        let mut plan = Plan::default();
        inject(&mut plan, cjs.path(), cjs.path());
        assert_eq!(
            plan.get("NODE_OPTIONS"),
            Some("--require @opentelemetry/auto-instrumentations-node/register")
        );
        let esm = app(r#"{"type": "module"}"#, true);
        let mut plan = Plan::default();
        inject(&mut plan, esm.path(), esm.path());
        assert_eq!(
            plan.get("NODE_OPTIONS"),
            Some("--import @opentelemetry/auto-instrumentations-node/register")
        );
    }

    #[test]
    fn from_another_directory_the_file_is_named() {
        let cjs = app(r#"{"name": "a"}"#, true);
        let elsewhere = tempfile::tempdir().unwrap();
        let mut plan = Plan::default();
        inject(&mut plan, cjs.path(), elsewhere.path());
        let expected = cjs
            .path()
            .join("node_modules")
            .join(PACKAGE)
            .join("build/src/register.js");
        assert_eq!(
            plan.get("NODE_OPTIONS"),
            Some(format!("--require {}", expected.display()).as_str())
        );
    }

    #[test]
    fn an_app_without_the_package_is_left_alone() {
        let bare = app(r#"{"name": "a"}"#, false);
        let mut plan = Plan::default();
        inject(&mut plan, bare.path(), bare.path());
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
