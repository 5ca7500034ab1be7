//! The process tree that pairs the kernel's fork, exec and exit records into
//! spans.
//!
//! The tree keeps, per live process, the span of the program it runs now and
//! the span its own spans hang under (its parent process's span when it was
//! forked), so a span is finished as soon as its process exits or execs again.

use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};

use super::events::{Event, Program};
use crate::agent::command_args;
use crate::agent::probes::clock::Clock;
use crate::telemetry::context::{SpanContext, SpanId};
use crate::telemetry::ids::random_id;
use crate::telemetry::{Limits, Telemetry, kv, strings};

/// The span a process's current program is recorded in.
#[derive(Debug)]
struct Open {
    span_id: SpanId,
    start_ns: u64,
    /// Started at an exec (else at the fork, running the parent's program).
    execed: bool,
    /// A child was forked under it: its id is referenced.
    has_children: bool,
}

impl Open {
    fn at(start_ns: u64, execed: bool) -> Open {
        Open {
            span_id: random_id(),
            start_ns,
            execed,
            has_children: false,
        }
    }
}

#[derive(Debug)]
struct Process {
    ppid: u32,
    /// What its spans hang under: its parent's span when it was forked.
    parent: SpanId,
    /// `None` while the command's own process runs the command: that program
    /// is the process span.
    open: Option<Open>,
    /// The command's own process before its first exec.
    awaiting_command: bool,
    program: Program,
}

impl Process {
    /// The span its children hang under.
    fn current(&mut self, process_span: SpanId) -> SpanId {
        match &mut self.open {
            Some(open) => {
                open.has_children = true;
                open.span_id
            }
            None => process_span,
        }
    }
}

/// What every span of a run shares.
pub struct Context {
    /// otel-run's process span: the root, and the parent of the command's children.
    pub process: SpanContext,
    /// otel-run's own pid: the process it forks is the command.
    pub launcher: u32,
    pub clock: Clock,
    pub redact_args: bool,
    pub limits: Limits,
    pub resource: Resource,
}

/// The live traced processes, and the spans finished since the last take.
pub struct Tree {
    context: Context,
    processes: HashMap<u32, Process>,
    finished: Vec<Span>,
}

impl Tree {
    pub fn new(context: Context) -> Tree {
        Tree {
            context,
            processes: HashMap::new(),
            finished: Vec::new(),
        }
    }

    pub fn apply(&mut self, event: Event) {
        let root = self.context.process.span_id;
        match event {
            Event::Fork { pid, ppid, time_ns } => {
                let process = if ppid == self.context.launcher {
                    Process {
                        ppid,
                        parent: root,
                        open: None,
                        awaiting_command: true,
                        program: Program::default(),
                    }
                } else {
                    // A fork without exec runs its parent's program.
                    let (parent, program) = match self.processes.get_mut(&ppid) {
                        Some(p) => (p.current(root), p.program.clone()),
                        None => (root, Program::default()),
                    };
                    Process {
                        ppid,
                        parent,
                        open: Some(Open::at(time_ns, false)),
                        awaiting_command: false,
                        program,
                    }
                };
                self.processes.insert(pid, process);
            }
            Event::Exec {
                pid,
                time_ns,
                program,
            } => {
                // A process whose fork was not recorded hangs under the root.
                let process = self.processes.entry(pid).or_insert_with(|| Process {
                    ppid: 0,
                    parent: root,
                    open: None,
                    awaiting_command: false,
                    program: Program::default(),
                });
                if process.awaiting_command {
                    process.awaiting_command = false;
                    process.program = program;
                    return;
                }
                // The span of the program it ran ends here, unless it was only
                // the fork's prologue to this exec (nothing hangs under it).
                let process = &self.processes[&pid];
                let ended = match &process.open {
                    Some(open) if open.execed || open.has_children => {
                        Some(self.span(pid, process, open, time_ns, None))
                    }
                    _ => None,
                };
                self.finished.extend(ended);
                let process = self.processes.get_mut(&pid).expect("inserted above");
                process.program = program;
                process.open = Some(Open::at(time_ns, true));
            }
            Event::Exit {
                pid,
                time_ns,
                status,
            } => self.end(pid, time_ns, Some(status)),
            Event::Nested { pid, time_ns } => {
                // The nested otel-run records the new program as its process
                // span; only an earlier program's span is this one's to close.
                if let Some(process) = self.processes.remove(&pid)
                    && let Some(open) = &process.open
                    && (open.execed || open.has_children)
                {
                    let span = self.span(pid, &process, open, time_ns, None);
                    self.finished.push(span);
                }
            }
        }
    }

    fn end(&mut self, pid: u32, time_ns: u64, status: Option<i32>) {
        if let Some(process) = self.processes.remove(&pid)
            && let Some(open) = &process.open
        {
            let span = self.span(pid, &process, open, time_ns, status);
            self.finished.push(span);
        }
    }

    /// The processes still running when the command has exited (a background
    /// job left behind): their spans end now, with no exit code.
    pub fn close_all(&mut self, now_ns: u64) {
        let pids: Vec<u32> = self.processes.keys().copied().collect();
        for pid in pids {
            self.end(pid, now_ns, None);
        }
    }

    /// The spans finished since the last call.
    pub fn take(&mut self) -> Vec<Span> {
        std::mem::take(&mut self.finished)
    }

    pub fn pending(&self) -> usize {
        self.finished.len()
    }

    /// The span of `process` running `process.program` from `open` to `end_ns`;
    /// `status` is the kernel's wait status when it exited.
    fn span(
        &self,
        pid: u32,
        process: &Process,
        open: &Open,
        end_ns: u64,
        status: Option<i32>,
    ) -> Span {
        let ctx = &self.context;
        let program = &process.program;
        let args = if ctx.redact_args {
            command_args::redact(&program.args)
        } else {
            program.args.clone()
        };
        let mut attributes = vec![kv("process.pid", Value::IntValue(i64::from(pid)))];
        if process.ppid != 0 {
            attributes.push(kv(
                "process.parent_pid",
                Value::IntValue(i64::from(process.ppid)),
            ));
        }
        if !program.path.is_empty() {
            attributes.push(kv(
                "process.executable.path",
                Value::StringValue(program.path.clone()),
            ));
            attributes.push(kv(
                "process.executable.name",
                Value::StringValue(program.name().to_string()),
            ));
        }
        attributes.push(kv("process.command_args", strings(args)));
        let mut span_status = Status::default();
        if let Some(wait) = status {
            let signal = wait & 0x7f;
            let code = if signal == 0 {
                (wait >> 8) & 0xff
            } else {
                128 + signal
            };
            attributes.push(kv("process.exit.code", Value::IntValue(i64::from(code))));
            span_status.message = match (signal, code) {
                (0, 0) => String::new(),
                (0, code) => format!("exit code {code}"),
                (signal, _) => format!("killed by signal {signal}"),
            };
            if !span_status.message.is_empty() {
                span_status.code = StatusCode::Error as i32;
            }
        }
        let name = if program.path.is_empty() {
            "process"
        } else {
            program.name()
        };
        Span {
            trace_id: ctx.process.trace_id.to_vec(),
            span_id: open.span_id.to_vec(),
            trace_state: ctx.process.trace_state.clone(),
            parent_span_id: process.parent.to_vec(),
            flags: 0x100 | 1,
            name: name.to_string(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: ctx.clock.wall(open.start_ns),
            end_time_unix_nano: ctx.clock.wall(end_ns.max(open.start_ns)),
            attributes: ctx.limits.apply(attributes),
            status: Some(span_status),
            ..Default::default()
        }
    }

    /// One export item for a batch of spans.
    pub fn batch(&self, spans: Vec<Span>) -> ResourceSpans {
        ResourceSpans {
            resource: Some(self.context.resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(Telemetry::scope("otel-run/processes")),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAUNCHER: u32 = 10;

    fn tree() -> Tree {
        Tree::new(Context {
            process: SpanContext::new([3; 16], [4; 8], true),
            launcher: LAUNCHER,
            clock: Clock::now(),
            redact_args: true,
            limits: Limits::default(),
            resource: Resource::default(),
        })
    }

    fn fork(pid: u32, ppid: u32) -> Event {
        Event::Fork {
            pid,
            ppid,
            time_ns: 1_000,
        }
    }

    fn exec(pid: u32, path: &str, args: &[&str]) -> Event {
        Event::Exec {
            pid,
            time_ns: 2_000,
            program: Program {
                path: path.into(),
                args: args.iter().map(|a| a.to_string()).collect(),
            },
        }
    }

    fn exit(pid: u32, status: i32) -> Event {
        Event::Exit {
            pid,
            time_ns: 5_000,
            status,
        }
    }

    fn int(span: &Span, key: &str) -> Option<i64> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::IntValue(i) => Some(*i),
                _ => None,
            })
    }

    fn args(span: &Span) -> Vec<String> {
        let kv = span
            .attributes
            .iter()
            .find(|kv| kv.key == "process.command_args")
            .unwrap();
        let Some(Value::ArrayValue(a)) = kv.value.as_ref().unwrap().value.as_ref() else {
            panic!("{kv:?}");
        };
        a.values
            .iter()
            .map(|v| match v.value.as_ref().unwrap() {
                Value::StringValue(s) => s.clone(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_commands_children_hang_under_the_process_span_and_theirs_under_them() {
        let mut t = tree();
        t.apply(fork(20, LAUNCHER));
        t.apply(exec(20, "/usr/bin/make", &["make"]));
        t.apply(fork(21, 20));
        t.apply(exec(21, "/usr/bin/cc", &["cc", "-c", "a.c"]));
        t.apply(fork(22, 21));
        t.apply(exec(22, "/usr/libexec/cc1", &["cc1", "a.c"]));
        t.apply(exit(22, 0));
        t.apply(exit(21, 1 << 8));
        t.apply(exit(20, 0));
        let spans = t.take();
        assert_eq!(spans.len(), 2, "the command itself is the process span");
        let (cc1, cc) = (&spans[0], &spans[1]);
        assert_eq!(cc.name, "cc");
        assert_eq!(cc.parent_span_id, vec![4; 8]);
        assert_eq!(cc.trace_id, vec![3; 16]);
        assert_eq!(cc1.name, "cc1");
        assert_eq!(cc1.parent_span_id, cc.span_id);
        assert_eq!(int(cc, "process.pid"), Some(21));
        assert_eq!(int(cc, "process.parent_pid"), Some(20));
        assert_eq!(int(cc, "process.exit.code"), Some(1));
        assert_eq!(cc.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert_eq!(int(cc1, "process.exit.code"), Some(0));
        assert_eq!(cc1.status.as_ref().unwrap().code, StatusCode::Unset as i32);
        assert_eq!(args(cc), ["cc", "-c", "a.c"]);
        // From the exec to the exit.
        assert_eq!(cc.end_time_unix_nano - cc.start_time_unix_nano, 3_000);
    }

    #[test]
    fn a_signal_death_is_an_error_with_the_shells_exit_code() {
        let mut t = tree();
        t.apply(fork(20, LAUNCHER));
        t.apply(exec(20, "/bin/sh", &["sh"]));
        t.apply(fork(21, 20));
        t.apply(exec(21, "/bin/sleep", &["sleep", "9"]));
        t.apply(exit(21, 9));
        let span = &t.take()[0];
        assert_eq!(int(span, "process.exit.code"), Some(137));
        let status = span.status.as_ref().unwrap();
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "killed by signal 9");
    }

    #[test]
    fn a_fork_without_exec_is_a_span_of_its_parents_program() {
        let mut t = tree();
        t.apply(fork(20, LAUNCHER));
        t.apply(exec(20, "/bin/bash", &["bash", "build.sh"]));
        t.apply(fork(21, 20));
        t.apply(fork(22, 21));
        t.apply(exec(22, "/bin/true", &["true"]));
        t.apply(exit(22, 0));
        t.apply(exit(21, 0));
        let spans = t.take();
        let (child, subshell) = (&spans[0], &spans[1]);
        assert_eq!(subshell.name, "bash");
        assert_eq!(args(subshell), ["bash", "build.sh"]);
        assert_eq!(
            subshell.end_time_unix_nano - subshell.start_time_unix_nano,
            4_000
        );
        assert_eq!(child.parent_span_id, subshell.span_id);
    }

    #[test]
    fn each_exec_is_a_span_and_the_earlier_one_ends_at_the_next() {
        let mut t = tree();
        t.apply(fork(20, LAUNCHER));
        t.apply(exec(20, "/bin/sh", &["sh"]));
        t.apply(fork(21, 20));
        t.apply(exec(21, "/usr/bin/env", &["env", "python3"]));
        t.apply(Event::Exec {
            pid: 21,
            time_ns: 3_000,
            program: Program {
                path: "/usr/bin/python3".into(),
                args: vec!["python3".into()],
            },
        });
        t.apply(exit(21, 0));
        // The command's own re-exec gets a span under the process span.
        t.apply(exec(20, "/usr/bin/make", &["make"]));
        t.apply(exit(20, 0));
        let spans = t.take();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["env", "python3", "make"]);
        assert_eq!(spans[0].end_time_unix_nano, spans[1].start_time_unix_nano);
        assert_eq!(spans[0].parent_span_id, spans[1].parent_span_id);
        assert_eq!(int(&spans[0], "process.exit.code"), None);
        assert_eq!(spans[2].parent_span_id, vec![4; 8]);
    }

    #[test]
    fn a_nested_otel_run_is_left_to_record_its_own_subtree() {
        let mut t = tree();
        t.apply(fork(20, LAUNCHER));
        t.apply(exec(20, "/bin/sh", &["sh"]));
        t.apply(fork(21, 20));
        t.apply(Event::Nested {
            pid: 21,
            time_ns: 2_000,
        });
        t.apply(exit(21, 0));
        t.apply(exit(20, 0));
        assert!(t.take().is_empty());
    }

    #[test]
    fn arguments_are_redacted_as_the_process_spans_are() {
        let mut t = tree();
        t.apply(fork(20, LAUNCHER));
        t.apply(exec(20, "/bin/sh", &["sh"]));
        t.apply(fork(21, 20));
        t.apply(exec(21, "/usr/bin/curl", &["curl", "--token", "s3cret"]));
        t.apply(exit(21, 0));
        assert_eq!(args(&t.take()[0]), ["curl", "--token", "REDACTED"]);
    }

    #[test]
    fn processes_left_running_end_when_the_run_does() {
        let mut t = tree();
        t.apply(fork(20, LAUNCHER));
        t.apply(exec(20, "/bin/sh", &["sh"]));
        t.apply(fork(21, 20));
        t.apply(exec(21, "/bin/sleep", &["sleep", "60"]));
        t.apply(exit(20, 0));
        assert!(t.take().is_empty());
        t.close_all(9_000);
        let spans = t.take();
        assert_eq!(spans.len(), 1);
        assert_eq!(int(&spans[0], "process.exit.code"), None);
    }
}
