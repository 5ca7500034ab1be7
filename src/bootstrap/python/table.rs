//! The library → instrumentation table, and what it says of an environment.
//!
//! The table is opentelemetry-instrumentation's own (`bootstrap_gen`), read by
//! `inspect.py` from the target environment when that package is installed
//! there, else the copy otel-run ships (`table.json`, written by
//! `generate-table.sh` from the newest release).

use std::collections::BTreeMap;
use std::str::FromStr;

use pep440_rs::{Version, VersionSpecifiers};
use serde::{Deserialize, Serialize};

/// The table otel-run ships.
const SHIPPED: &str = include_str!("table.json");

#[derive(Debug, Clone, Deserialize)]
pub struct Table {
    /// The opentelemetry-instrumentation release the table belongs to.
    pub line: String,
    pub libraries: Vec<Entry>,
    /// Installed whatever the libraries are (asyncio, logging, urllib, ...).
    pub defaults: Vec<Package>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// The library's normalized distribution name.
    pub library: String,
    /// The versions of the library the instrumentation supports (`>=1.0,<2.1`).
    pub spec: String,
    pub instrumentation: Package,
}

/// An instrumentation package: released with the line (`spec` = "line"), or
/// versioned on its own (`spec` is a version specifier, possibly empty).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub spec: String,
}

impl Package {
    pub fn follows_line(&self) -> bool {
        self.spec == "line"
    }
}

/// Where the table came from, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableSource {
    /// opentelemetry-instrumentation's table in the target environment.
    Environment,
    /// The table otel-run ships.
    Shipped,
}

impl Table {
    pub fn shipped() -> Table {
        serde_json::from_str(SHIPPED).expect("table.json is generated valid")
    }
}

/// One installed library the table knows.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Match {
    pub library: String,
    pub version: String,
    pub instrumentation: String,
    /// The supported versions, as the table gives them.
    pub supported: String,
    /// Whether the installed version is in the supported range.
    pub in_range: bool,
}

/// The installed libraries the table has an instrumentation for, each with
/// whether its version is supported, and the packages to install for them.
pub fn matches(table: &Table, installed: &BTreeMap<String, String>) -> (Vec<Match>, Vec<Package>) {
    let mut found = Vec::new();
    let mut packages: Vec<Package> = table.defaults.clone();
    for entry in &table.libraries {
        let Some(version) = installed.get(&entry.library) else {
            continue;
        };
        let in_range = supports(&entry.spec, version);
        found.push(Match {
            library: entry.library.clone(),
            version: version.clone(),
            instrumentation: entry.instrumentation.name.clone(),
            supported: entry.spec.clone(),
            in_range,
        });
        if in_range && !packages.contains(&entry.instrumentation) {
            packages.push(entry.instrumentation.clone());
        }
    }
    (found, packages)
}

/// Whether `version` satisfies `spec`. An unparsable installed version (a local
/// build) is taken as unsupported rather than guessed.
fn supports(spec: &str, version: &str) -> bool {
    let Ok(version) = Version::from_str(version) else {
        return false;
    };
    match VersionSpecifiers::from_str(spec) {
        Ok(specifiers) => specifiers.contains(&version),
        Err(_) => spec.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_shipped_table_is_a_whole_release() {
        let table = Table::shipped();
        assert!(table.line.starts_with("0."), "{}", table.line);
        assert!(table.libraries.len() > 30);
        assert!(
            table
                .defaults
                .iter()
                .any(|p| p.name == "opentelemetry-instrumentation-wsgi")
        );
        let flask = table
            .libraries
            .iter()
            .find(|e| e.library == "flask")
            .unwrap();
        assert_eq!(
            flask.instrumentation.name,
            "opentelemetry-instrumentation-flask"
        );
        assert!(flask.instrumentation.follows_line());
    }

    #[test]
    fn versions_outside_the_supported_range_are_reported_not_installed() {
        let table = Table::shipped();
        let sqlalchemy = &table
            .libraries
            .iter()
            .find(|e| e.library == "sqlalchemy")
            .unwrap()
            .spec;
        // The table's own bound decides: one version inside it, one far above.
        let (found, packages) = matches(
            &table,
            &installed(&[("flask", "3.1.3"), ("sqlalchemy", "99.0"), ("pip", "25.0")]),
        );
        let names: Vec<_> = packages.iter().map(|p| p.name.as_str()).collect();
        assert!(names.contains(&"opentelemetry-instrumentation-flask"));
        assert!(!names.contains(&"opentelemetry-instrumentation-sqlalchemy"));
        let reported = found.iter().find(|m| m.library == "sqlalchemy").unwrap();
        assert!(!reported.in_range);
        assert_eq!(&reported.supported, sqlalchemy);
        assert_eq!(found.len(), 2, "pip has no instrumentation: {found:?}");
    }

    #[test]
    fn specifiers() {
        assert!(supports(">=1.0.0,<2.1.0", "2.0.44"));
        assert!(!supports(">=1.0.0,<2.1.0", "2.1.9"));
        assert!(supports("~=3.0", "3.12.1"));
        assert!(!supports("~=3.0", "4.0"));
        assert!(supports("", "1.0"));
        assert!(!supports(">=1.0", "not-a-version"));
    }
}
