//! Swagger UI at `/`, as BentoML serves it: the page at `/` loads its script
//! and style from `/static_content/` (BentoML's prefix) and renders this
//! server's `/docs.json` in the browser, with "Try it out" on.
//!
//! The assets are the npm package `swagger-ui-dist` 5.32.6 (Apache-2.0),
//! committed under `api-server/assets/swagger-ui/` (its README gives the
//! checksum and how to update) and compiled in with `include_bytes!`: no
//! build step fetches them and the server needs no network to serve them.
//! An API is served at `/<name>`, so `/static_content/...` can only collide
//! with an API whose name itself contains a `/`.

/// The prefix of the UI's assets.
pub(crate) const PREFIX: &str = "/static_content/";

/// The page at `/`.
pub(crate) const INDEX: &[u8] = include_bytes!("../assets/swagger-ui/index.html");

/// `(path under PREFIX, content type, bytes)` of every asset.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "swagger-initializer.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/swagger-ui/swagger-initializer.js"),
    ),
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/swagger-ui/swagger-ui.css"),
    ),
    (
        "favicon-32x32.png",
        "image/png",
        include_bytes!("../assets/swagger-ui/favicon-32x32.png"),
    ),
    (
        "LICENSE",
        "text/plain; charset=utf-8",
        include_bytes!("../assets/swagger-ui/LICENSE"),
    ),
];

/// The content type and bytes of the asset at `path`, if `path` is one.
pub(crate) fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let name = path.strip_prefix(PREFIX)?;
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ct, bytes)| (*ct, *bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_assets_that_are_served() {
        let page = String::from_utf8_lossy(INDEX);
        for src in page.split("\"./").skip(1) {
            let path = format!("/{}", src.split('"').next().unwrap_or_default());
            assert!(
                asset(&path).is_some(),
                "{path} is referenced but not served"
            );
        }
        assert!(page.contains("swagger-ui-bundle.js"));
    }

    #[test]
    fn unknown_paths_are_not_assets() {
        assert!(asset("/static_content/../Cargo.toml").is_none());
        assert!(asset("/static_content/").is_none());
        assert!(asset("/swagger-ui.css").is_none());
        assert!(asset("/static_content/swagger-ui.css").is_some());
    }

    #[test]
    fn the_initializer_reads_this_servers_document() {
        let (_, js) = asset("/static_content/swagger-initializer.js").unwrap_or_default();
        assert!(String::from_utf8_lossy(js).contains("\"./docs.json\""));
    }
}
