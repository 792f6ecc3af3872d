//! The pages people use: the agent console (`/console/`), the knowledge-base editor
//! (`/editor/`) and the citizen web chat (`/chat/`, embeddable), with their shared
//! scripts under `/shared/`.
//!
//! The files under `web/` are compiled into the binary (in debug builds they are read
//! from the source tree, so a page can be edited without a rebuild): a deployment is
//! one file, with no build step for the pages and nothing fetched from elsewhere.
//!
//! Every page answer carries a strict Content-Security-Policy: scripts and styles only
//! from this server, no inline script or style, no plug-ins, no `<base>`, connections
//! only back to this server. User text is rendered by the pages with `textContent`; the
//! policy is the second wall should a page ever get that wrong.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};

use crate::app::AppState;
use crate::error::AppError;

#[derive(rust_embed::Embed)]
#[folder = "web/"]
struct Assets;

/// The policy for pages that must never be framed (console, editor).
const CSP_BASE: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' blob: data:; font-src 'self'; connect-src 'self'; media-src 'self' blob:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; worker-src 'none'; \
     manifest-src 'self'";

/// Pages under this prefix may be framed by the origins given to [`router`].
const EMBEDDABLE: &str = "chat/";

/// `embed_origins`: the sites (e.g. `https://be.china-embassy.example`) allowed to show
/// the citizen chat in a frame through `/chat/widget.js`. Everything else may frame it
/// only from this server itself, which keeps the SOS button out of clickjacking reach.
pub fn router(embed_origins: &[String]) -> Router<AppState> {
    let ancestors: Vec<&str> = embed_origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| valid_origin(o))
        .collect();
    let mut framed = format!("{CSP_BASE}; frame-ancestors 'self'");
    for o in ancestors {
        framed.push(' ');
        framed.push_str(o);
    }
    let policies = Arc::new(Policies {
        framed: HeaderValue::from_str(&framed).expect("origins were checked"),
        unframed: HeaderValue::from_str(&format!("{CSP_BASE}; frame-ancestors 'none'"))
            .expect("static policy"),
    });
    let mut r = Router::new();
    for page in ["console", "editor", "chat"] {
        r = r
            .route(
                &format!("/{page}"),
                get(move || async move { Redirect::permanent(&format!("/{page}/")) }),
            )
            .route(&format!("/{page}/"), get(asset))
            .route(&format!("/{page}/{{*file}}"), get(asset));
    }
    r.route("/shared/{*file}", get(asset))
        .route("/", get(|| async { Redirect::temporary("/chat/") }))
        .layer(axum::middleware::from_fn(not_modified))
        .layer(Extension(policies))
}

struct Policies {
    framed: HeaderValue,
    unframed: HeaderValue,
}

/// `https://host[:port]` or `http://...`: nothing that could break out of the header.
fn valid_origin(o: &str) -> bool {
    let rest = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"));
    match rest {
        Some(host) => {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '*'))
        }
        None => false,
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, e)| e) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json" | "webmanifest") => "application/json",
        Some("woff2") => "font/woff2",
        Some("txt" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// One file of `web/`: the URL path is the file's path (`/console/` is its `index.html`).
async fn asset(Extension(policies): Extension<Arc<Policies>>, uri: Uri) -> Response {
    let mut path = uri.path().trim_start_matches('/').to_string();
    if path.ends_with('/') {
        path.push_str("index.html");
    }
    // Paths come from the URL: plain names only, nothing that could climb out of web/.
    let plain = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'));
    if !plain
        || path
            .split('/')
            .any(|seg| seg.is_empty() || seg.starts_with('.'))
    {
        return AppError::NotFound("no such page".into()).into_response();
    }
    let Some(asset) = Assets::get(&path) else {
        return AppError::NotFound("no such page".into()).into_response();
    };
    let etag = format!(
        "\"{}\"",
        asset
            .metadata
            .sha256_hash()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex is a valid header"),
    );
    // Revalidate every time: a new server version must never run with stale scripts.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let embeddable = path.starts_with(EMBEDDABLE);
    let csp = if embeddable {
        policies.framed.clone()
    } else {
        policies.unframed.clone()
    };
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    if !embeddable {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static(
            "geolocation=(self), camera=(), microphone=(), payment=(), usb=()",
        ),
    );
    // The widget script is included by missions' own sites; everything else stays here.
    let corp = if path == "chat/widget.js" {
        "cross-origin"
    } else {
        "same-origin"
    };
    headers.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static(corp),
    );
    (StatusCode::OK, headers, asset.data.into_owned()).into_response()
}

/// Answer `If-None-Match` with 304 when the page has not changed.
async fn not_modified(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let inm = req.headers().get(header::IF_NONE_MATCH).cloned();
    let res = next.run(req).await;
    if let (Some(inm), Some(etag)) = (inm, res.headers().get(header::ETAG)) {
        if res.status() == StatusCode::OK
            && inm
                .to_str()
                .unwrap_or("")
                .split(',')
                .any(|t| t.trim() == etag.to_str().unwrap_or("-"))
        {
            let mut out = StatusCode::NOT_MODIFIED.into_response();
            for h in [
                header::ETAG,
                header::CACHE_CONTROL,
                header::CONTENT_SECURITY_POLICY,
            ] {
                if let Some(v) = res.headers().get(&h) {
                    out.headers_mut().insert(h, v.clone());
                }
            }
            return out;
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_that_could_inject_into_the_policy_are_dropped() {
        assert!(valid_origin("https://be.china-embassy.example"));
        assert!(valid_origin("http://localhost:8000"));
        assert!(!valid_origin("https://x; script-src *"));
        assert!(!valid_origin("*"));
        assert!(!valid_origin("javascript:alert(1)"));
    }

    #[test]
    fn every_page_exists() {
        for p in [
            "console/index.html",
            "editor/index.html",
            "chat/index.html",
            "chat/widget.js",
        ] {
            assert!(Assets::get(p).is_some(), "{p} is embedded");
        }
    }
}
