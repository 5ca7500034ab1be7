//! CI detection: the OpenTelemetry CI/CD semantic conventions (`cicd.*`, `vcs.*`)
//! for the process span, read from the CI provider's own variables.
//!
//! One table per provider maps an attribute to the variables it is read from, in
//! order of preference; a `{VAR}` template joins several. Unset or empty
//! variables leave the attribute out.

use crate::launch::Exit;

/// A CI provider, detected from its marker variable.
struct Provider {
    name: &'static str,
    /// The variable that says the provider runs this job, and the value it has
    /// (`None`: any non-empty value).
    marker: (&'static str, Option<&'static str>),
    attributes: &'static [(&'static str, &'static str)],
}

const GITHUB: Provider = Provider {
    name: "github_actions",
    marker: ("GITHUB_ACTIONS", Some("true")),
    attributes: &[
        ("cicd.pipeline.name", "{GITHUB_WORKFLOW}"),
        ("cicd.pipeline.run.id", "{GITHUB_RUN_ID}"),
        (
            "cicd.pipeline.run.url.full",
            "{GITHUB_SERVER_URL}/{GITHUB_REPOSITORY}/actions/runs/{GITHUB_RUN_ID}/attempts/{GITHUB_RUN_ATTEMPT}",
        ),
        ("cicd.pipeline.task.name", "{GITHUB_JOB}"),
        // GitHub gives jobs no id in the environment; run, attempt and job name are unique.
        (
            "cicd.pipeline.task.run.id",
            "{GITHUB_RUN_ID}-{GITHUB_RUN_ATTEMPT}-{GITHUB_JOB}",
        ),
        ("vcs.ref.head.revision", "{GITHUB_SHA}"),
        ("vcs.ref.head.name", "{GITHUB_HEAD_REF}|{GITHUB_REF_NAME}"),
        (
            "vcs.repository.url.full",
            "{GITHUB_SERVER_URL}/{GITHUB_REPOSITORY}",
        ),
        ("cicd.worker.name", "{RUNNER_NAME}"),
    ],
};

const GITLAB: Provider = Provider {
    name: "gitlab_ci",
    marker: ("GITLAB_CI", Some("true")),
    attributes: &[
        ("cicd.pipeline.name", "{CI_PIPELINE_NAME}|{CI_PROJECT_PATH}"),
        ("cicd.pipeline.run.id", "{CI_PIPELINE_ID}"),
        ("cicd.pipeline.run.url.full", "{CI_PIPELINE_URL}"),
        ("cicd.pipeline.task.name", "{CI_JOB_NAME}"),
        ("cicd.pipeline.task.run.id", "{CI_JOB_ID}"),
        ("cicd.pipeline.task.run.url.full", "{CI_JOB_URL}"),
        ("vcs.ref.head.revision", "{CI_COMMIT_SHA}"),
        ("vcs.ref.head.name", "{CI_COMMIT_REF_NAME}"),
        ("vcs.repository.url.full", "{CI_PROJECT_URL}"),
        ("cicd.worker.name", "{CI_RUNNER_DESCRIPTION}"),
    ],
};

const JENKINS: Provider = Provider {
    name: "jenkins",
    marker: ("JENKINS_URL", None),
    attributes: &[
        ("cicd.pipeline.name", "{JOB_NAME}"),
        ("cicd.pipeline.run.id", "{BUILD_NUMBER}|{BUILD_ID}"),
        ("cicd.pipeline.run.url.full", "{BUILD_URL}"),
        ("cicd.pipeline.task.name", "{STAGE_NAME}"),
        ("vcs.ref.head.revision", "{GIT_COMMIT}"),
        ("vcs.ref.head.name", "{GIT_BRANCH}"),
        ("vcs.repository.url.full", "{GIT_URL}"),
        ("cicd.worker.name", "{NODE_NAME}"),
    ],
};

const BUILDKITE: Provider = Provider {
    name: "buildkite",
    marker: ("BUILDKITE", Some("true")),
    attributes: &[
        (
            "cicd.pipeline.name",
            "{BUILDKITE_PIPELINE_NAME}|{BUILDKITE_PIPELINE_SLUG}",
        ),
        ("cicd.pipeline.run.id", "{BUILDKITE_BUILD_ID}"),
        ("cicd.pipeline.run.url.full", "{BUILDKITE_BUILD_URL}"),
        (
            "cicd.pipeline.task.name",
            "{BUILDKITE_LABEL}|{BUILDKITE_STEP_KEY}",
        ),
        ("cicd.pipeline.task.run.id", "{BUILDKITE_JOB_ID}"),
        ("vcs.ref.head.revision", "{BUILDKITE_COMMIT}"),
        ("vcs.ref.head.name", "{BUILDKITE_BRANCH}"),
        ("vcs.repository.url.full", "{BUILDKITE_REPO}"),
        ("cicd.worker.name", "{BUILDKITE_AGENT_NAME}"),
    ],
};

/// Any other CI that follows the common `CI=true` convention.
const GENERIC: Provider = Provider {
    name: "generic",
    marker: ("CI", Some("true")),
    attributes: &[],
};

const PROVIDERS: [&Provider; 5] = [&GITHUB, &GITLAB, &JENKINS, &BUILDKITE, &GENERIC];

/// The CI job otel-run runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ci {
    pub provider: &'static str,
    pub attributes: Vec<(&'static str, String)>,
}

impl Ci {
    /// Detects the CI provider from the environment (`lookup` reads a variable).
    pub fn detect(lookup: impl Fn(&str) -> Option<String>) -> Option<Ci> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let provider = PROVIDERS.iter().find(|p| match p.marker {
            (var, Some(value)) => get(var).is_some_and(|v| v.eq_ignore_ascii_case(value)),
            (var, None) => get(var).is_some(),
        })?;
        let attributes = provider
            .attributes
            .iter()
            .filter_map(|(key, template)| {
                // `a|b`: the first alternative whose variables are all set.
                template
                    .split('|')
                    .find_map(|alternative| expand(alternative, &get))
                    .map(|value| (*key, value))
            })
            .collect();
        Some(Ci {
            provider: provider.name,
            attributes,
        })
    }

    /// The attribute's value, if detected.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Fills `{VAR}` placeholders; `None` if any variable is unset.
fn expand(template: &str, get: &impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = start + rest[start..].find('}')?;
        out.push_str(&rest[..start]);
        out.push_str(&get(&rest[start + 1..end])?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// `cicd.pipeline.task.run.result` for a step that ended so.
pub fn result(exit: &Exit) -> &'static str {
    match exit.signal {
        Some(libc::SIGINT | libc::SIGTERM | libc::SIGHUP) => "cancellation",
        Some(_) => "error",
        None if exit.code == 0 => "success",
        None => "failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn detect(vars: &[(&str, &str)]) -> Option<Ci> {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ci::detect(|name| env.get(name).cloned())
    }

    #[test]
    fn github_actions() {
        let ci = detect(&[
            ("CI", "true"),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_WORKFLOW", "CI"),
            ("GITHUB_RUN_ID", "42"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_JOB", "test"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "acme/shop"),
            ("GITHUB_SHA", "abc123"),
            ("GITHUB_HEAD_REF", ""),
            ("GITHUB_REF_NAME", "main"),
        ])
        .unwrap();
        assert_eq!(ci.provider, "github_actions");
        assert_eq!(ci.get("cicd.pipeline.name"), Some("CI"));
        assert_eq!(
            ci.get("cicd.pipeline.run.url.full"),
            Some("https://github.com/acme/shop/actions/runs/42/attempts/2")
        );
        assert_eq!(ci.get("cicd.pipeline.task.run.id"), Some("42-2-test"));
        assert_eq!(
            ci.get("vcs.ref.head.name"),
            Some("main"),
            "an empty GITHUB_HEAD_REF falls back"
        );
        assert_eq!(
            ci.get("cicd.worker.name"),
            None,
            "unset variables leave the attribute out"
        );
    }

    #[test]
    fn gitlab_prefers_the_pipeline_name_and_falls_back_to_the_project() {
        let ci = detect(&[
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_PATH", "acme/shop"),
            ("CI_JOB_ID", "7"),
        ])
        .unwrap();
        assert_eq!(ci.get("cicd.pipeline.name"), Some("acme/shop"));
        assert_eq!(ci.get("cicd.pipeline.task.run.id"), Some("7"));
    }

    #[test]
    fn jenkins_and_buildkite_and_generic() {
        assert_eq!(
            detect(&[("JENKINS_URL", "http://ci/"), ("JOB_NAME", "shop")])
                .unwrap()
                .provider,
            "jenkins"
        );
        assert_eq!(
            detect(&[("BUILDKITE", "true")]).unwrap().provider,
            "buildkite"
        );
        let generic = detect(&[("CI", "true")]).unwrap();
        assert_eq!((generic.provider, generic.attributes.len()), ("generic", 0));
        assert_eq!(detect(&[("CI", "false")]), None);
        assert_eq!(detect(&[]), None);
    }

    #[test]
    fn results_from_the_exit() {
        let exit = |code, signal| Exit {
            code,
            signal,
            from_terminal: false,
        };
        assert_eq!(result(&exit(0, None)), "success");
        assert_eq!(result(&exit(2, None)), "failure");
        assert_eq!(result(&exit(143, Some(libc::SIGTERM))), "cancellation");
        assert_eq!(result(&exit(139, Some(libc::SIGSEGV))), "error");
    }
}
