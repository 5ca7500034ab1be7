//! The web UI's files, embedded in the binary: nothing is fetched from the
//! network. They are built from `ui/` into `ui/dist/` by `ui/build.sh` (see
//! `ui/README.md`); the bundle is committed, so a build of otel-run needs no
//! node. A file added to `ui/dist/` is listed in `FILES` (a test checks).

/// One embedded file.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! dist {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/dist/", $name)))),*]
    };
}

/// Every file of `ui/dist/`, by name.
const FILES: &[(&str, &[u8])] = dist!(
    "index.html",
    "style.css",
    "main.js",
    "api.js",
    "dom.js",
    "list.js",
    "metrics.js",
    "model.js",
    "trace.js",
);

/// The file served at `path` (`/` is `index.html`), if the UI has one.
pub fn get(path: &str) -> Option<Asset> {
    let name = match path {
        "/" => "index.html",
        _ => path.strip_prefix('/')?,
    };
    let (name, body) = FILES.iter().find(|(n, _)| *n == name)?;
    Some(Asset {
        content_type: content_type(name),
        body,
    })
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the binary serves is exactly `ui/dist/`: every file there, with
    /// its bytes and a type a browser runs (a module script must be
    /// JavaScript), and nothing else.
    #[test]
    fn every_built_file_is_served_as_it_is() {
        let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("ui/dist");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dist).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let asset =
                get(&format!("/{name}")).unwrap_or_else(|| panic!("{name} is not embedded"));
            assert_eq!(asset.body, std::fs::read(entry.path()).unwrap(), "{name}");
            assert_ne!(asset.content_type, "application/octet-stream", "{name}");
            names.push(name);
        }
        assert_eq!(
            names.len(),
            FILES.len(),
            "embedded but not in ui/dist: {names:?}"
        );
        assert_eq!(get("/").unwrap().body, get("/index.html").unwrap().body);
        assert_eq!(
            get("/main.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
    }

    #[test]
    fn a_path_outside_the_bundle_is_not_served() {
        for path in [
            "/missing.js",
            "/../Cargo.toml",
            "",
            "/dist/index.html",
            "index.html",
        ] {
            assert!(get(path).is_none(), "{path}");
        }
    }
}
