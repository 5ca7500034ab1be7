//! .NET: no package index for the automatic instrumentation is reachable to
//! install from, so `bootstrap --dotnet` checks the home otel-run would use and
//! says how to obtain it.

use serde::Serialize;

use super::Outcome;
use crate::runtime::{Plan, dotnet};
use crate::settings::Settings;

#[derive(Debug, Serialize)]
pub struct Report {
    pub home: Option<String>,
    pub runtime_id: &'static str,
    pub problems: Vec<String>,
    pub outcome: Outcome,
}

pub fn check(settings: &Settings) -> Report {
    let home = crate::runtime::dotnet_home(&settings.runtime());
    let rid = dotnet::runtime_id();
    let mut plan = Plan::default();
    dotnet::inject(&mut plan, home.clone(), rid);
    Report {
        home: home.map(|h| h.display().to_string()),
        runtime_id: rid,
        outcome: if plan.notes.is_empty() {
            Outcome::AlreadyInstalled
        } else {
            Outcome::Missing
        },
        problems: plan.notes.iter().map(|n| n.message.clone()).collect(),
    }
}

pub fn summary(report: &Report) -> String {
    let home = report.home.as_deref().unwrap_or("(none)");
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
        "  to obtain it: download opentelemetry-dotnet-instrumentation-{}.zip from the\n  \
         opentelemetry-dotnet-instrumentation GitHub releases (or run its\n  \
         otel-dotnet-auto-install.sh), unpack it into ~/.local/share/otel-run/dotnet,\n  \
         or anywhere and set OTEL_DOTNET_AUTO_HOME\n",
        report.runtime_id
    );
    out
}
