//! What otel-run records of a command line (`process.command_args`): the
//! arguments as given, less the secrets a command line so often carries.
//!
//! Spans leave the machine, so the values of options whose names look like
//! secrets, and the passwords of URLs, are recorded as `REDACTED`. The rule is
//! one of names, so it is predictable: an option (`--name`, or `-name` as Go and
//! Java spell long options) is secret when one of the words of its name (split
//! at `-`, `_` and `.`, any case) is, or ends in, one of [`SECRET_WORDS`]
//! (`--token`, `--db-password`, `--apiKey`, `-Djavax.net.ssl.keyStorePassword`).
//! Its value is the rest after `=`, else the next argument unless that is an
//! option too. One-letter options (`-p`) are not read: their meaning differs
//! from one program to the next. `OTEL_RUN_REDACT_COMMAND_ARGS=false` records
//! the arguments untouched.

const REDACTED: &str = "REDACTED";

/// See the module's documentation.
/// `header` is there for `curl --header 'Authorization: Bearer …'` and
/// otel-run's own `--exporter-otlp-headers`, which the CI job span records.
pub const SECRET_WORDS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "key",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "cookie",
    "header",
    "headers",
];

/// The arguments with secret option values and URL passwords replaced.
pub fn redact(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut value_next = false;
    for arg in argv {
        let is_option = arg.starts_with('-');
        if std::mem::take(&mut value_next) && !is_option {
            out.push(REDACTED.to_string());
            continue;
        }
        // `--name=value` splits at its first `=`: the option's own part, then the value.
        let (option, has_value) = match arg.split_once('=') {
            Some((option, _)) => (option, true),
            None => (arg.as_str(), false),
        };
        let name = option.trim_start_matches('-');
        if is_option && name.chars().count() > 1 && is_secret(name) {
            if has_value {
                out.push(format!("{option}={REDACTED}"));
            } else {
                value_next = true;
                out.push(arg.clone());
            }
            continue;
        }
        out.push(redact_url_password(arg));
    }
    out
}

fn is_secret(name: &str) -> bool {
    name.split(['-', '_', '.']).any(|word| {
        let word = word.to_ascii_lowercase();
        SECRET_WORDS.iter().any(|secret| word.ends_with(secret))
    })
}

/// `scheme://user:password@host...` anywhere in `arg` (a DSN, `--url=...`,
/// `NAME=url`) with the password replaced. A user name alone is kept:
/// `ssh://git@host` names an account, not a secret.
fn redact_url_password(arg: &str) -> String {
    let Some(start) = arg.find("://").map(|i| i + 3) else {
        return arg.to_string();
    };
    let rest = &arg[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let Some(at) = authority.rfind('@') else {
        return arg.to_string();
    };
    let Some(colon) = authority[..at].find(':') else {
        return arg.to_string();
    };
    format!(
        "{}{REDACTED}{}",
        &arg[..start + colon + 1],
        &arg[start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(args: &[&str]) -> Vec<String> {
        let argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        redact(&argv)
    }

    #[test]
    fn secret_options_lose_their_values_in_both_forms() {
        assert_eq!(
            redacted(&[
                "deploy",
                "--token",
                "t0k",
                "--db-password=pw",
                "--apiKey",
                "k",
                "-Djavax.net.ssl.keyStorePassword=ks",
                "-auth_token=go",
                "--client-secret",
                "s",
                "--exporter-otlp-headers",
                "api-key=k",
            ]),
            [
                "deploy",
                "--token",
                "REDACTED",
                "--db-password=REDACTED",
                "--apiKey",
                "REDACTED",
                "-Djavax.net.ssl.keyStorePassword=REDACTED",
                "-auth_token=REDACTED",
                "--client-secret",
                "REDACTED",
                "--exporter-otlp-headers",
                "REDACTED",
            ]
        );
    }

    #[test]
    fn other_arguments_are_kept() {
        let args = [
            "--author",
            "me",
            "--keep",
            "x",
            "-p",
            "8080",
            "--token",
            "--verbose",
            "file",
            "--name=a=b",
            "ssh://git@example.com/repo",
        ];
        let out = redacted(&args);
        assert_eq!(
            out, args,
            "a secret option followed by an option has no value"
        );
    }

    #[test]
    fn url_passwords_are_hidden_wherever_they_are() {
        assert_eq!(
            redacted(&[
                "psql",
                "postgres://app:pw@db:5432/shop?sslmode=require",
                "--dsn=mysql://root:pw@localhost/x",
                "DATABASE_URL=redis://:pw@cache",
            ]),
            [
                "psql",
                "postgres://app:REDACTED@db:5432/shop?sslmode=require",
                "--dsn=mysql://root:REDACTED@localhost/x",
                "DATABASE_URL=redis://:REDACTED@cache",
            ]
        );
    }
}
