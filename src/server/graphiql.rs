//! GraphiQL served from the binary, with no CDN: the page `GET /graphql`
//! shows in a browser, and the files it loads under `/graphiql/`.
//!
//! The vendored builds (GraphiQL 4.1.2 UMD, React and ReactDOM 18.3.1 UMD;
//! versions, npm integrity hashes and licences in `assets/graphiql/README.md`)
//! and our own start-up script and stylesheet are compiled in with
//! `include_bytes!`, so the page works on a machine without internet access
//! and always matches the server that serves it. Each file is served under a
//! name carrying the first 64 bits of its SHA-256, so it can be cached for a
//! year as `immutable`: a different build links different names.
//!
//! The page has no inline script; its `Content-Security-Policy` (added by
//! [`page_response`]) lets scripts come from this origin only. Routing
//! lives in the parent module; whether a `GET /graphql` is a query or a
//! browser wanting this page is decided in `graphql.rs`.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, REFERRER_POLICY,
    VARY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};

/// Where the page sends GraphQL requests.
const ENDPOINT: &str = "/graphql";

/// Prefix of the asset routes.
const ASSET_PREFIX: &str = "/graphiql/";

/// Assets are named by content hash, so a cached copy can never be stale:
/// keep it a year (the longest value HTTP caches are asked to honour) and
/// never revalidate.
const IMMUTABLE: HeaderValue = HeaderValue::from_static("public, max-age=31536000, immutable");

/// The page names the current asset hashes, so it must be revalidated each
/// time (it is small).
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

/// The page's policy. Scripts, stylesheets and requests stay on this origin;
/// the fonts and icons GraphiQL's stylesheet embeds are `data:` URLs. Inline
/// styles are allowed because the dialogs' scroll lock (react-remove-scroll,
/// bundled in GraphiQL) inserts a `<style>` element with computed sizes; no
/// inline script is needed or allowed.
const PAGE_POLICY: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
);

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// One file of `assets/graphiql/`, as compiled in.
struct Asset {
    /// File name in `assets/graphiql/`.
    file: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($file:literal, $content_type:expr) => {
        Asset {
            file: $file,
            content_type: $content_type,
            bytes: include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/assets/graphiql/",
                $file
            )),
        }
    };
}

/// Stylesheets in the order the page links them.
const STYLESHEETS: [Asset; 2] = [
    asset!("graphiql-4.1.2.min.css", CSS),
    asset!("anigo-graphiql.css", CSS),
];

/// Scripts in the order the page runs them: GraphiQL's UMD build needs the
/// `React` and `ReactDOM` globals; our start-up script needs all three.
const SCRIPTS: [Asset; 4] = [
    asset!("react-18.3.1.production.min.js", JAVASCRIPT),
    asset!("react-dom-18.3.1.production.min.js", JAVASCRIPT),
    asset!("graphiql-4.1.2.min.js", JAVASCRIPT),
    asset!("anigo-graphiql.js", JAVASCRIPT),
];

/// An asset with the name and validator it is served under.
struct Served {
    /// `{stem}.{hash}.{extension}`, e.g. `graphiql-4.1.2.min.0123456789abcdef.js`.
    name: String,
    /// The same hash as a strong `ETag`.
    etag: HeaderValue,
    asset: &'static Asset,
}

impl Served {
    fn new(asset: &'static Asset) -> Self {
        let hash = crate::cache::response::hex(&Sha256::digest(asset.bytes)[..8]);
        let (stem, extension) = asset.file.rsplit_once('.').unwrap_or((asset.file, ""));
        Self {
            name: format!("{stem}.{hash}.{extension}"),
            // Hex digits and quotes only, always a valid header value.
            etag: HeaderValue::from_str(&format!("\"{hash}\""))
                .unwrap_or(HeaderValue::from_static("\"\"")),
            asset,
        }
    }

    /// The route that serves it.
    fn path(&self) -> String {
        format!("{ASSET_PREFIX}{}", self.name)
    }
}

/// Stylesheets then scripts, hashed once on first use.
static SERVED: LazyLock<Vec<Served>> = LazyLock::new(|| {
    STYLESHEETS
        .iter()
        .chain(SCRIPTS.iter())
        .map(Served::new)
        .collect()
});

/// The page, built once from the served names.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    let (stylesheets, scripts) = SERVED.split_at(STYLESHEETS.len());
    let links: String = stylesheets
        .iter()
        .map(|css| format!("    <link rel=\"stylesheet\" href=\"{}\">\n", css.path()))
        .collect();
    let script_tags: String = scripts
        .iter()
        .map(|js| format!("    <script src=\"{}\"></script>\n", js.path()))
        .collect();
    format!(
        "<!doctype html>\n\
         <html lang=\"en\">\n\
         \x20 <head>\n\
         \x20   <meta charset=\"utf-8\">\n\
         \x20   <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         \x20   <title>AniGo API</title>\n\
         \x20   <link rel=\"icon\" href=\"data:,\">\n\
         {links}\
         \x20 </head>\n\
         \x20 <body>\n\
         \x20   <div id=\"graphiql\" data-endpoint=\"{ENDPOINT}\">Loading GraphiQL…</div>\n\
         {script_tags}\
         \x20 </body>\n\
         </html>\n"
    )
});

/// The GraphiQL page's HTML.
pub(super) fn page() -> &'static str {
    &PAGE
}

/// The `/graphiql/{file}` asset routes.
pub(super) fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new().route("/graphiql/{file}", get(asset))
}

/// The GraphiQL page with its security and caching headers. It varies
/// with `Accept`: the same `GET /graphql` answers JSON clients with a
/// GraphQL error instead.
pub(super) fn page_response() -> Response {
    let mut response = axum::response::Html(page()).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, PAGE_POLICY);
    headers.insert(CACHE_CONTROL, NO_CACHE);
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(VARY, HeaderValue::from_static("accept"));
    response
}

/// One asset by its served name; `304` when the client holds it already.
async fn asset(Path(file): Path<String>, request_headers: HeaderMap) -> Response {
    let Some(served) = SERVED.iter().find(|served| served.name == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let headers = [
        (ETAG, served.etag.clone()),
        (CACHE_CONTROL, IMMUTABLE),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ];
    if holds(&request_headers, &served.etag) {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static(served.asset.content_type),
        )],
        served.asset.bytes,
    )
        .into_response()
}

/// Whether `If-None-Match` lists `etag` (or `*`), weak tags compared weakly.
fn holds(request_headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    request_headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == ours)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    /// Every `src="…"` and `href="…"` in the page.
    fn references(html: &str) -> Vec<&str> {
        ["src=\"", "href=\""]
            .iter()
            .flat_map(|attribute| html.split(attribute).skip(1))
            .filter_map(|rest| rest.split('"').next())
            .collect()
    }

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = axum::http::Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(IF_NONE_MATCH, tag);
        }
        routes::<()>()
            .oneshot(request.body(axum::body::Body::empty()).expect("request"))
            .await
            .expect("response")
    }

    #[test]
    fn graphiql_page_names_no_remote_url() {
        let html = page();

        assert!(!html.contains("http://"), "{html}");
        assert!(!html.contains("https://"), "{html}");
        assert!(!html.contains("<script>"), "no inline script: {html}");
        assert!(html.contains("<title>AniGo API</title>"));
        assert!(html.contains("data-endpoint=\"/graphql\""));
    }

    #[tokio::test]
    async fn graphiql_page_references_only_served_assets() {
        let html = page();
        let assets: Vec<&str> = references(html)
            .into_iter()
            .filter(|reference| *reference != "data:,")
            .collect();

        assert_eq!(assets.len(), STYLESHEETS.len() + SCRIPTS.len(), "{html}");
        for path in assets {
            assert!(path.starts_with(ASSET_PREFIX), "{path}");
            let response = get(path, None).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            let expected_type = if path.ends_with(".js") {
                JAVASCRIPT
            } else {
                CSS
            };
            assert_eq!(response.headers()[CONTENT_TYPE], expected_type, "{path}");
            assert_eq!(response.headers()[CACHE_CONTROL], IMMUTABLE, "{path}");
            assert!(response.headers().contains_key(ETAG), "{path}");
            let body = axum::body::to_bytes(response.into_body(), 4 << 20)
                .await
                .expect("body");
            assert!(!body.is_empty(), "{path}");
        }
    }

    #[tokio::test]
    async fn graphiql_assets_answer_not_modified_to_their_etag_and_404_to_other_names() {
        let served = &SERVED[0];
        let path = served.path();
        let etag = served.etag.to_str().expect("ASCII");

        let same = get(&path, Some(etag)).await;
        let weak = get(&path, Some(&format!("\"other\", W/{etag}"))).await;
        let other = get(&path, Some("\"other\"")).await;
        let unhashed = get(&format!("{ASSET_PREFIX}{}", served.asset.file), None).await;

        assert_eq!(same.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(same.headers()[CACHE_CONTROL], IMMUTABLE);
        assert_eq!(weak.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(other.status(), StatusCode::OK);
        assert_eq!(unhashed.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_graphiql_page_carries_its_security_and_caching_headers() {
        let response = page_response();

        assert_eq!(response.headers()[CONTENT_SECURITY_POLICY], PAGE_POLICY);
        assert_eq!(response.headers()[CACHE_CONTROL], NO_CACHE);
        assert_eq!(response.headers()[VARY], "accept");
        assert!(
            response.headers()[CONTENT_TYPE]
                .to_str()
                .is_ok_and(|value| value.starts_with("text/html"))
        );
    }
}
