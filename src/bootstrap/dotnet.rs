//! .NET: no package index for the automatic instrumentation is reachable to
//! install from, so `bootstrap --dotnet` checks the home otel-run would use and
//! says which release archive fits this machine and where to unpack it.

use serde::Serialize;

use super::Outcome;
use crate::runtime::{Plan, dotnet};

#[derive(Debug, Serialize)]
pub struct Report {
    pub home: Option<String>,
    /// Where the home was found (`None` when there is none).
    pub home_source: Option<&'static str>,
    pub runtime_id: &'static str,
    /// The release archive for this machine's C library and architecture.
    pub release_asset: String,
    pub problems: Vec<String>,
    pub outcome: Outcome,
}

pub fn check(config: &crate::runtime::Config) -> Report {
    let home = dotnet::home(config);
    let rid = dotnet::runtime_id();
    let mut plan = Plan::default();
    dotnet::inject(&mut plan, home.clone(), rid, &[]);
    Report {
        home: home.as_ref().map(|h| h.path.display().to_string()),
        home_source: home.map(|h| h.source),
        runtime_id: rid,
        release_asset: dotnet::release_asset(),
        outcome: if plan.notes.is_empty() {
            Outcome::AlreadyInstalled
        } else {
            Outcome::Missing
        },
        problems: plan.notes.iter().map(|n| n.message.clone()).collect(),
    }
}

pub fn summary(report: &Report) -> String {
    let home = match (&report.home, report.home_source) {
        (Some(home), Some(source)) => format!("{home} ({source})"),
        _ => "(none)".into(),
    };
    if report.problems.is_empty() {
        return format!(
            ".NET automatic instrumentation: {home} is complete for {}\n",
            report.runtime_id
        );
    }
    let mut out = format!(".NET automatic instrumentation: {home} is not usable\n");
    for problem in &report.problems {
        out += &format!("  {problem}\n");
    }
    out += &format!(
        "  to obtain it: download {} from the\n  \
         opentelemetry-dotnet-instrumentation GitHub releases and unpack it into\n  \
         ~/.local/share/otel-run/dotnet (or run its otel-dotnet-auto-install.sh,\n  \
         which unpacks it into ~/.otel-dotnet-auto), or anywhere and set OTEL_DOTNET_AUTO_HOME\n",
        report.release_asset
    );
    out
}
