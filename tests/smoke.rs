//! The binary starts on its defaults and answers the version check.
mod support;

#[test]
fn starts_and_answers_v2() {
    let w = support::Wharf::start();
    let r = support::http()
        .get(format!("{}/v2/", w.url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
}

/// The harness knows wharf is up only when wharf itself holds its port:
/// a server of another test on a port `free_port` handed out before is
/// not mistaken for it (the start-up is then tried on another port).
#[test]
fn readiness_is_wharf_holding_its_own_port() {
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    assert!(support::listens_on(std::process::id(), other_port));
    let w = support::Wharf::start();
    let pid = w.pid().expect("wharf runs");
    assert!(support::listens_on(pid, w.addr.port()));
    assert!(!support::listens_on(pid, other_port));
    drop(other);
    assert!(!support::listens_on(std::process::id(), other_port));
}
