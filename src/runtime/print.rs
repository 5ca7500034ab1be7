//! `otel-run env`: the planned environment written for a shell or a CI system.
//!
//! Values are printed exactly, whatever they hold (quotes, `$`, newlines): each
//! format quotes by its own rules, and a test sources the output in the real
//! shell and compares.

use std::fmt::Write as _;

use crate::telemetry::hex;
use crate::telemetry::ids::random_id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EnvFormat {
    /// `export K='v'` for sh, bash, zsh, to `eval`
    Sh,
    /// `set -gx K 'v'` for fish: `otel-run env --format fish | source`
    Fish,
    /// `K='v'` lines, readable by dotenv libraries and `set -a; . ./file`
    Dotenv,
    /// One JSON object
    Json,
    /// Lines for `$GITHUB_ENV`, multi-line values as heredocs
    Github,
    /// A GitLab dotenv report (`artifacts:reports:dotenv`)
    Gitlab,
}

#[derive(Debug, thiserror::Error)]
#[error("`{name}` has a multi-line value, which a GitLab dotenv report cannot hold")]
pub struct Unrepresentable {
    pub name: String,
}

impl crate::diag::Hint for Unrepresentable {}

/// Writes `vars` in `format`.
pub fn render(vars: &[(String, String)], format: EnvFormat) -> Result<String, Unrepresentable> {
    let mut out = String::new();
    if format == EnvFormat::Json {
        let map: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
            .collect();
        return Ok(serde_json::to_string_pretty(&map).expect("JSON of strings") + "\n");
    }
    for (name, value) in vars {
        match format {
            EnvFormat::Sh => writeln!(out, "export {name}={}", sh_quote(value)),
            EnvFormat::Dotenv => writeln!(out, "{name}={}", sh_quote(value)),
            EnvFormat::Fish => writeln!(out, "set -gx {name} {}", fish_quote(value)),
            EnvFormat::Github if value.contains('\n') => {
                let delimiter = heredoc_delimiter(value);
                writeln!(out, "{name}<<{delimiter}\n{value}\n{delimiter}")
            }
            EnvFormat::Github => writeln!(out, "{name}={value}"),
            EnvFormat::Gitlab if value.contains('\n') || value.contains('\r') => {
                return Err(Unrepresentable { name: name.clone() });
            }
            EnvFormat::Gitlab => writeln!(out, "{name}={value}"),
            EnvFormat::Json => unreachable!("handled above"),
        }
        .expect("writing to a String");
    }
    Ok(out)
}

/// POSIX single quotes: everything literal; a `'` closes, escapes and reopens.
fn sh_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// fish single quotes: only `\\` and `\'` are escapes inside them.
fn fish_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', r"\'"))
}

/// A delimiter that cannot occur in the value, as GitHub's docs advise.
fn heredoc_delimiter(value: &str) -> String {
    loop {
        let id: [u8; 8] = random_id();
        let delimiter = format!("otel_run_{}", hex::encode(&id));
        if !value.contains(&delimiter) {
            return delimiter;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sh_quotes_single_quotes() {
        let out = render(&vars(&[("A", "it's $HOME")]), EnvFormat::Sh).unwrap();
        assert_eq!(out, "export A='it'\\''s $HOME'\n");
    }

    #[test]
    fn fish_escapes_backslashes_and_quotes() {
        let out = render(&vars(&[("A", r"a\b'c")]), EnvFormat::Fish).unwrap();
        assert_eq!(out, "set -gx A 'a\\\\b\\'c'\n");
    }

    #[test]
    fn github_uses_heredocs_for_multi_line_values_only() {
        let out = render(&vars(&[("A", "one"), ("B", "x\ny")]), EnvFormat::Github).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "A=one");
        let delimiter = lines[1].strip_prefix("B<<").unwrap();
        assert_eq!(&lines[2..], ["x", "y", delimiter]);
    }

    #[test]
    fn gitlab_refuses_multi_line_values() {
        assert_eq!(
            render(&vars(&[("A", "1")]), EnvFormat::Gitlab).unwrap(),
            "A=1\n"
        );
        let err = render(&vars(&[("B", "x\ny")]), EnvFormat::Gitlab).unwrap_err();
        assert_eq!(err.name, "B");
    }

    #[test]
    fn json_is_an_object() {
        let out = render(&vars(&[("A", "\"q\"")]), EnvFormat::Json).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["A"], "\"q\"");
    }
}
