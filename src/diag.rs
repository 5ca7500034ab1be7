//! otel-run's own diagnostics: stderr only, each line behind `otel-run:`, quiet
//! (warnings and errors) unless `-v` or OTEL_LOG_LEVEL asks for more.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The level from `-v` (which wins) or OTEL_LOG_LEVEL.
pub fn level(verbose: u8, otel_log_level: Option<&str>) -> Option<Level> {
    match verbose {
        0 => {}
        1 => return Some(Level::INFO),
        2 => return Some(Level::DEBUG),
        _ => return Some(Level::TRACE),
    }
    match otel_log_level.unwrap_or("warn") {
        "trace" => Some(Level::TRACE),
        "debug" => Some(Level::DEBUG),
        "info" => Some(Level::INFO),
        "error" => Some(Level::ERROR),
        "off" | "none" => None,
        _ => Some(Level::WARN),
    }
}

/// A level as OTEL_LOG_LEVEL spells it, for the shims (OTEL_RUN_LOG_LEVEL).
pub fn level_name(level: Option<Level>) -> &'static str {
    match level {
        None => "off",
        Some(Level::ERROR) => "error",
        Some(Level::WARN) => "warn",
        Some(Level::INFO) => "info",
        Some(Level::DEBUG) => "debug",
        Some(Level::TRACE) => "trace",
    }
}

/// Installs the stderr logger; only otel-run's own modules log through it (a
/// filter by target: no directives to parse at every start).
pub fn init(level: Option<Level>) {
    let _ = tracing::subscriber::set_global_default(Stderr { max: level });
}

/// Exit code for bad usage or configuration, as clap uses.
pub const USAGE: u8 = 2;

/// An error that may know its fix (the `hint:` line) and otel-run's exit code.
pub trait Hint: std::error::Error + Send + Sync + 'static {
    fn hint(&self) -> Option<String> {
        None
    }

    fn exit_code(&self) -> u8 {
        1
    }
}

impl Hint for std::io::Error {}

/// What ends a run with an error: the error, its hint and exit code, printed
/// once, by [`Failure::report`].
#[derive(Debug)]
pub struct Failure {
    error: anyhow::Error,
    hint: Option<String>,
    code: u8,
}

impl<E: Hint> From<E> for Failure {
    fn from(error: E) -> Failure {
        Failure {
            hint: error.hint(),
            code: error.exit_code(),
            error: error.into(),
        }
    }
}

/// An error that has no fix to tell, with its context.
impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure {
            error,
            hint: None,
            code: 1,
        }
    }
}

impl Failure {
    /// Prints the error and its hint; returns the exit code.
    pub fn report(&self) -> u8 {
        error(&format!("{:#}", self.error), self.hint.as_deref());
        self.code
    }
}

/// A message with its fix on a `hint:` line below it.
pub fn hinted(message: &str, hint: Option<&str>) -> String {
    match hint {
        Some(hint) => format!("{message}\nhint: {hint}"),
        None => message.to_string(),
    }
}

/// A warning with its fix, as errors have.
pub fn warn(message: &str, hint: Option<&str>) {
    tracing::warn!("{}", hinted(message, hint));
}

/// Prints an error the way every otel-run error looks.
pub fn error(message: &str, hint: Option<&str>) {
    // One write: lines of concurrent writers do not interleave with it.
    let text = format!("otel-run: error: {}\n", hinted(message, hint));
    eprint!("{text}");
}

/// A line otel-run says whatever the level: what a long-running otel-run is
/// doing (`otel-run agent`'s addresses, its summary at stop).
pub fn notice(message: &str) {
    // One write, as `error`'s.
    let text = format!("otel-run: {message}\n");
    eprint!("{text}");
}

/// Writes otel-run's own output to stdout. A reader that went away
/// (`otel-run config | head`) is not an error worth a message.
pub fn stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// otel-run's logger: each event of otel-run's own modules at or above `max`
/// is one line on stderr. otel-run makes no tracing spans, so none are kept
/// (a registry of spans costs more at start-up than the whole settings).
struct Stderr {
    max: Option<Level>,
}

impl Subscriber for Stderr {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max.is_some_and(|max| *metadata.level() <= max)
            && metadata.target().starts_with("otel_run")
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(
            self.max
                .map_or(tracing::level_filters::LevelFilter::OFF, Into::into),
        )
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let label = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            Level::INFO => "",
            Level::DEBUG => "debug: ",
            Level::TRACE => "trace: ",
        };
        let mut line = Line(format!("otel-run: {label}"));
        event.record(&mut line);
        line.0.push('\n');
        // One write: lines of concurrent writers do not interleave.
        eprint!("{}", line.0);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message, then its other fields as `name=value`.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_wins_over_otel_log_level() {
        assert_eq!(level(0, None), Some(Level::WARN));
        assert_eq!(level(0, Some("debug")), Some(Level::DEBUG));
        assert_eq!(level(0, Some("none")), None);
        assert_eq!(level(1, Some("error")), Some(Level::INFO));
        assert_eq!(level(2, None), Some(Level::DEBUG));
    }

    #[test]
    fn level_names_read_back_as_otel_log_level() {
        for verbose in 0..4 {
            let level = level(verbose, None);
            assert_eq!(super::level(0, Some(level_name(level))), level);
        }
        assert_eq!(super::level(0, Some(level_name(None))), None);
    }
}
