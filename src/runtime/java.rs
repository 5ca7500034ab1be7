//! Java: the OpenTelemetry Java agent, added to JAVA_TOOL_OPTIONS so every JVM the
//! command starts (`java`, or a build tool's) loads it.

use std::path::{Path, PathBuf};

use super::{Note, Plan};

/// Commands that start a JVM.
const LAUNCHERS: &[&str] = &["java", "mvn", "mvnw", "gradle", "gradlew"];

pub fn is_java(program: &Path) -> bool {
    program
        .file_name()
        .is_some_and(|n| LAUNCHERS.contains(&n.to_string_lossy().as_ref()))
}

/// Where `otel-run bootstrap` puts the agent it downloads.
pub fn downloaded_agent() -> Option<PathBuf> {
    super::data_dir().map(|d| d.join("java/opentelemetry-javaagent.jar"))
}

/// Appends `-javaagent:JAR` to JAVA_TOOL_OPTIONS, keeping what was there.
pub fn inject(plan: &mut Plan, agent: Option<PathBuf>) {
    let hint = "`otel-run bootstrap --java` downloads the agent from Maven Central, or give one with `--java-agent JAR`";
    let Some(jar) = agent else {
        plan.notes.push(Note::new(
            "no OpenTelemetry Java agent is available; the program runs uninstrumented",
            hint,
        ));
        return;
    };
    if !jar.is_file() {
        plan.notes.push(Note::new(
            format!(
                "the Java agent `{}` does not exist; the program runs uninstrumented",
                jar.display()
            ),
            hint,
        ));
        return;
    }
    let option = format!("-javaagent:{}", jar.display());
    plan.extend("JAVA_TOOL_OPTIONS", |existing| {
        if existing.trim().is_empty() {
            option
        } else {
            format!("{existing} {option}")
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launchers() {
        assert!(is_java(Path::new("/usr/bin/java")));
        assert!(is_java(Path::new("./mvnw")));
        assert!(!is_java(Path::new("/usr/bin/javac")));
    }

    #[test]
    fn a_missing_jar_is_reported_and_nothing_injected() {
        let mut plan = Plan::default();
        inject(&mut plan, Some(PathBuf::from("/nonexistent/agent.jar")));
        assert!(plan.set.is_empty());
        assert!(plan.notes[0].message.contains("/nonexistent/agent.jar"));
    }
}
