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
