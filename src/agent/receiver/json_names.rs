//! OTLP/JSON member names as protobuf's field names: `resource_metrics`,
//! `data_points`, `string_value`. The OTLP specification writes JSON members in
//! lowerCamelCase, but protobuf's JSON mapping accepts the field names too, and
//! the OpenTelemetry Collector takes both; devices posting hand-written JSON
//! (an ESP32's `urequests.post(json=...)`) often use the field names.
//!
//! OTLP has no maps: every object key of a request is a field name (attribute
//! keys are values of `key` members), so each key holding `_` is rewritten as
//! protobuf names its JSON form, and nothing else in the body changes.

use std::borrow::Cow;

use super::json;

/// `body` with every object key holding `_` in lowerCamelCase; borrowed when no
/// key needs it. Malformed JSON is left for the walk to reject: keys are found
/// only as far as the body is well formed.
pub fn lower_camel_keys(body: &[u8]) -> Cow<'_, [u8]> {
    if !body.contains(&b'_') {
        return Cow::Borrowed(body);
    }
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    // Whether each open container is an object, innermost last.
    let mut objects: Vec<bool> = Vec::new();
    // After `{` or `,` inside an object, the next string is a key.
    let mut key_next = false;
    let mut pos = 0;
    while pos < body.len() {
        match body[pos] {
            // Deeper than the walk accepts: it rejects the request.
            b'{' | b'[' if objects.len() > json::MAX_DEPTH as usize => break,
            b'{' => {
                objects.push(true);
                key_next = true;
            }
            b'[' => {
                objects.push(false);
                key_next = false;
            }
            b'}' | b']' => {
                objects.pop();
                key_next = false;
            }
            b',' => key_next = objects.last() == Some(&true),
            b'"' => {
                let Some(end) = string_end(body, pos) else {
                    break;
                };
                let key = &body[pos + 1..end];
                if key_next && key.contains(&b'_') && !key.contains(&b'\\') {
                    let out = out.get_or_insert_with(|| Vec::with_capacity(body.len()));
                    out.extend_from_slice(&body[copied..pos + 1]);
                    push_lower_camel(out, key);
                    copied = end;
                }
                key_next = false;
                pos = end;
            }
            _ => {}
        }
        pos += 1;
    }
    match out {
        None => Cow::Borrowed(body),
        Some(mut out) => {
            out.extend_from_slice(&body[copied..]);
            Cow::Owned(out)
        }
    }
}

/// The index of the quote closing the string opened at `start`.
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut pos = start + 1;
    while pos < body.len() {
        match body[pos] {
            b'\\' => pos += 2,
            b'"' => return Some(pos),
            _ => pos += 1,
        }
    }
    None
}

/// protobuf's JSON name of a field: each `_` dropped and the letter after it
/// upper-cased (`time_unix_nano` → `timeUnixNano`).
fn push_lower_camel(out: &mut Vec<u8>, field: &[u8]) {
    let mut upper = false;
    for &b in field {
        if b == b'_' {
            upper = true;
        } else if upper {
            out.push(b.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renamed(body: &str) -> String {
        String::from_utf8(lower_camel_keys(body.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn keys_take_their_json_names_and_values_stay() {
        assert_eq!(
            renamed(
                r#"{"resource_metrics":[{"scope_metrics":[{"metrics":[{"name":"a_b","gauge":{"data_points":[{"as_double":1,"time_unix_nano":"2","attributes":[{"key":"x_y","value":{"string_value":"v_w"}}]}]}}]}]}]}"#
            ),
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"a_b","gauge":{"dataPoints":[{"asDouble":1,"timeUnixNano":"2","attributes":[{"key":"x_y","value":{"stringValue":"v_w"}}]}]}}]}]}]}"#
        );
    }

    #[test]
    fn strings_in_arrays_and_escaped_quotes_are_values() {
        let body = r#"{"a_b": ["c_d", "e\"_f", {"g_h" : "i_j"}], "k" :"l_m"}"#;
        assert_eq!(
            renamed(body),
            r#"{"aB": ["c_d", "e\"_f", {"gH" : "i_j"}], "k" :"l_m"}"#
        );
    }

    #[test]
    fn bodies_without_such_keys_are_borrowed() {
        let camel = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"x_y"}]}]}]}"#;
        assert!(matches!(lower_camel_keys(camel), Cow::Borrowed(_)));
        assert!(matches!(lower_camel_keys(b"{}"), Cow::Borrowed(_)));
    }

    #[test]
    fn malformed_and_too_deep_bodies_are_left_to_the_walk() {
        for body in [
            &br#"{"a_b"#[..],
            br#"{"a_b":"#,
            br#"]]]}}"a_b":1"#,
            br#""\"#,
            br#"{"a_b\"#,
            b"_",
        ] {
            let _ = lower_camel_keys(body);
        }
        let deep = format!("{}\"a_b\":1", "[{".repeat(10_000));
        assert_eq!(lower_camel_keys(deep.as_bytes()), deep.as_bytes());
    }
}
