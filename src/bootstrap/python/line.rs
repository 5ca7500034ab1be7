//! Choosing one release line of the OpenTelemetry Python packages.
//!
//! The contrib packages (opentelemetry-instrumentation and every
//! instrumentation released with it) share one version, `0.{M}b{N}`, and pin
//! `opentelemetry-semantic-conventions` to it; the SDK and exporters of that
//! line are `1.{M-21}.{N}`. Mixing lines does not resolve, and a line is not
//! always published whole (0.66b2 lacked most instrumentations that 0.66b1 has),
//! so the line is the newest one the index has every needed package of.
//!
//! The OpenTelemetry packages are otel-run's to move, not the user's: those
//! already installed (a distro, an SDK at another line) move to the chosen line
//! with the rest, while the user's own libraries stay where they are.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use pep440_rs::Version;
use serde::Serialize;

use super::table::Package;

pub const INSTRUMENTATION: &str = "opentelemetry-instrumentation";
pub const SDK: &str = "opentelemetry-sdk";
const SEMCONV: &str = "opentelemetry-semantic-conventions";

/// The core packages released as `1.{M-21}.{N}` with the SDK. Others named
/// `opentelemetry-*` at `1.x` (propagator-aws-xray, sdk-extension-aws) are
/// versioned on their own and are left alone.
const CORE: &[&str] = &[
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-proto",
    "opentelemetry-exporter-otlp",
    "opentelemetry-exporter-otlp-proto-common",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-exporter-zipkin",
    "opentelemetry-exporter-zipkin-json",
    "opentelemetry-exporter-zipkin-proto-http",
    "opentelemetry-propagator-b3",
    "opentelemetry-propagator-jaeger",
];

/// How many release lines are tried, newest first.
const LINES_TRIED: usize = 8;

/// A package to install, pinned or with its own specifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    pub name: String,
    /// `==0.66b1`, `>=2.0b0`, or empty.
    pub spec: String,
    /// The version installed now, when the requirement moves a package.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<String>,
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
    /// The OTLP exporter packages a run uses.
    pub exporters: &'a [&'a str],
}

impl Needs<'_> {
    /// Every project whose versions the choice looks at: what it needs, and
    /// the installed OpenTelemetry packages it may move.
    pub fn projects(&self, installed: &BTreeMap<String, String>) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = self
            .instrumentations
            .iter()
            .filter(|p| p.follows_line())
            .map(|p| p.name.clone())
            .collect();
        names.extend([INSTRUMENTATION, SDK, SEMCONV].map(String::from));
        names.extend(self.exporters.iter().map(|e| e.to_string()));
        names.extend(
            of_the_line(installed, "", "")
                .into_iter()
                .map(|(n, _)| n.to_string()),
        );
        names
    }
}

/// The installed OpenTelemetry packages that belong to a release line, each
/// with the version it has at `line` (whose SDK is `sdk`).
fn of_the_line<'a>(
    installed: &'a BTreeMap<String, String>,
    line: &str,
    sdk: &str,
) -> Vec<(&'a str, String)> {
    installed
        .iter()
        .filter_map(|(name, version)| {
            if CORE.contains(&name.as_str()) && version.starts_with("1.") {
                Some((name.as_str(), sdk.to_string()))
            } else if name.starts_with("opentelemetry-") && sdk_for(version).is_some() {
                Some((name.as_str(), line.to_string()))
            } else {
                None
            }
        })
        .collect()
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
    // Newest first; what is installed does not hold a line back, it moves.
    let candidates: Vec<String> = available
        .get(INSTRUMENTATION)
        .map(|vs| vs.iter().rev().map(|v| v.to_string()).collect())
        .unwrap_or_default();
    let mut skipped = Vec::new();
    for line in candidates.into_iter().take(LINES_TRIED) {
        let Some(sdk) = sdk_for(&line) else {
            skipped.push(Skipped {
                line,
                reasons: vec!["not a release line of the 0.{M}b{N} form".into()],
            });
            continue;
        };
        let mut absent = Vec::new();
        let mut install: Vec<Requirement> = Vec::new();
        // A package of the line: already there at that version, to install or
        // move, or missing from the index (the line does not do).
        let mut want = |name: &str, version: &str| {
            let current = installed.get(name);
            if current.is_some_and(|v| v == version) || install.iter().any(|r| r.name == name) {
                return;
            }
            if has(name, version) {
                install.push(Requirement {
                    name: name.to_string(),
                    spec: format!("=={version}"),
                    moved_from: current.cloned(),
                });
            } else {
                let missing = format!("{name}=={version}");
                if !absent.contains(&missing) {
                    absent.push(missing);
                }
            }
        };
        want(INSTRUMENTATION, &line);
        for package in needs.instrumentations.iter().filter(|p| p.follows_line()) {
            want(&package.name, &line);
        }
        want(SDK, &sdk);
        for exporter in needs.exporters {
            want(exporter, &sdk);
        }
        for (name, version) in of_the_line(installed, &line, &sdk) {
            want(name, &version);
        }
        for package in needs.instrumentations.iter().filter(|p| !p.follows_line()) {
            if !installed.contains_key(&package.name) {
                install.push(Requirement {
                    name: package.name.clone(),
                    spec: package.spec.clone(),
                    moved_from: None,
                });
            }
        }
        if absent.is_empty() {
            return Ok(Choice {
                line,
                sdk,
                install,
                skipped,
            });
        }
        skipped.push(Skipped {
            line,
            reasons: vec![format!("not on the index: {}", absent.join(", "))],
        });
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
            exporters: &[EXPORTER],
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
    fn installed_opentelemetry_packages_move_to_the_whole_line_and_libraries_stay() {
        // `pip install opentelemetry-distro` put the incomplete 0.66b2 line there.
        let instrumentations = [package("opentelemetry-instrumentation-flask")];
        let needs = Needs {
            instrumentations: &instrumentations,
            exporters: &[EXPORTER],
        };
        let installed: BTreeMap<String, String> = [
            (INSTRUMENTATION, "0.66b2"),
            ("opentelemetry-distro", "0.66b2"),
            (SEMCONV, "0.66b2"),
            (SDK, "1.45.2"),
            ("opentelemetry-api", "1.45.2"),
            ("opentelemetry-propagator-aws-xray", "1.0.2"),
            ("opentelemetry-instrumentation-openai-v2", "2.1b0"),
            ("flask", "3.1.3"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .into();
        let mut available = pypi_like();
        for name in ["opentelemetry-distro", SEMCONV] {
            available.insert(
                name.into(),
                index(&[(name, &["0.66b1", "0.66b2"])])[name].clone(),
            );
        }
        available.insert(
            "opentelemetry-api".into(),
            index(&[("a", &["1.45.1", "1.45.2"])])["a"].clone(),
        );
        assert!(needs.projects(&installed).contains("opentelemetry-distro"));
        assert!(!needs.projects(&installed).contains("flask"));
        let choice = choose(&needs, &installed, &available).unwrap();
        assert_eq!(choice.line, "0.66b1");
        let moved: Vec<String> = choice
            .install
            .iter()
            .map(|r| format!("{r} from {}", r.moved_from.as_deref().unwrap_or("-")))
            .collect();
        assert_eq!(
            moved,
            [
                "opentelemetry-instrumentation==0.66b1 from 0.66b2",
                "opentelemetry-instrumentation-flask==0.66b1 from -",
                "opentelemetry-sdk==1.45.1 from 1.45.2",
                "opentelemetry-exporter-otlp-proto-grpc==1.45.1 from -",
                "opentelemetry-api==1.45.1 from 1.45.2",
                "opentelemetry-distro==0.66b1 from 0.66b2",
                "opentelemetry-semantic-conventions==0.66b1 from 0.66b2",
            ]
        );
    }

    #[test]
    fn on_the_newest_whole_line_only_what_is_missing_is_installed() {
        let installed: BTreeMap<String, String> = [
            (INSTRUMENTATION, "0.66b1"),
            ("opentelemetry-instrumentation-wsgi", "0.66b1"),
            (SDK, "1.45.1"),
            (EXPORTER, "1.45.1"),
        ]
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .into();
        let needs_flask = [package("opentelemetry-instrumentation-flask")];
        let choice = choose(
            &Needs {
                instrumentations: &needs_flask,
                exporters: &[EXPORTER],
            },
            &installed,
            &pypi_like(),
        )
        .unwrap();
        assert_eq!(choice.line, "0.66b1");
        let install: Vec<String> = choice.install.iter().map(|r| r.to_string()).collect();
        assert_eq!(install, ["opentelemetry-instrumentation-flask==0.66b1"]);
    }

    #[test]
    fn no_whole_line_lists_every_reason() {
        let instrumentations = [package("opentelemetry-instrumentation-missing")];
        let needs = Needs {
            instrumentations: &instrumentations,
            exporters: &[EXPORTER],
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
