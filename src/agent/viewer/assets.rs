//! The web UI's files, embedded in the binary: nothing is fetched from the
//! network. They are built from `ui/` (see `ui/README.md`).

/// One embedded file.
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// The file served at `path` (`/` is `index.html`), if the UI has one.
pub fn get(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(Asset {
            content_type: "text/html; charset=utf-8",
            body: b"<!doctype html><title>otel-run</title><p>The viewer's UI is not built yet.",
        }),
        _ => None,
    }
}
