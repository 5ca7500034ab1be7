//! What a run learns of a Python environment without starting Python: the
//! distributions named by site-packages' `*.dist-info` directories, and the
//! libraries among them that bootstrap would instrument but whose
//! instrumentation is not installed. A run and `otel-run doctor` both ask this,
//! so they say the same; reading a directory costs a run nothing noticeable,
//! where asking the interpreter (bootstrap's inspection) costs its start-up.

use std::collections::BTreeMap;
use std::path::Path;

use super::normalize;
use super::table::{self, Match, Table};

/// Every distribution installed in `site_packages`, normalized name to version,
/// from the names of their `NAME-VERSION.dist-info` directories (NAME has its
/// `-` written as `_`, so the first `-` ends it).
pub fn distributions(site_packages: &Path) -> BTreeMap<String, String> {
    let Ok(entries) = std::fs::read_dir(site_packages) else {
        return BTreeMap::new();
    };
    let mut found = BTreeMap::new();
    for entry in entries.filter_map(Result::ok) {
        let file_name = entry.file_name();
        let Some(stem) = file_name
            .to_str()
            .and_then(|n| n.strip_suffix(".dist-info"))
        else {
            continue;
        };
        if let Some((name, version)) = stem.split_once('-') {
            found
                .entry(normalize(name))
                .or_insert_with(|| version.to_string());
        }
    }
    found
}

/// The installed libraries, in a version their instrumentation supports, whose
/// instrumentation is not installed and not named in `disabled` (the entries of
/// OTEL_PYTHON_DISABLED_INSTRUMENTATIONS: an instrumentor's name, as `flask`).
/// The table is the one otel-run ships: the environment's own is read only by
/// starting its interpreter.
pub fn uninstrumented(installed: &BTreeMap<String, String>, disabled: &[String]) -> Vec<Match> {
    let disabled: Vec<String> = disabled.iter().map(|d| normalize(d.trim())).collect();
    let is_disabled = |m: &Match| {
        let instrumentor = m
            .instrumentation
            .strip_prefix("opentelemetry-instrumentation-")
            .unwrap_or(&m.instrumentation);
        // `openai-v2`'s instrumentor is `openai`.
        let unversioned = instrumentor.strip_suffix("-v2").unwrap_or(instrumentor);
        disabled
            .iter()
            .any(|d| d == instrumentor || d == unversioned || *d == m.library)
    };
    let (libraries, _) = table::matches(&Table::shipped(), installed);
    libraries
        .into_iter()
        .filter(|m| m.in_range && !installed.contains_key(&m.instrumentation))
        .filter(|m| !is_disabled(m))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_are_read_from_dist_info_names() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "Flask-3.1.3.dist-info",
            "charset_normalizer-3.5.2.dist-info",
            "opentelemetry_instrumentation_flask-0.66b1.dist-info",
            "flask",
            "README.txt",
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        let found = distributions(dir.path());
        assert_eq!(
            found,
            [
                ("charset-normalizer", "3.5.2"),
                ("flask", "3.1.3"),
                ("opentelemetry-instrumentation-flask", "0.66b1"),
            ]
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .into()
        );
        assert!(distributions(&dir.path().join("absent")).is_empty());
    }

    fn installed(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_library_without_its_instrumentation_unless_disabled_or_out_of_range() {
        let venv = installed(&[
            ("flask", "3.1.3"),
            ("sqlalchemy", "2.0.58"),
            ("opentelemetry-instrumentation-sqlalchemy", "0.66b1"),
            ("click", "1.0"),
        ]);
        let names = |disabled: &[&str]| -> Vec<String> {
            let disabled: Vec<String> = disabled.iter().map(|d| d.to_string()).collect();
            uninstrumented(&venv, &disabled)
                .into_iter()
                .map(|m| format!("{} {}", m.library, m.instrumentation))
                .collect()
        };
        // click 1.0 is older than its instrumentation supports: not this note's.
        assert_eq!(names(&[]), ["flask opentelemetry-instrumentation-flask"]);
        assert!(names(&["flask"]).is_empty());
        assert!(names(&[" requests", "flask "]).is_empty());
        let bootstrapped = installed(&[
            ("flask", "3.1.3"),
            ("opentelemetry-instrumentation-flask", "0.66b1"),
        ]);
        assert!(uninstrumented(&bootstrapped, &[]).is_empty());
    }
}
