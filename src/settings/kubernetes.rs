//! The `k8s.*` resource attributes from the variables a pod's downward API
//! gives ([`vars::KUBERNETES`]), and how they join the user's
//! OTEL_RESOURCE_ATTRIBUTES: an attribute the user gives keeps the user's value,
//! whichever layer (flag, environment, file) it came from.

use std::collections::HashMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::vars;

/// What may stand unencoded in a value of OTEL_RESOURCE_ATTRIBUTES: the
/// specification's baggage octets less `%`, `,`, `=` and anything that is not
/// plainly safe. Pod, namespace and node names are DNS names and pass as they are.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The attributes the environment gives, in the list's order: each from the
/// first of its variables that is set and not blank.
pub fn detect(env: &HashMap<String, String>) -> Vec<(&'static str, String)> {
    vars::KUBERNETES
        .iter()
        .filter_map(|k| {
            k.vars
                .iter()
                .find_map(|name| env.get(*name).map(|v| v.trim()).filter(|v| !v.is_empty()))
                .map(|value| (k.attribute, value.to_string()))
        })
        .collect()
}

/// The detected attributes the user's own do not name.
pub fn missing<'a>(
    user: &[(String, String)],
    detected: &'a [(&'static str, String)],
) -> impl Iterator<Item = &'a (&'static str, String)> {
    detected
        .iter()
        .filter(move |(key, _)| !user.iter().any(|(k, _)| k == key))
}

/// OTEL_RESOURCE_ATTRIBUTES for the child: the user's text as given, then the
/// added attributes, percent-encoded as the specification reads them.
pub fn child_value<'a>(
    user: Option<&str>,
    added: impl IntoIterator<Item = &'a (&'static str, String)>,
) -> String {
    let mut parts: Vec<String> = user
        .map(|u| u.trim().trim_end_matches(',').to_string())
        .filter(|u| !u.is_empty())
        .into_iter()
        .collect();
    parts.extend(
        added
            .into_iter()
            .map(|(key, value)| format!("{key}={}", utf8_percent_encode(value, VALUE))),
    );
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::parse;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_attribute_comes_from_the_first_variable_set() {
        let detected = detect(&env(&[
            ("POD_NAME", "from-chart"),
            ("K8S_POD_NAME", "from-k8s"),
            ("OTEL_RESOURCE_ATTRIBUTES_POD_UID", "1f2e"),
            ("POD_UID", "other"),
            ("K8S_NAMESPACE_NAME", " "),
            ("POD_NAMESPACE", "shop"),
            ("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "node-1"),
        ]));
        assert_eq!(
            detected,
            [
                ("k8s.pod.name", "from-k8s".to_string()),
                ("k8s.pod.uid", "1f2e".to_string()),
                ("k8s.namespace.name", "shop".to_string()),
                ("k8s.node.name", "node-1".to_string()),
            ]
        );
    }

    #[test]
    fn outside_kubernetes_nothing_is_detected() {
        // Jenkins sets NODE_NAME to its agent's name: not a Kubernetes node.
        assert!(detect(&env(&[("NODE_NAME", "built-in"), ("HOSTNAME", "h")])).is_empty());
    }

    #[test]
    fn the_users_attributes_win_and_the_rest_are_added_encoded() {
        let user = parse::key_values("k8s.pod.name=x,team=a").unwrap();
        let detected = vec![
            ("k8s.pod.name", "pod-1".to_string()),
            ("k8s.node.name", "node,1=a b%".to_string()),
        ];
        let added: Vec<_> = missing(&user, &detected).collect();
        assert_eq!(added, [&("k8s.node.name", "node,1=a b%".to_string())]);
        let text = child_value(Some("k8s.pod.name=x,team=a,"), added);
        assert_eq!(
            text,
            "k8s.pod.name=x,team=a,k8s.node.name=node%2C1%3Da%20b%25"
        );
        let read = parse::key_values(&text).unwrap();
        assert_eq!(read[2], ("k8s.node.name".into(), "node,1=a b%".into()));
        assert_eq!(
            child_value(None, &detected[..1]),
            "k8s.pod.name=pod-1",
            "without the user's, only the detected ones"
        );
    }
}
