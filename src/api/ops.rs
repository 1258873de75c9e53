//! Operations endpoints, answered before registry routing and without
//! authentication: `/healthz` (the process is up), `/readyz` (the store is
//! writable and the config is loaded) and `/metrics` (Prometheus text).

use http::{header, Method, Request, Response, StatusCode};

use super::{body, Api, Reply};

/// Answer an operations endpoint, or `None` for every other path.
pub async fn handle<B>(api: &Api, req: &Request<B>) -> Option<Reply> {
    let path = req.uri().path();
    if !matches!(path, "/healthz" | "/readyz" | "/metrics") {
        return None;
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Some(Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into())));
    }
    Some(Ok(match path {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => ready(api).await,
        _ => {
            let out = api.metrics.render(&api.registry.proxy);
            let mut r = text(StatusCode::OK, out);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
    }))
}

fn text(status: StatusCode, s: String) -> Response<body::Body> {
    let mut r = Response::new(body::full(s));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// Ready when the store accepts a write (full disk, read-only mount or
/// lost volume say no). The config was validated before the server
/// started, so a serving process has one.
async fn ready(api: &Api) -> Response<body::Body> {
    match api.registry.store.check_writable().await {
        Ok(()) => text(
            StatusCode::OK,
            "ready: store writable, config loaded\n".into(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store not writable");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: store not writable: {e}\n"),
            )
        }
    }
}
