//! `--uprobe TARGET:PATTERN` specifications and the globs they match names with.

/// One `--uprobe` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uprobe {
    /// A path or name of a binary or shared library; empty for the command itself.
    pub target: String,
    /// A glob over demangled function names (`*` any run of characters, `?` one).
    pub pattern: String,
}

impl Uprobe {
    /// Parses `TARGET:PATTERN`. The separator is the first single `:`, so the
    /// `::` of Rust and C++ paths belong to the pattern; without one, the whole
    /// text is a pattern on the command itself.
    pub fn parse(spec: &str) -> Result<Uprobe, String> {
        let spec = spec.trim();
        let bytes = spec.as_bytes();
        let split = (0..bytes.len()).find(|&i| {
            bytes[i] == b':' && bytes.get(i + 1) != Some(&b':') && (i == 0 || bytes[i - 1] != b':')
        });
        let (target, pattern) = match split {
            Some(i) => (&spec[..i], &spec[i + 1..]),
            None => ("", spec),
        };
        if pattern.is_empty() {
            return Err(format!("`{spec}` has no function pattern after the `:`"));
        }
        Ok(Uprobe {
            target: target.to_string(),
            pattern: pattern.to_string(),
        })
    }

    /// Parses the list OTEL_RUN_UPROBE holds: entries separated by commas outside
    /// brackets, so `HashMap<K, V>::insert` stays one pattern.
    pub fn parse_list(list: &str) -> Result<Vec<Uprobe>, String> {
        let mut entries = Vec::new();
        let (mut depth, mut start) = (0i32, 0);
        for (i, c) in list.char_indices() {
            match c {
                '<' | '(' | '[' => depth += 1,
                '>' | ')' | ']' => depth -= 1,
                ',' if depth <= 0 => {
                    entries.push(&list[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        entries.push(&list[start..]);
        entries
            .into_iter()
            .filter(|e| !e.trim().is_empty())
            .map(Uprobe::parse)
            .collect()
    }
}

/// Whether `name` matches the glob `pattern` as a whole.
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative glob with one backtrack point: linear in practice.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_single_colon() {
        let u = Uprobe::parse("./target/release/api:api::handlers::*").unwrap();
        assert_eq!(u.target, "./target/release/api");
        assert_eq!(u.pattern, "api::handlers::*");
        let u = Uprobe::parse(":myapp::handlers::*").unwrap();
        assert_eq!(u.target, "");
        assert_eq!(u.pattern, "myapp::handlers::*");
        let u = Uprobe::parse("libc.so.6:malloc").unwrap();
        assert_eq!(
            (u.target.as_str(), u.pattern.as_str()),
            ("libc.so.6", "malloc")
        );
        let u = Uprobe::parse("app::run").unwrap();
        assert_eq!((u.target.as_str(), u.pattern.as_str()), ("", "app::run"));
    }

    #[test]
    fn empty_pattern_is_an_error() {
        let err = Uprobe::parse("./app:").unwrap_err();
        assert!(err.contains("no function pattern"), "{err}");
    }

    #[test]
    fn lists_split_outside_brackets() {
        let list = Uprobe::parse_list(":a::b, lib.so:HashMap<K, V>::insert,").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].pattern, "HashMap<K, V>::insert");
    }

    #[test]
    fn globs() {
        assert!(matches("app::handlers::*", "app::handlers::get"));
        assert!(matches("*", "anything"));
        assert!(matches("work?", "work1"));
        assert!(matches("*::run*", "a::b::run_all"));
        assert!(!matches("app::*", "other::app::x"));
        assert!(!matches("work", "work_nested"));
        assert!(matches("a*b*c", "aXbYbZc"));
    }
}
