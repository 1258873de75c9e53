//! The management API's path parser (`/api/v1/...`). Properties: a refusal
//! is a 4xx OCI error; parsed repositories and digests are valid and print
//! back as they appeared in the path.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wharf::fuzzing::{parse_mgmt_path, MgmtEndpoint as E};

fuzz_target!(|path: &str| {
    match parse_mgmt_path(path) {
        Ok(E::Project(p) | E::ProjectRepos(p) | E::Robot(p)) => assert!(!p.contains('/'), "{p:?}"),
        Ok(E::Artifacts(r)) => assert!(path.contains(&format!("/repositories/{r}/artifacts"))),
        Ok(E::Artifact(r, d)) => assert!(path.contains(&format!("/repositories/{r}/artifacts/{d}"))),
        Ok(E::RepoTag(r, t)) => assert!(path.contains(&format!("/repositories/{r}/tags/{t}"))),
        Ok(_) => {}
        Err(e) => {
            assert!(e.status_code().is_client_error(), "{path:?}: {}", e.status_code());
            let _ = e.into_response();
        }
    }
});
