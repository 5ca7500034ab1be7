//! The `k8s.*` resource attributes from the variables a pod's downward API
//! gives ([`vars::KUBERNETES`]), and how they join the user's
//! OTEL_RESOURCE_ATTRIBUTES: an attribute the user gives keeps the user's value,
//! whichever layer (flag, environment, file) it came from.

use rustc_hash::FxHashMap as HashMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{Settings, vars};

impl Settings {
    /// The resource attributes: OTEL_RESOURCE_ATTRIBUTES, then the `k8s.*`
    /// attributes of the downward API that it does not name.
    pub fn resource_attributes(&self) -> Vec<(String, String)> {
        let mut attributes = self.key_values(&vars::RESOURCE_ATTRIBUTES);
        let added: Vec<_> = missing(&attributes, &self.kubernetes)
            .map(|d| (d.key.to_string(), d.value.clone()))
            .collect();
        attributes.extend(added);
        attributes
    }

    /// The child's OTEL_RESOURCE_ATTRIBUTES, when otel-run adds `k8s.*`
    /// attributes to the user's; `None` leaves the child the user's own.
    pub fn child_resource_attributes(&self) -> Option<String> {
        let user = self.key_values(&vars::RESOURCE_ATTRIBUTES);
        let mut added = missing(&user, &self.kubernetes).peekable();
        added.peek()?;
        Some(child_value(self.text(&vars::RESOURCE_ATTRIBUTES), added))
    }
}

/// A `k8s.*` attribute found in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub key: &'static str,
    pub value: String,
    /// The variable it was read from.
    pub var: &'static str,
}

/// What stands unencoded in a value otel-run adds to OTEL_RESOURCE_ATTRIBUTES:
/// letters, digits and `-._~`. `,`, `=` and `%` must be encoded; pod, namespace
/// and node names (DNS names) pass as they are.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The attributes the environment gives, in the list's order: each from the
/// first of its variables that is set and not blank.
pub fn detect(env: &HashMap<String, String>) -> Vec<Detected> {
    vars::KUBERNETES
        .iter()
        .filter_map(|k| {
            k.vars.iter().find_map(|&var| {
                let value = env.get(var).map(|v| v.trim()).filter(|v| !v.is_empty())?;
                Some(Detected {
                    key: k.attribute,
                    value: value.to_string(),
                    var,
                })
            })
        })
        .collect()
}

/// True when the user's attributes name `key`: the user's value is kept.
pub fn given(user: &[(String, String)], key: &str) -> bool {
    user.iter().any(|(k, _)| k == key)
}

/// The detected attributes the user's own do not name.
fn missing<'a>(
    user: &[(String, String)],
    detected: &'a [Detected],
) -> impl Iterator<Item = &'a Detected> {
    detected.iter().filter(move |d| !given(user, d.key))
}

/// OTEL_RESOURCE_ATTRIBUTES for the child: the user's text as given, then the
/// added attributes, percent-encoded as the specification reads them.
fn child_value<'a>(user: Option<&str>, added: impl IntoIterator<Item = &'a Detected>) -> String {
    let mut parts: Vec<String> = user
        .map(|u| u.trim().trim_end_matches(',').to_string())
        .filter(|u| !u.is_empty())
        .into_iter()
        .collect();
    parts.extend(
        added
            .into_iter()
            .map(|d| format!("{}={}", d.key, utf8_percent_encode(&d.value, VALUE))),
    );
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::parse;
    use crate::settings::tests::inputs;

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
        let found: Vec<_> = detected.iter().map(|d| (d.key, &*d.value, d.var)).collect();
        assert_eq!(
            found,
            [
                ("k8s.pod.name", "from-k8s", "K8S_POD_NAME"),
                ("k8s.pod.uid", "1f2e", "OTEL_RESOURCE_ATTRIBUTES_POD_UID"),
                ("k8s.namespace.name", "shop", "POD_NAMESPACE"),
                (
                    "k8s.node.name",
                    "node-1",
                    "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME"
                ),
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
        let detected = detect(&env(&[
            ("K8S_POD_NAME", "pod-1"),
            ("K8S_NODE_NAME", "node,1=a b%"),
        ]));
        let added: Vec<_> = missing(&user, &detected).collect();
        assert_eq!(added, [&detected[1]]);
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

    #[test]
    fn downward_api_attributes_join_the_resource_without_overriding_the_users() {
        let pod = [
            ("K8S_POD_NAME", "shop-7d9f8-x2x4q"),
            ("POD_NAMESPACE", "shop"),
            ("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "node-1"),
        ];
        let s = Settings::resolve(&inputs(&[], &pod, &[])).unwrap();
        assert_eq!(
            s.resource_attributes(),
            [
                ("k8s.pod.name".to_string(), "shop-7d9f8-x2x4q".to_string()),
                ("k8s.namespace.name".into(), "shop".into()),
                ("k8s.node.name".into(), "node-1".into()),
            ]
        );
        assert_eq!(
            s.child_resource_attributes().as_deref(),
            Some("k8s.pod.name=shop-7d9f8-x2x4q,k8s.namespace.name=shop,k8s.node.name=node-1")
        );
        // The user's value wins from every layer: file, environment, flag.
        let given = "k8s.pod.name=x,team=a";
        let attrs = vars::RESOURCE_ATTRIBUTES.name;
        for s in [
            inputs(&[(attrs, given)], &pod, &[]),
            inputs(&[], &[pod[0], pod[1], pod[2], (attrs, given)], &[]),
            inputs(&[], &pod, &[(attrs, given)]),
        ]
        .map(|i| Settings::resolve(&i).unwrap())
        {
            let resource = s.resource_attributes();
            assert_eq!(resource[0], ("k8s.pod.name".into(), "x".into()));
            assert_eq!(resource.len(), 4, "{resource:?}");
            assert_eq!(
                s.child_resource_attributes().as_deref(),
                Some("k8s.pod.name=x,team=a,k8s.namespace.name=shop,k8s.node.name=node-1")
            );
        }
        // Nothing to add: the child keeps the user's variable as it is.
        let all = "k8s.pod.name=x,k8s.namespace.name=y,k8s.node.name=z";
        let s =
            Settings::resolve(&inputs(&[], &[pod[0], pod[1], pod[2], (attrs, all)], &[])).unwrap();
        assert_eq!(s.child_resource_attributes(), None);
        let s = Settings::resolve(&inputs(&[], &[], &[])).unwrap();
        assert_eq!(s.child_resource_attributes(), None);
    }

    #[test]
    fn downward_api_variables_are_read_from_the_environment() {
        let mut inputs = inputs(&[], &[], &[]);
        inputs.read_env([
            ("K8S_NODE_NAME".into(), "node-1".into()),
            ("OTEL_RESOURCE_ATTRIBUTES_POD_NAME".into(), "pod-1".into()),
            ("NODE_NAME".into(), "jenkins-agent".into()),
        ]);
        let s = Settings::resolve(&inputs).unwrap();
        let found: Vec<_> = s.kubernetes.iter().map(|d| (d.key, &*d.value)).collect();
        assert_eq!(
            found,
            [("k8s.pod.name", "pod-1"), ("k8s.node.name", "node-1")]
        );
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }
}
