//! Choosing one release line of the OpenTelemetry Python packages.
//!
//! The contrib packages (opentelemetry-instrumentation and every
//! instrumentation released with it) share one version, `0.{M}b{N}`, and pin
//! `opentelemetry-semantic-conventions` to it; the SDK and exporters of that
//! line are `1.{M-21}.{N}`. Mixing lines does not resolve, and a line is not
//! always published whole (0.66b2 lacked most instrumentations that 0.66b1 has),
//! so the line is the newest one the index has every needed package of, and that
//! agrees with what the environment already has.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use pep440_rs::Version;
use serde::Serialize;

use super::table::Package;

pub const INSTRUMENTATION: &str = "opentelemetry-instrumentation";
pub const SDK: &str = "opentelemetry-sdk";
const API: &str = "opentelemetry-api";
const SEMCONV: &str = "opentelemetry-semantic-conventions";

/// How many release lines are tried, newest first.
const LINES_TRIED: usize = 8;

/// A package to install, pinned or with its own specifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    pub name: String,
    /// `==0.66b1`, `>=2.0b0`, or empty.
    pub spec: String,
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.name, self.spec)
    }
}

/// A line that was passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub line: String,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub line: String,
    pub sdk: String,
    pub install: Vec<Requirement>,
    pub skipped: Vec<Skipped>,
}

/// What the choice needs: the instrumentations, plus the packages that come
/// with the line when the environment lacks them.
pub struct Needs<'a> {
    pub instrumentations: &'a [Package],
    /// The OTLP exporter package for the configured protocol.
    pub exporter: &'a str,
}

impl Needs<'_> {
    /// Every project whose versions the choice looks at.
    pub fn projects(&self) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .instrumentations
            .iter()
            .filter(|p| p.follows_line())
            .map(|p| p.name.clone())
            .collect();
        names.extend([INSTRUMENTATION, SDK, SEMCONV, self.exporter].map(String::from));
        names
    }
}

/// The SDK version released with a contrib line: 0.66b1 → 1.45.1.
pub fn sdk_for(line: &str) -> Option<String> {
    let (minor, patch) = line.strip_prefix("0.")?.split_once('b')?;
    let minor: u64 = minor.parse().ok()?;
    let patch: u64 = patch.parse().ok()?;
    Some(format!("1.{}.{patch}", minor.checked_sub(21)?))
}

/// The newest line the index has whole and the environment agrees with.
pub fn choose(
    needs: &Needs,
    installed: &BTreeMap<String, String>,
    available: &BTreeMap<String, BTreeSet<Version>>,
) -> Result<Choice, Vec<Skipped>> {
    let has = |name: &str, version: &str| {
        Version::from_str(version)
            .is_ok_and(|v| available.get(name).is_some_and(|vs| vs.contains(&v)))
    };
    let candidates: Vec<String> = match installed.get(INSTRUMENTATION) {
        // Installed packages are never changed: the line is the installed one.
        Some(version) => vec![version.clone()],
        None => available
            .get(INSTRUMENTATION)
            .map(|vs| vs.iter().rev().map(|v| v.to_string()).collect())
            .unwrap_or_default(),
    };
    let mut skipped = Vec::new();
    for line in candidates.into_iter().take(LINES_TRIED) {
        let Some(sdk) = sdk_for(&line) else {
            skipped.push(Skipped {
                line,
                reasons: vec!["not a release line of the 0.{M}b{N} form".into()],
            });
            continue;
        };
        let mut reasons = Vec::new();
        let mut absent = Vec::new();
        let mut install = Vec::new();
        // A package of the line: already there at that version, to install, or
        // a reason the line does not do.
        let mut want = |name: &str, version: &str| match installed.get(name) {
            Some(v) if v == version => {}
            Some(v) => reasons.push(format!("{name} {v} is installed, the line needs {version}")),
            None if has(name, version) => install.push(Requirement {
                name: name.to_string(),
                spec: format!("=={version}"),
            }),
            None => absent.push(format!("{name}=={version}")),
        };
        want(INSTRUMENTATION, &line);
        for package in needs.instrumentations.iter().filter(|p| p.follows_line()) {
            want(&package.name, &line);
        }
        want(SDK, &sdk);
        want(needs.exporter, &sdk);
        for package in needs.instrumentations.iter().filter(|p| !p.follows_line()) {
            if !installed.contains_key(&package.name) {
                install.push(Requirement {
                    name: package.name.clone(),
                    spec: package.spec.clone(),
                });
            }
        }
        // The SDK pins the semantic conventions to the line, so an installed
        // one must belong to it too; so must an installed API, which the SDK pins.
        if let Some(v) = installed.get(SEMCONV).filter(|v| **v != line) {
            reasons.push(format!("{SEMCONV} {v} is installed, the line needs {line}"));
        }
        if let Some(v) = installed.get(API).filter(|v| **v != sdk) {
            reasons.push(format!(
                "{API} {v} is installed, the line's SDK needs {sdk}"
            ));
        }
        if !absent.is_empty() {
            reasons.insert(0, format!("not on the index: {}", absent.join(", ")));
        }
        if reasons.is_empty() {
            return Ok(Choice {
                line,
                sdk,
                install,
                skipped,
            });
        }
        skipped.push(Skipped { line, reasons });
    }
    Err(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str) -> Package {
        Package {
            name: name.into(),
            spec: "line".into(),
        }
    }

    fn index(entries: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<Version>> {
        entries
            .iter()
            .map(|(name, versions)| {
                let versions = versions.iter().map(|v| Version::from_str(v).unwrap());
                (name.to_string(), versions.collect())
            })
            .collect()
    }

    const EXPORTER: &str = "opentelemetry-exporter-otlp-proto-grpc";

    fn pypi_like() -> BTreeMap<String, BTreeSet<Version>> {
        // 0.66b2 published only in part, as on PyPI in November 2026.
        index(&[
            (INSTRUMENTATION, &["0.65b0", "0.66b1", "0.66b2"]),
            ("opentelemetry-instrumentation-flask", &["0.65b0", "0.66b1"]),
            (
                "opentelemetry-instrumentation-wsgi",
                &["0.65b0", "0.66b1", "0.66b2"],
            ),
            (SDK, &["1.44.0", "1.45.1", "1.45.2"]),
            (EXPORTER, &["1.44.0", "1.45.1", "1.45.2"]),
        ])
    }

    #[test]
    fn the_sdk_of_a_line() {
        assert_eq!(sdk_for("0.66b1").as_deref(), Some("1.45.1"));
        assert_eq!(sdk_for("0.48b0").as_deref(), Some("1.27.0"));
        assert_eq!(sdk_for("1.0"), None);
    }

    #[test]
    fn an_incomplete_newest_line_is_passed_over_for_a_whole_one() {
        let instrumentations = [
            package("opentelemetry-instrumentation-flask"),
            package("opentelemetry-instrumentation-wsgi"),
        ];
        let needs = Needs {
            instrumentations: &instrumentations,
            exporter: EXPORTER,
        };
        let choice = choose(&needs, &BTreeMap::new(), &pypi_like()).unwrap();
        assert_eq!(choice.line, "0.66b1");
        assert_eq!(choice.sdk, "1.45.1");
        assert_eq!(choice.skipped.len(), 1);
        assert_eq!(
            choice.skipped[0].reasons,
            ["not on the index: opentelemetry-instrumentation-flask==0.66b2"]
        );
        let install: Vec<String> = choice.install.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            install,
            [
                "opentelemetry-instrumentation==0.66b1",
                "opentelemetry-instrumentation-flask==0.66b1",
                "opentelemetry-instrumentation-wsgi==0.66b1",
                "opentelemetry-sdk==1.45.1",
                "opentelemetry-exporter-otlp-proto-grpc==1.45.1",
            ]
        );
    }

    #[test]
    fn what_is_installed_decides_the_line_and_is_not_reinstalled() {
        let instrumentations = [package("opentelemetry-instrumentation-wsgi")];
        let needs = Needs {
            instrumentations: &instrumentations,
            exporter: EXPORTER,
        };
        let installed: BTreeMap<String, String> = [(SDK, "1.44.0"), (API, "1.44.0")]
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .into();
        let choice = choose(&needs, &installed, &pypi_like()).unwrap();
        assert_eq!(choice.line, "0.65b0");
        assert!(choice.install.iter().all(|r| r.name != SDK));
        assert_eq!(choice.skipped.len(), 2, "{:?}", choice.skipped);
    }

    #[test]
    fn no_whole_line_lists_every_reason() {
        let instrumentations = [package("opentelemetry-instrumentation-missing")];
        let needs = Needs {
            instrumentations: &instrumentations,
            exporter: EXPORTER,
        };
        let skipped = choose(&needs, &BTreeMap::new(), &pypi_like()).unwrap_err();
        assert_eq!(skipped.len(), 3);
        assert!(
            skipped
                .iter()
                .all(|s| s.reasons.iter().any(|r| r.contains("missing")))
        );
    }
}
