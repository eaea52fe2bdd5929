//! The statistics listener: `stats uri` (HTML), `stats uri;csv` (CSV) and `/metrics`
//! (Prometheus), all behind `stats auth`; anything else is 404.

use super::{csv, html, prometheus, rows};
use crate::runtime::Current;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The listener's address, by which it finds its page in the current runtime (a reload may
/// change the page's settings while the listener stays).
struct Page {
    current: Current,
    addr: SocketAddr,
}

pub async fn serve(listener: TcpListener, addr: SocketAddr, current: Current) {
    let app = Router::new()
        .fallback(handle)
        .with_state(Arc::new(Page { current, addr }));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "statistics listener stopped");
    }
}

async fn handle(State(p): State<Arc<Page>>, req: Request) -> Response {
    let rt = p.current.load_full();
    let Some(page) = rt.stats_page_at(p.addr) else {
        return (StatusCode::SERVICE_UNAVAILABLE, "503 Service Unavailable\n").into_response();
    };
    let stats = &page.stats;
    if !authorized(req.headers().get(header::AUTHORIZATION), &stats.auth) {
        let challenge = format!("Basic realm=\"{}\"", stats.realm.replace('"', ""));
        let mut r = (StatusCode::UNAUTHORIZED, "401 Unauthorized\n").into_response();
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        return r;
    }
    let path = req.uri().path();
    // `<uri>;csv` may also come as the query `?;csv` from the page's own link.
    let query = req.uri().query().unwrap_or("");
    let base = stats.uri.split('?').next().unwrap_or(&stats.uri);
    let want_csv = path == format!("{base};csv") || (path == base && query.contains(";csv"));
    let rows = rows(&rt);
    let (kind, body) = if want_csv {
        ("text/plain; charset=utf-8", csv::render(&rows))
    } else if path == base {
        let uptime = rt.started.elapsed().unwrap_or_default();
        (
            "text/html; charset=utf-8",
            html::render(&rows, stats.refresh, uptime),
        )
    } else if path == "/metrics" {
        ("text/plain; version=0.0.4", prometheus::render(&rows))
    } else {
        return (StatusCode::NOT_FOUND, "404 Not Found\n").into_response();
    };
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn authorized(header: Option<&HeaderValue>, users: &[(String, String)]) -> bool {
    let Some(encoded) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(decoded) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((user, pass)) = decoded.split_once(':') else {
        return false;
    };
    users.iter().any(|(u, p)| {
        constant_time_eq(u.as_bytes(), user.as_bytes())
            & constant_time_eq(p.as_bytes(), pass.as_bytes())
    })
}

/// Compares without stopping at the first difference, so timing tells nothing of a secret.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> HeaderValue {
        let v = base64::engine::general_purpose::STANDARD.encode(user_pass);
        HeaderValue::from_str(&format!("Basic {v}")).unwrap()
    }

    #[test]
    fn only_configured_credentials_pass() {
        let users = vec![("admin".to_string(), "admin".to_string())];
        assert!(authorized(Some(&basic("admin:admin")), &users));
        assert!(!authorized(Some(&basic("admin:wrong")), &users));
        assert!(!authorized(Some(&basic("admin")), &users));
        assert!(!authorized(None, &users));
        assert!(!authorized(
            Some(&HeaderValue::from_static("Basic !!!")),
            &users
        ));
        assert!(!authorized(
            Some(&HeaderValue::from_static("Bearer x")),
            &users
        ));
    }
}
