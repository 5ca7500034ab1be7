//! Java: `io.opentelemetry.javaagent:opentelemetry-javaagent` from a Maven
//! repository into otel-run's data directory, checked against the SHA-256 the
//! repository publishes, and moved into place only once it matches.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{Options, Outcome, Progress};
use crate::settings::report::redact_url;
use crate::telemetry::hex;

pub const CENTRAL: &str = "https://repo1.maven.org/maven2/";
const ARTIFACT: &str = "io/opentelemetry/javaagent/opentelemetry-javaagent";

#[derive(Debug, Serialize)]
pub struct Report {
    pub version: String,
    pub url: String,
    pub path: String,
    pub sha256: String,
    pub outcome: Outcome,
}

pub fn bootstrap(options: &Options, progress: &Progress) -> anyhow::Result<Report> {
    let path = crate::runtime::java::downloaded_agent()
        .context("no data directory: set HOME or XDG_DATA_HOME")?;
    let repository = options.maven_repository.trim_end_matches('/');
    let client = super::http_client();
    super::block_on(async {
        let version = match &options.java_agent_version {
            Some(v) => v.clone(),
            None => newest(&client, repository).await?,
        };
        let url =
            format!("{repository}/{ARTIFACT}/{version}/opentelemetry-javaagent-{version}.jar");
        let sha256 = published_sha256(&client, &url).await?;
        let mut report = Report {
            version,
            url: redact_url(&url),
            path: path.display().to_string(),
            sha256: sha256.clone(),
            outcome: Outcome::Planned,
        };
        if file_sha256(&path).is_some_and(|have| have == sha256) {
            report.outcome = Outcome::AlreadyInstalled;
            return Ok(report);
        }
        if options.dry_run {
            return Ok(report);
        }
        progress.say(&format!("downloading {}", redact_url(&url)));
        download(&client, &url, &path, &sha256, progress).await?;
        report.outcome = Outcome::Installed;
        Ok(report)
    })
}

pub fn summary(report: &Report) -> String {
    let verb = match report.outcome {
        Outcome::Installed => "installed",
        Outcome::AlreadyInstalled => "already installed:",
        _ => "would download",
    };
    format!(
        "Java agent {}: {verb} {} (sha256 {})\n",
        report.version, report.path, report.sha256
    )
}

/// The `<release>` of the artifact's maven-metadata.xml.
async fn newest(client: &reqwest::Client, repository: &str) -> anyhow::Result<String> {
    let url = format!("{repository}/{ARTIFACT}/maven-metadata.xml");
    let text = get_text(client, &url).await?;
    let url = redact_url(&url);
    let release = text
        .split_once("<release>")
        .and_then(|(_, rest)| rest.split_once("</release>"))
        .map(|(v, _)| v.trim().to_string())
        .filter(|v| !v.is_empty());
    release.with_context(|| format!("{url} names no release"))
}

async fn published_sha256(client: &reqwest::Client, jar: &str) -> anyhow::Result<String> {
    let url = format!("{jar}.sha256");
    let text = get_text(client, &url)
        .await
        .context("the repository publishes no SHA-256 to check the agent against")?;
    let hex = text
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("{} is not a SHA-256: {text:?}", redact_url(&url));
    }
    Ok(hex)
}

/// The repository URL may carry credentials: messages show it redacted, and
/// reqwest's errors lose theirs.
async fn get_text(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    let shown = redact_url(url);
    let response = client
        .get(url)
        .send()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("cannot reach {shown}"))?;
    let response = response
        .error_for_status()
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("cannot read {shown}"))?;
    Ok(response.text().await.map_err(reqwest::Error::without_url)?)
}

fn file_sha256(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        match std::io::Read::read(&mut file, &mut buffer).ok()? {
            0 => return Some(hex::encode(&hasher.finalize())),
            n => hasher.update(&buffer[..n]),
        }
    }
}

/// Streams the jar to a temporary file beside `path`, hashing it on the way,
/// and renames it into place only when the hash matches.
async fn download(
    client: &reqwest::Client,
    url: &str,
    path: &Path,
    sha256: &str,
    progress: &Progress,
) -> anyhow::Result<()> {
    let dir: PathBuf = path
        .parent()
        .context("the agent path has no directory")?
        .into();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let shown = redact_url(url);
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("cannot reach {shown}"))?
        .error_for_status()
        .map_err(reqwest::Error::without_url)
        .with_context(|| format!("cannot download {shown}"))?;
    let total = response.content_length();
    let mut file = tempfile::Builder::new()
        .prefix(".opentelemetry-javaagent-")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let mut hasher = Sha256::new();
    let (mut done, mut shown) = (0u64, 0u64);
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("the download of {url} broke off"))?
    {
        hasher.update(&chunk);
        file.write_all(&chunk)?;
        done += chunk.len() as u64;
        if progress.terminal && done - shown >= 2 << 20 {
            shown = done;
            let of = total.map_or(String::new(), |t| format!(" of {} MiB", t >> 20));
            eprint!("\rotel-run: bootstrap: {} MiB{of}", done >> 20);
        }
    }
    if progress.terminal && shown > 0 {
        eprintln!();
    }
    let got = hex::encode(&hasher.finalize());
    if got != sha256 {
        bail!(
            "the downloaded agent's SHA-256 is {got}, the repository publishes {sha256}; nothing was installed"
        );
    }
    file.as_file().sync_all()?;
    file.persist(path)
        .with_context(|| format!("cannot move the agent to {}", path.display()))?;
    Ok(())
}
