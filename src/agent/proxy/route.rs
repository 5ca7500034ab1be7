//! Route templates: `http.route` and the span name `{method} {route}` come from the
//! first template that matches a request's path, never from the raw path.

/// The configured templates, in order.
#[derive(Debug, Clone, Default)]
pub struct Routes(Vec<Template>);

#[derive(Debug, Clone)]
struct Template {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    /// `{name}`: any one segment.
    One,
    /// A final `{name*}`: the rest of the path, possibly empty.
    Rest,
}

impl Routes {
    /// Parses templates; returns the first bad one with why it is bad.
    pub fn parse<'a>(templates: impl IntoIterator<Item = &'a str>) -> Result<Routes, String> {
        let mut routes = Vec::new();
        for text in templates {
            let text = text.trim();
            if !text.starts_with('/') {
                return Err(format!("`{text}`: a route template starts with `/`"));
            }
            let parts: Vec<&str> = text[1..].split('/').collect();
            let mut segments = Vec::new();
            for (i, part) in parts.iter().enumerate() {
                let segment = match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(name) if name.ends_with('*') && i + 1 == parts.len() => Segment::Rest,
                    Some(name) if name.is_empty() || name.contains(['{', '}', '*']) => {
                        return Err(format!("`{text}`: bad parameter `{part}`"));
                    }
                    Some(_) => Segment::One,
                    None if part.contains(['{', '}']) => {
                        return Err(format!(
                            "`{text}`: a parameter is a whole segment, `{{name}}`"
                        ));
                    }
                    None => Segment::Literal(part.to_string()),
                };
                segments.push(segment);
            }
            routes.push(Template {
                text: text.to_string(),
                segments,
            });
        }
        Ok(Routes(routes))
    }

    /// The first template matching `path`.
    pub fn find(&self, path: &str) -> Option<&str> {
        let path = path.strip_prefix('/').unwrap_or(path);
        self.0
            .iter()
            .find(|t| matches(&t.segments, path.split('/')))
            .map(|t| t.text.as_str())
    }
}

/// Whether the path's segments (read once, without collecting them) fit the template.
fn matches<'a>(template: &[Segment], mut path: impl Iterator<Item = &'a str>) -> bool {
    for segment in template {
        match (segment, path.next()) {
            (Segment::Rest, _) => return true,
            (Segment::One, Some(p)) if !p.is_empty() => {}
            (Segment::Literal(l), Some(p)) if l == p => {}
            _ => return false,
        }
    }
    path.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_template_wins() {
        let routes = Routes::parse([
            "/users/me",
            "/users/{id}",
            "/users/{id}/orders/{order}",
            "/static/{path*}",
        ])
        .unwrap();
        assert_eq!(routes.find("/users/me"), Some("/users/me"));
        assert_eq!(routes.find("/users/42"), Some("/users/{id}"));
        assert_eq!(
            routes.find("/users/42/orders/7"),
            Some("/users/{id}/orders/{order}")
        );
        assert_eq!(routes.find("/static/css/site.css"), Some("/static/{path*}"));
        assert_eq!(routes.find("/users/"), None);
        assert_eq!(routes.find("/users/42/x"), None);
        assert_eq!(routes.find("/other"), None);
        assert_eq!(routes.find("/users"), None);
        // The rest of a path may be empty.
        assert_eq!(routes.find("/static/"), Some("/static/{path*}"));
        assert_eq!(routes.find("/static"), Some("/static/{path*}"));
        assert_eq!(Routes::default().find("/users/42"), None);
    }

    #[test]
    fn bad_templates_say_why() {
        assert!(
            Routes::parse(["users/{id}"])
                .unwrap_err()
                .contains("starts with `/`")
        );
        assert!(
            Routes::parse(["/u/x{id}"])
                .unwrap_err()
                .contains("whole segment")
        );
        assert!(
            Routes::parse(["/u/{}"])
                .unwrap_err()
                .contains("bad parameter")
        );
    }
}
