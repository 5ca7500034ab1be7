//! Node.js: `@opentelemetry/auto-instrumentations-node` and `@opentelemetry/sdk-node`
//! into the app's node_modules, at the newest release whose `engines` accepts
//! the Node.js that is installed, without touching package.json unless `--save`.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::{Options, Outcome, Progress};
use crate::settings::report::redact_url;

const AUTO: &str = "@opentelemetry/auto-instrumentations-node";
const SDK: &str = "@opentelemetry/sdk-node";
const NPMJS: &str = "https://registry.npmjs.org/";

#[derive(Debug, Serialize)]
pub struct Report {
    pub dir: String,
    pub node_version: String,
    pub packages: Vec<String>,
    pub saved: bool,
    pub outcome: Outcome,
}

pub fn bootstrap(options: &Options, cwd: &Path, progress: &Progress) -> anyhow::Result<Report> {
    if !cwd.join("package.json").is_file() {
        bail!(
            "no package.json in {}: run `otel-run bootstrap --node` in the app's directory",
            cwd.display()
        );
    }
    let node = node_version().context("cannot run `node --version`; is Node.js installed?")?;
    let mut report = Report {
        dir: cwd.display().to_string(),
        node_version: node.to_string(),
        packages: Vec::new(),
        saved: options.save,
        outcome: Outcome::Planned,
    };
    let installed = cwd.join("node_modules").join(AUTO).join("package.json");
    if installed.is_file() && !options.dry_run {
        let version = std::fs::read_to_string(&installed)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(String::from))
            .unwrap_or_default();
        report.packages = vec![format!("{AUTO}@{version}")];
        report.outcome = Outcome::AlreadyInstalled;
        return Ok(report);
    }
    let registry = registry();
    // The registry URL may carry a token: messages show it redacted.
    let shown = redact_url(&registry);
    progress.say(&format!("reading {shown} for {AUTO}"));
    let metadata = super::block_on(metadata(&registry, AUTO))?;
    let (version, sdk) = newest_for(&metadata, &node)
        .with_context(|| format!("no release of {AUTO} on {shown} supports Node.js {node}"))?;
    report.packages = vec![format!("{AUTO}@{version}"), format!("{SDK}@{sdk}")];
    if options.dry_run {
        return Ok(report);
    }
    progress.say(&format!("npm install {}", report.packages.join(" ")));
    let mut npm = Command::new("npm");
    npm.current_dir(cwd)
        .args(["install", "--no-audit", "--no-fund"])
        .arg(if options.save { "--save" } else { "--no-save" })
        .args(&report.packages)
        .stdin(Stdio::null());
    let (status, output) = if progress.terminal {
        (npm.status(), String::new())
    } else {
        match npm.output() {
            Ok(o) => (
                Ok(o.status),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            ),
            Err(e) => (Err(e), String::new()),
        }
    };
    let status = status.context("cannot run npm; is it installed with Node.js?")?;
    if !status.success() {
        let tail: Vec<&str> = output.trim_end().lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("npm install failed ({status})\n{}", tail.join("\n"));
    }
    if !installed.is_file() {
        bail!(
            "npm install succeeded but {} is missing",
            installed.display()
        );
    }
    report.outcome = Outcome::Installed;
    Ok(report)
}

pub fn summary(report: &Report) -> String {
    let verb = match report.outcome {
        Outcome::Installed => "installed",
        Outcome::AlreadyInstalled => "already installed:",
        _ => "would install",
    };
    format!(
        "Node.js {} in {}: {verb} {}{}\n",
        report.node_version,
        report.dir,
        report.packages.join(" "),
        if report.saved {
            " (saved to package.json)"
        } else {
            ""
        }
    )
}

fn node_version() -> anyhow::Result<Semver> {
    let output = Command::new("node").arg("--version").output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    Semver::parse(text.trim().trim_start_matches('v'))
        .with_context(|| format!("unexpected version {text:?}"))
}

/// npm's own registry setting, else npmjs.
fn registry() -> String {
    let mut url = ["npm_config_registry", "NPM_CONFIG_REGISTRY"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| NPMJS.into());
    if !url.ends_with('/') {
        url.push('/');
    }
    url
}

async fn metadata(registry: &str, package: &str) -> anyhow::Result<serde_json::Value> {
    let url = format!("{registry}{}", package.replace('/', "%2f"));
    let shown = redact_url(&url);
    let response = super::http_client()
        .get(&url)
        .header("Accept", "application/vnd.npm.install-v1+json")
        .send()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("cannot reach {shown}"))?
        .error_for_status()
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("cannot read {shown}"))?;
    let text = response.text().await.map_err(reqwest::Error::without_url)?;
    serde_json::from_str(&text).with_context(|| format!("{shown} is not JSON"))
}

/// The newest stable release whose `engines.node` accepts `node`, and the
/// range of @opentelemetry/sdk-node it depends on.
fn newest_for(metadata: &serde_json::Value, node: &Semver) -> Option<(String, String)> {
    let versions = metadata["versions"].as_object()?;
    let mut candidates: Vec<(Semver, &serde_json::Value)> = versions
        .iter()
        .filter_map(|(v, meta)| Some((Semver::parse(v).filter(|s| s.pre.is_empty())?, meta)))
        .collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0));
    candidates.into_iter().find_map(|(version, meta)| {
        let engines = meta["engines"]["node"].as_str().unwrap_or("*");
        if !satisfies(engines, node) {
            return None;
        }
        let sdk = meta["dependencies"][SDK].as_str()?.to_string();
        Some((version.to_string(), sdk))
    })
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Semver {
    major: u64,
    minor: u64,
    patch: u64,
    pre: String,
}

impl Semver {
    fn parse(text: &str) -> Option<Semver> {
        let text = text.trim().trim_start_matches(['v', '=']);
        let text = text.split('+').next()?;
        let (core, pre) = text.split_once('-').unwrap_or((text, ""));
        let mut parts = core.split('.').map(|p| p.parse::<u64>());
        Some(Semver {
            major: parts.next()?.ok()?,
            minor: parts.next().unwrap_or(Ok(0)).ok()?,
            patch: parts.next().unwrap_or(Ok(0)).ok()?,
            pre: pre.to_string(),
        })
    }
}

impl std::fmt::Display for Semver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        Ok(())
    }
}

/// npm's range grammar as `engines` uses it: `||` alternatives of
/// space-separated comparators (`>=18.19.0 <19`, `^20.6.0`, `~22`, `20.x`, `*`).
fn satisfies(range: &str, version: &Semver) -> bool {
    range.split("||").any(|alternative| {
        let tokens: Vec<&str> = alternative.split_whitespace().collect();
        // `A - B` is `>=A <=B`.
        if let [low, "-", high] = tokens.as_slice() {
            return compare(">=", low, version) && compare("<=", high, version);
        }
        tokens.iter().all(|token| {
            let split = token
                .find(|c: char| c.is_ascii_digit() || c == 'x' || c == '*')
                .unwrap_or(token.len());
            let (op, operand) = token.split_at(split);
            compare(op, operand, version)
        })
    })
}

fn compare(op: &str, operand: &str, version: &Semver) -> bool {
    let operand = operand.trim_start_matches('v');
    if matches!(operand, "" | "*" | "x" | "X") {
        return true;
    }
    // Partial versions (`20`, `20.x`): the parts given.
    let parts: Vec<Option<u64>> = operand.split('.').map(|p| p.parse::<u64>().ok()).collect();
    let given = parts.iter().take_while(|p| p.is_some()).count();
    let get = |i: usize| parts.get(i).copied().flatten().unwrap_or(0);
    let low = Semver {
        major: get(0),
        minor: get(1),
        patch: get(2),
        pre: String::new(),
    };
    let bump = |level: usize| match level {
        0 => Semver {
            major: low.major + 1,
            minor: 0,
            patch: 0,
            pre: String::new(),
        },
        1 => Semver {
            minor: low.minor + 1,
            patch: 0,
            ..low.clone()
        },
        _ => Semver {
            patch: low.patch + 1,
            ..low.clone()
        },
    };
    let v = &Semver {
        pre: String::new(),
        ..version.clone()
    };
    match op {
        ">=" => v >= &low,
        ">" if given < 3 => v >= &bump(given.saturating_sub(1)),
        ">" => v > &low,
        "<" => v < &low,
        "<=" if given < 3 => v < &bump(given.saturating_sub(1)),
        "<=" => v <= &low,
        "^" => {
            let level = if low.major > 0 || given == 1 {
                0
            } else if low.minor > 0 || given == 2 {
                1
            } else {
                2
            };
            v >= &low && v < &bump(level)
        }
        "~" => v >= &low && v < &bump(if given == 1 { 0 } else { 1 }),
        _ if given < 3 => v >= &low && v < &bump(given.saturating_sub(1)),
        _ => v == &low,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Semver {
        Semver::parse(s).unwrap()
    }

    #[test]
    fn engine_ranges() {
        let node20 = v("20.20.2");
        assert!(satisfies("^18.19.0 || >=20.6.0", &node20));
        assert!(!satisfies("^18.19.0 || >=22.0.0", &node20));
        assert!(satisfies(">=18.19.0 <19 || >=20.6.0 <21", &node20));
        assert!(satisfies("20.x", &node20));
        assert!(!satisfies("~20.21", &node20));
        assert!(satisfies("~20.20", &node20));
        assert!(satisfies("*", &node20));
        assert!(satisfies("18 - 20", &node20));
        assert!(!satisfies("<=19", &node20));
        assert!(satisfies("<=20", &node20));
    }

    #[test]
    fn the_newest_release_the_installed_node_accepts() {
        let metadata = serde_json::json!({"versions": {
            "0.80.0": {"engines": {"node": "^18.19.0 || >=20.6.0"}, "dependencies": {SDK: "^0.222.0"}},
            "0.81.2": {"engines": {"node": "^18.19.0 || >=20.6.0"}, "dependencies": {SDK: "^0.223.0"}},
            "0.90.0": {"engines": {"node": ">=22"}, "dependencies": {SDK: "^0.230.0"}},
            "0.91.0-rc.1": {"dependencies": {SDK: "^0.231.0"}}
        }});
        assert_eq!(
            newest_for(&metadata, &v("20.20.2")),
            Some(("0.81.2".into(), "^0.223.0".into()))
        );
        assert_eq!(
            newest_for(&metadata, &v("22.1.0")),
            Some(("0.90.0".into(), "^0.230.0".into()))
        );
    }
}
