//! `Route::parse` (every `/v2/...` request path) and the `Host` check that
//! guards the token realm. Properties: a refusal is a 4xx OCI error whose
//! response builds; a parsed route's path, printed back, parses to the same
//! route.
#![no_main]
use http::Method;
use libfuzzer_sys::fuzz_target;
use wharf::api::route::Route;

const METHODS: [Method; 6] = [Method::GET, Method::HEAD, Method::PUT, Method::POST, Method::PATCH, Method::DELETE];

fn path_of(r: &Route) -> String {
    match r {
        Route::Base => "/v2/".into(),
        Route::Catalog => "/v2/_catalog".into(),
        Route::Tags(n) => format!("/v2/{n}/tags/list"),
        Route::Manifest(n, r) => format!("/v2/{n}/manifests/{r}"),
        Route::Blob(n, d) => format!("/v2/{n}/blobs/{d}"),
        Route::UploadStart(n) => format!("/v2/{n}/blobs/uploads/"),
        Route::Upload(n, id) => format!("/v2/{n}/blobs/uploads/{id}"),
        Route::Referrers(n, d) => format!("/v2/{n}/referrers/{d}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let Ok(path) = std::str::from_utf8(rest) else { return };
    let method = &METHODS[m as usize % METHODS.len()];
    match Route::parse(method, path) {
        Ok(route) => {
            let again = Route::parse(method, &path_of(&route)).expect("a printed route parses");
            assert_eq!(again, route, "{path:?} does not print back");
        }
        Err(e) => {
            assert!(e.status_code().is_client_error(), "{path:?}: {}", e.status_code());
            let _ = e.into_response();
        }
    }
    // The same text as a Host header: accepted only as a plain host[:port].
    if wharf::fuzzing::valid_authority(path) {
        assert!(!path.contains(['/', '?', '#', '"', '@', ' ', '\\']), "{path:?} accepted as a host");
        let url = format!("http://{path}/token");
        assert!(http::Uri::try_from(url.as_str()).is_ok(), "{url:?} is not a URI");
    }
});
