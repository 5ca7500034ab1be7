//! OpenTelemetry names as Prometheus names, after the specification's
//! Prometheus compatibility rules: invalid characters become `_`, the unit is
//! a suffix in words (`s` → `_seconds`, `By/s` → `_bytes_per_second`, `1` on a
//! gauge → `_ratio`, `{request}` nothing), and a counter ends in `_total`.

/// The Prometheus name of a metric: `counter` adds `_total`.
pub fn metric(name: &str, unit: &str, counter: bool, gauge: bool) -> String {
    let mut out = sanitize(name, true);
    let suffix = unit_suffix(unit, gauge);
    for word in suffix.iter().filter(|w| !w.is_empty()) {
        if !out.split('_').any(|part| part == word) {
            out.push('_');
            out.push_str(word);
        }
    }
    let out = collapse(&out);
    match counter {
        true if !out.ends_with("_total") => format!("{out}_total"),
        _ => out,
    }
}

/// A label name: invalid characters become `_`, a leading digit is prefixed
/// with `key_`.
pub fn label(name: &str) -> String {
    let out = sanitize(name, false);
    match out.chars().next() {
        Some(c) if c.is_ascii_digit() => format!("key_{out}"),
        _ => out,
    }
}

/// Metric names may hold `:`; label names may not.
fn sanitize(name: &str, colons: bool) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => c,
            ':' if colons => c,
            _ => '_',
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    if colons && out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `a__b_` → `a_b`: what `_` runs the rules made are one.
fn collapse(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.len() > 1 && out.ends_with('_') {
        out.pop();
    }
    out
}

/// The words a UCUM unit adds to a name: `By/s` → `["bytes", "per", "second"]`.
fn unit_suffix(unit: &str, gauge: bool) -> Vec<String> {
    // Annotations in braces are not units: `{request}`, `By{packet}`.
    let mut plain = String::new();
    let mut depth = 0u32;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let plain = plain.trim();
    if plain == "1" {
        return if gauge { vec!["ratio".into()] } else { vec![] };
    }
    let (main, per) = match plain.split_once('/') {
        Some((main, per)) => (main, Some(per)),
        None => (plain, None),
    };
    let mut words = Vec::new();
    if !main.is_empty() {
        words.push(word(main, UNITS));
    }
    if let Some(per) = per.filter(|p| !p.is_empty()) {
        words.push("per".into());
        words.push(word(per, PER_UNITS));
    }
    words
        .into_iter()
        .map(|w| collapse(&sanitize(&w, false)))
        .collect()
}

fn word(unit: &str, table: &[(&str, &str)]) -> String {
    table
        .iter()
        .find(|(ucum, _)| *ucum == unit)
        .map_or_else(|| unit.to_string(), |(_, word)| word.to_string())
}

const UNITS: &[(&str, &str)] = &[
    ("d", "days"),
    ("h", "hours"),
    ("min", "minutes"),
    ("s", "seconds"),
    ("ms", "milliseconds"),
    ("us", "microseconds"),
    ("ns", "nanoseconds"),
    ("By", "bytes"),
    ("KiBy", "kibibytes"),
    ("MiBy", "mebibytes"),
    ("GiBy", "gibibytes"),
    ("TiBy", "tibibytes"),
    ("KBy", "kilobytes"),
    ("MBy", "megabytes"),
    ("GBy", "gigabytes"),
    ("TBy", "terabytes"),
    ("m", "meters"),
    ("V", "volts"),
    ("A", "amperes"),
    ("J", "joules"),
    ("W", "watts"),
    ("g", "grams"),
    ("Cel", "celsius"),
    ("Hz", "hertz"),
    ("%", "percent"),
];

const PER_UNITS: &[(&str, &str)] = &[
    ("s", "second"),
    ("m", "minute"),
    ("h", "hour"),
    ("d", "day"),
    ("w", "week"),
    ("mo", "month"),
    ("y", "year"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_follow_the_compatibility_rules() {
        let cases = [
            (
                ("http.server.request.duration", "s", false, false),
                "http_server_request_duration_seconds",
            ),
            (
                ("orders.placed", "{order}", true, false),
                "orders_placed_total",
            ),
            (("net.io", "By/s", false, true), "net_io_bytes_per_second"),
            (
                ("cpu.utilization", "1", false, true),
                "cpu_utilization_ratio",
            ),
            (("requests", "1", true, false), "requests_total"),
            (("jobs_total", "", true, false), "jobs_total"),
            (("latency_seconds", "s", false, false), "latency_seconds"),
            (("9lives", "", false, true), "_9lives"),
            (
                ("sensor.temperature", "Cel", false, true),
                "sensor_temperature_celsius",
            ),
            (("a..b-c", "", false, true), "a_b_c"),
            (("queue:depth", "", false, true), "queue:depth"),
            (("memory", "MiBy", false, true), "memory_mebibytes"),
            (
                ("odd", "furlongs/fortnight", false, true),
                "odd_furlongs_per_fortnight",
            ),
        ];
        for ((name, unit, counter, gauge), expected) in cases {
            assert_eq!(
                metric(name, unit, counter, gauge),
                expected,
                "{name} [{unit}]"
            );
        }
    }

    #[test]
    fn label_names_are_valid() {
        assert_eq!(label("http.route"), "http_route");
        assert_eq!(label("2xx"), "key_2xx");
        assert_eq!(label("a:b"), "a_b");
        assert_eq!(label(""), "_");
    }
}
