//! Seed 001's flow with `otel-run agent --ui` where the document starts
//! `jaeger-all-in-one`: the service the document's reader picks in the UI on
//! 16686 is listed, and the request's trace reads from Jaeger's query API with
//! the spans and nesting the collector receives; side by side with a real
//! Jaeger, the same trace.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::super::{Seen, ctrl_c, users_shell};
use super::{FLAGS, Project, VARIABLES, assert_the_request, of_the_request, with_launcher};
use crate::jaeger::Jaeger;
use crate::util::{Server, assert_success, free_port, http_get_body, wait_for};

/// A Jaeger answer of `port`'s query API.
fn get_json(port: u16, path: &str) -> Value {
    let body = http_get_body(port, path);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The program's spans of `service` as Jaeger's UI on `query` lists them.
fn traces_of(query: u16, service: &str) -> Vec<Seen> {
    Seen::in_jaeger(&get_json(query, &format!("/api/traces?service={service}")))
}

/// The services the UI's drop-down offers.
fn services(query: u16) -> Vec<String> {
    let answer = get_json(query, "/api/services");
    answer["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// The terminal where the document starts `jaeger-all-in-one`, with `otel-run
/// agent --ui` in its place.
struct AllInOne(Server);

impl AllInOne {
    /// `script` run in the user's shell in `dir`, once its OTLP port `grpc`
    /// and UI port `ui` answer.
    fn start(script: &str, grpc: u16, ui: u16, project: &Project, dir: &Path) -> AllInOne {
        let command: Command = users_shell(script, dir, &project.bin());
        let all_in_one = AllInOne(Server::start(command, ui, dir));
        let up = wait_for(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", grpc)).ok()
        });
        assert!(up.is_some(), "{script}: {}", all_in_one.0.stderr_text());
        all_in_one
    }

    /// Ctrl-C in its terminal, and the wait until it has ended: its ports are
    /// free again.
    fn stop(mut self) {
        ctrl_c(&mut self.0, "otel-run agent --ui");
    }
}

impl Drop for AllInOne {
    /// A failed assertion before [`AllInOne::stop`] ends it too, shell and
    /// agent: the shell alone killed would leave the agent on its ports.
    fn drop(&mut self) {
        if self.0.child.try_wait().ok().flatten().is_none() {
            let group = self.0.child.id() as libc::pid_t;
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    }
}

/// The document's flags, each exporter pointed at its all-in-one: `otel-run
/// agent --ui` on free ports, and a real Jaeger, at once. Both list the
/// service and show the request's trace, the same.
#[test]
fn seed_001_with_the_documents_flags_read_in_the_viewer_as_in_jaeger() {
    let (Some(project), Some(jaeger)) = (Project::new(), Jaeger::start()) else {
        return;
    };
    assert_success(&project.shell("otel-run bootstrap"));
    let dir = tempfile::tempdir().unwrap();
    let (grpc, ui) = (free_port(), free_port());
    let agent = AllInOne::start(
        &format!("otel-run agent --ui --listen 127.0.0.1:{grpc} --ui-listen 127.0.0.1:{ui}"),
        grpc,
        ui,
        &project,
        dir.path(),
    );
    let flow = |grpc: u16, query: u16| {
        let script = with_launcher(FLAGS, "otel-run", grpc);
        project
            .serve(&script, &|| traces_of(query, "server_automatic"))
            .1
    };
    let (ours, theirs) = std::thread::scope(|scope| {
        let ours = scope.spawn(|| flow(grpc, ui));
        let theirs = scope.spawn(|| flow(jaeger.grpc, jaeger.query));
        (ours.join().unwrap(), theirs.join().unwrap())
    });
    let listed = services(ui);
    agent.stop();
    eprintln!(
        "seed 001, the document's flags\n  the viewer: {:#?}\n  Jaeger: {:#?}",
        Seen::table(&ours),
        Seen::table(&theirs)
    );
    assert!(listed.contains(&"server_automatic".into()), "{listed:?}");
    assert!(services(jaeger.query).contains(&"server_automatic".into()));
    assert_the_request("the viewer", &ours, "server_automatic");
    assert_the_request("Jaeger", &theirs, "server_automatic");
    assert_eq!(of_the_request(&ours), of_the_request(&theirs));
}

/// The document's variables, not exported: the launcher sends to the default
/// localhost:4317, where `otel-run agent --ui` listens with no flag at all, as
/// `jaeger-all-in-one` does, its UI on 16686. Held only while the flow runs.
#[test]
fn seed_001_with_the_documents_variables_read_in_otel_run_agent_ui() {
    let Some(project) = Project::new() else {
        return;
    };
    assert_success(&project.shell("otel-run bootstrap"));
    let (grpc, http, ui) = (4317, 4318, 16686);
    // Another test may hold a default for a moment (a default is everyone's).
    let free = wait_for(Duration::from_secs(60), || {
        [grpc, http, ui]
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .then_some(())
    });
    if free.is_none() {
        let message =
            "skipped: 4317, 4318 or 16686 is taken, and the flow needs its all-in-one there";
        assert!(
            std::env::var("OTEL_RUN_TEST_REQUIRE_ALL").as_deref() != Ok("1"),
            "{message}"
        );
        eprintln!("{message}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let agent = AllInOne::start("otel-run agent --ui", grpc, ui, &project, dir.path());
    let script = with_launcher(VARIABLES, "otel-run", grpc);
    let service = "unknown_service:python";
    let (_, spans) = project.serve(&script, &|| traces_of(ui, service));
    let listed = services(ui);
    agent.stop();
    // The drop-down: a default address is everyone's, so another program on
    // the machine may be listed too.
    assert!(listed.iter().any(|s| s == service), "{listed:?}");
    assert_the_request("the viewer", &spans, service);
}
