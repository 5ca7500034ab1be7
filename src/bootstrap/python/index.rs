//! Which versions of a project a Python package index has: the simple API
//! (PEP 503 HTML and PEP 691 JSON), over http(s) or a `file://` directory
//! (one folder per project holding the files, or their index.html).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;

use pep440_rs::Version;

pub const PYPI: &str = "https://pypi.org/simple/";

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("cannot reach the package index {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the package index answered {status} for {url}")]
    Status { url: String, status: u16 },
}

#[derive(Clone)]
pub struct Index {
    base: String,
    client: reqwest::Client,
}

impl Index {
    pub fn new(url: &str) -> Index {
        let mut base = url.trim().to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        let client = crate::bootstrap::http_client();
        Index { base, client }
    }

    /// The index's URL as messages and reports show it: a private index's
    /// credentials (`https://user:token@…`, as PIP_INDEX_URL often has) hidden.
    pub fn shown_url(&self) -> String {
        crate::settings::report::redact_url(&self.base)
    }

    /// The versions of every project in `names` (normalized names), fetched
    /// concurrently. A project the index does not have has no versions.
    pub async fn versions_of(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, BTreeSet<Version>>, IndexError> {
        let mut tasks = tokio::task::JoinSet::new();
        for name in names {
            let (index, name) = (self.clone(), name.clone());
            tasks.spawn(async move {
                let versions = index.versions(&name).await;
                (name, versions)
            });
        }
        let mut all = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let (name, versions) = joined.expect("index tasks do not panic");
            all.insert(name, versions?);
        }
        Ok(all)
    }

    /// The versions of one project that have at least one file not yanked.
    pub async fn versions(&self, name: &str) -> Result<BTreeSet<Version>, IndexError> {
        let url = format!("{}{name}/", self.base);
        let files = if let Some(dir) = url.strip_prefix("file://") {
            local_files(PathBuf::from(dir))
        } else {
            self.remote_files(&url).await?
        };
        Ok(versions_from_files(name, &files))
    }

    async fn remote_files(&self, url: &str) -> Result<Vec<File>, IndexError> {
        let unreachable = |e: reqwest::Error| IndexError::Unreachable {
            url: self.shown_url(),
            reason: error_chain(&e.without_url()),
        };
        let response = self
            .client
            .get(url)
            .header(
                "Accept",
                "application/vnd.pypi.simple.v1+json, text/html;q=0.1",
            )
            .send()
            .await
            .map_err(unreachable)?;
        match response.status().as_u16() {
            404 => return Ok(Vec::new()),
            200..=299 => {}
            status => {
                return Err(IndexError::Status {
                    url: crate::settings::report::redact_url(url),
                    status,
                });
            }
        }
        let json = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = response.text().await.map_err(unreachable)?;
        Ok(if json {
            json_files(&body)
        } else {
            html_files(&body)
        })
    }
}

/// The innermost cause of a request's failure, which is the telling part
/// (refused, DNS, TLS); reqwest's outer messages repeat the URL.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut innermost = e;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    innermost.to_string()
}

#[derive(Debug, PartialEq)]
struct File {
    name: String,
    yanked: bool,
}

fn json_files(body: &str) -> Vec<File> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let files = value["files"].as_array().cloned().unwrap_or_default();
    files
        .iter()
        .filter_map(|f| {
            Some(File {
                name: f["filename"].as_str()?.to_string(),
                yanked: match &f["yanked"] {
                    serde_json::Value::Bool(b) => *b,
                    serde_json::Value::String(_) => true,
                    _ => false,
                },
            })
        })
        .collect()
}

/// The anchors of a PEP 503 page (or of a plain directory listing).
fn html_files(body: &str) -> Vec<File> {
    let mut files = Vec::new();
    for anchor in body.split("<a ").skip(1) {
        let Some(tag_end) = anchor.find('>') else {
            continue;
        };
        let tag = &anchor[..tag_end];
        let Some(href) = attribute(tag, "href") else {
            continue;
        };
        let path = href.split(['#', '?']).next().unwrap_or_default();
        let name = path.rsplit('/').next().unwrap_or_default();
        let name = percent_encoding::percent_decode_str(name)
            .decode_utf8_lossy()
            .into_owned();
        if !name.is_empty() {
            files.push(File {
                name,
                yanked: tag.contains("data-yanked"),
            });
        }
    }
    files
}

fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!("{name}="))? + name.len() + 1;
    let rest = &tag[start..];
    let quote = rest.chars().next()?;
    if quote == '"' || quote == '\'' {
        rest[1..].split(quote).next()
    } else {
        rest.split([' ', '>']).next()
    }
}

fn local_files(dir: PathBuf) -> Vec<File> {
    let dir = PathBuf::from(
        percent_encoding::percent_decode_str(&dir.to_string_lossy())
            .decode_utf8_lossy()
            .into_owned(),
    );
    if let Ok(html) = std::fs::read_to_string(dir.join("index.html")) {
        return html_files(&html);
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| File {
            name: e.file_name().to_string_lossy().into_owned(),
            yanked: false,
        })
        .collect()
}

fn versions_from_files(project: &str, files: &[File]) -> BTreeSet<Version> {
    files
        .iter()
        .filter(|f| !f.yanked)
        .filter_map(|f| file_version(project, &f.name))
        .collect()
}

/// The version in a distribution's file name: `name-1.0-py3-none-any.whl`,
/// `name-1.0.tar.gz`. Other files (metadata, signatures) give none.
fn file_version(project: &str, file: &str) -> Option<Version> {
    if let Some(stem) = file.strip_suffix(".whl") {
        let mut parts = stem.split('-');
        let name = parts.next()?;
        let version = parts.next()?;
        return (super::normalize(name) == project)
            .then(|| Version::from_str(version).ok())
            .flatten();
    }
    let stem = file
        .strip_suffix(".tar.gz")
        .or_else(|| file.strip_suffix(".zip"))?;
    // An sdist's name may itself contain dashes: find the split that names
    // the project.
    stem.match_indices('-')
        .map(|(i, _)| (&stem[..i], &stem[i + 1..]))
        .find(|(name, _)| super::normalize(name) == project)
        .and_then(|(_, version)| Version::from_str(version).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::from_str(s).unwrap()
    }

    #[tokio::test]
    async fn a_private_index_is_shown_and_reported_without_its_credentials() {
        // Nothing listens on port 9: the error names the index.
        let index = Index::new("http://ci:T0KEN@127.0.0.1:9/simple");
        assert_eq!(index.shown_url(), "http://ci:***@127.0.0.1:9/simple/");
        let err = index.versions("flask").await.unwrap_err().to_string();
        assert!(err.contains("http://ci:***@127.0.0.1:9/simple/"), "{err}");
        assert!(!err.contains("T0KEN"), "{err}");
    }

    #[test]
    fn versions_from_file_names() {
        let files = [
            "opentelemetry_instrumentation_flask-0.66b1-py3-none-any.whl",
            "opentelemetry_instrumentation_flask-0.66b1.tar.gz",
            "opentelemetry-instrumentation-flask-0.65b0.tar.gz",
            "opentelemetry_instrumentation_flask-0.66b1-py3-none-any.whl.metadata",
            "other_project-9.0-py3-none-any.whl",
        ];
        let files: Vec<File> = files
            .iter()
            .map(|n| File {
                name: n.to_string(),
                yanked: false,
            })
            .collect();
        let versions = versions_from_files("opentelemetry-instrumentation-flask", &files);
        assert_eq!(versions, [v("0.65b0"), v("0.66b1")].into_iter().collect());
    }

    #[test]
    fn pep_691_json_and_503_html_and_yanked_files() {
        let json = r#"{"files": [
            {"filename": "a-1.0-py3-none-any.whl", "yanked": false},
            {"filename": "a-1.1-py3-none-any.whl", "yanked": "broken"},
            {"filename": "a-1.2.tar.gz"}]}"#;
        assert_eq!(
            versions_from_files("a", &json_files(json)),
            [v("1.0"), v("1.2")].into_iter().collect()
        );
        let html = r#"<html><body>
            <a href="../../packages/a-1.0-py3-none-any.whl#sha256=00">a-1.0-py3-none-any.whl</a>
            <a data-yanked="" href="a-1.1.tar.gz">a-1.1.tar.gz</a>
            <a href='a-2.0b1.tar.gz'>a-2.0b1.tar.gz</a></body></html>"#;
        assert_eq!(
            versions_from_files("a", &html_files(html)),
            [v("1.0"), v("2.0b1")].into_iter().collect()
        );
    }
}
