//! Settings as `otel-run` resolves them before anything runs: the OTEL_*
//! environment, the command line through the real clap parser and
//! `otel-run.toml`, into `Settings::resolve`, then `otel-run config`'s report in
//! both formats. Errors are fine; a panic is not.
//!
//! Input: three sections split by `\n%%\n`: environment lines `KEY=VALUE`
//! (`@N=VALUE` for the N-th setting's variable), one argument per line (after
//! `otel-run`), then the config file's text (absent without a second `%%`; not
//! UTF-8 reads as no file); one final newline is ignored. Bytes need not be
//! UTF-8.
//!
//! Secrets: `{secret}` in the value part of a secret setting (the OTLP headers,
//! `key={secret}`), given in the environment, a flag or the file, is replaced
//! by a secret. Everything is done twice, with two secrets of the same shape:
//! what otel-run would print (the report with its warnings, or the error) must
//! be the same both times, else a secret reached it.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use otel_run::cli;
use otel_run::settings::report::{self, Format};
use otel_run::settings::vars::{self, Kind, Var};
use otel_run::settings::{Inputs, Settings, file};

const PLACEHOLDER: &str = "{secret}";
/// Alike for every parser: same length, letters and digits only, no hex digit
/// where they differ.
const SECRETS: [&str; 2] = ["s3kr1tq", "s3kr1tz"];

fuzz_target!(|data: &[u8]| {
    // A text file's last newline ends its last line; it is not an empty argument.
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    let (env, rest) = split(data);
    let (argv, toml) = rest.map_or((&[][..], None), split);
    let env = lines(env).filter_map(|line| {
        let eq = line.iter().position(|&b| b == b'=')?;
        Some((variable(&line[..eq]), os(&line[eq + 1..])))
    });
    let argv = std::iter::once("otel-run".into()).chain(lines(argv).map(os));
    // `file::load` reads the file as UTF-8 or fails before parsing it.
    let toml = toml.and_then(|t| std::str::from_utf8(t).ok());

    let cli::Parsed { cli, flags } = match cli::parse(argv) {
        Ok(parsed) => parsed,
        // Help and version are the same whatever else is given: not worth rendering.
        Err(cli::Error::Clap(e)) => {
            if e.use_stderr() {
                e.to_string();
            }
            return;
        }
        Err(cli::Error::Unknown(e)) => {
            e.to_string();
            return;
        }
    };
    let file = match toml.map(|text| file::parse(Path::new(file::FILE_NAME), text)) {
        None => None,
        Some(Ok(file)) => Some(file),
        Some(Err(e)) => {
            e.to_string();
            return;
        }
    };
    let mut inputs = Inputs {
        file,
        flags,
        ..Default::default()
    };
    inputs.read_env(env);
    let shown = |inputs: &Inputs| {
        let settings = match Settings::resolve(inputs) {
            Ok(settings) => settings,
            Err(e) => return e.to_string(),
        };
        otel_run::diag::level(cli.verbose, settings.text(&vars::LOG_LEVEL));
        report::render(&settings, Format::Text) + &report::render(&settings, Format::Json)
    };
    // Without a secret to tell apart, once is enough.
    if !secret_values(&inputs).any(|(_, value)| value.contains(PLACEHOLDER)) {
        shown(&inputs);
        return;
    }
    let [first, second] = SECRETS.map(|secret| shown(&with_secret(&inputs, secret)));
    assert!(
        first == second,
        "a secret reached the output:\n{first}\n---\n{second}"
    );
});

/// The values of the secret settings, in every layer.
fn secret_values(inputs: &Inputs) -> impl Iterator<Item = (&'static Var, &String)> {
    vars::ALL
        .iter()
        .copied()
        .filter(|var| var.secret)
        .flat_map(move |var| {
            let file = inputs.file.as_ref().and_then(|f| f.values.get(var.name));
            [inputs.env.get(var.name), inputs.flags.get(var.name), file]
                .into_iter()
                .flatten()
                .map(move |value| (var, value))
        })
}

/// `inputs` with `secret` in place of the placeholder in the secret settings.
fn with_secret(inputs: &Inputs, secret: &str) -> Inputs {
    let mut with = Inputs {
        file: inputs.file.clone(),
        env: inputs.env.clone(),
        env_not_utf8: inputs.env_not_utf8.clone(),
        flags: inputs.flags.clone(),
    };
    for var in vars::ALL.iter().copied().filter(|v| v.secret) {
        let values = [
            with.env.get_mut(var.name),
            with.flags.get_mut(var.name),
            with.file.as_mut().and_then(|f| f.values.get_mut(var.name)),
        ];
        for value in values.into_iter().flatten() {
            *value = replaced(value, var.kind, secret);
        }
    }
    with
}

/// `raw` with the placeholder replaced in what is secret: the values of a
/// `key=value,...` list (as `parse::key_values` splits it), else all of it.
fn replaced(raw: &str, kind: Kind, secret: &str) -> String {
    if kind != Kind::KeyValues {
        return raw.replace(PLACEHOLDER, secret);
    }
    raw.split(',')
        .map(|item| match item.split_once('=') {
            Some((key, value)) => format!("{key}={}", value.replace(PLACEHOLDER, secret)),
            None => item.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The part before the first `\n%%\n` and, if there is one, the part after it.
fn split(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    const SEPARATOR: &[u8] = b"\n%%\n";
    match data.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        Some(at) => (&data[..at], Some(&data[at + SEPARATOR.len()..])),
        None => (data, None),
    }
}

fn lines(section: &[u8]) -> impl Iterator<Item = &[u8]> {
    section
        .split(|&b| b == b'\n')
        .filter(|_| !section.is_empty())
}

/// An environment line's key: `@N` stands for the N-th setting's variable, so
/// that every one is in reach (the settings look variables up by hash, which
/// tells the fuzzer nothing of their names).
fn variable(key: &[u8]) -> OsString {
    let index = key
        .strip_prefix(b"@")
        .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
    match index {
        Some(n) => vars::ALL[n % vars::ALL.len()].name.into(),
        None => os(key),
    }
}

fn os(bytes: &[u8]) -> OsString {
    OsString::from_vec(bytes.to_vec())
}
