//! What the AWS SDK for Rust, built the way wharf builds it (aws-config
//! with `behavior-version-latest`, aws-smithy-http-client with rustls +
//! ring), does with the `AWS_CA_BUNDLE` environment variable that some
//! machines set: nothing. It neither fails nor warns, and it does not trust
//! the certificates in that file either. A custom CA has to be given
//! explicitly through `aws_smithy_http_client::tls::TrustStore`.
//!
//! The HTTPS endpoint is wharf itself serving TLS with a test CA made here;
//! the SDK call (Secrets Manager GetSecretValue) fails either in the TLS
//! handshake (CA not trusted) or with an HTTP-level error from wharf (TLS
//! passed), which tells the two cases apart.
mod support;

use support::{Options, Wharf};

/// A CA and a server certificate for 127.0.0.1, as PEM: (ca, cert, key).
fn pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "wharf test CA (AWS_CA_BUNDLE)");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// One GetSecretValue against `endpoint` with an SDK client built like
/// wharf's (src/secrets/backends.rs), optionally trusting `ca_pem` only.
/// Returns the error chain (the call cannot succeed against wharf).
async fn sdk_call(endpoint: &str, ca_pem: Option<&str>) -> String {
    use aws_smithy_http_client::tls::{
        rustls_provider::CryptoMode, Provider, TlsContext, TrustStore,
    };
    let mut b =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring));
    if let Some(pem) = ca_pem {
        let trust = TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(pem.as_bytes());
        b = b.tls_context(
            TlsContext::builder()
                .with_trust_store(trust)
                .build()
                .unwrap(),
        );
    }
    let cfg = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(b.build_https())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .load()
        .await;
    let client = aws_sdk_secretsmanager::Client::new(&cfg);
    let err = client
        .get_secret_value()
        .secret_id("probe")
        .send()
        .await
        .expect_err("wharf is not Secrets Manager");
    aws_sdk_secretsmanager::error::DisplayErrorContext(&err).to_string()
}

fn is_tls_trust_error(e: &str) -> bool {
    e.contains("UnknownIssuer") || e.contains("invalid peer certificate")
}

#[test]
fn aws_ca_bundle_is_ignored_by_the_rust_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &ca).unwrap();
    std::fs::write(dir.path().join("tls.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &key).unwrap();
    let w = Wharf::start_with(Options {
        config: Some(format!(
            "remotes = []\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            dir.path().join("tls.crt").display(),
            dir.path().join("tls.key").display()
        )),
        ..Default::default()
    });
    let endpoint = format!("https://{}", w.addr);

    // Everything the SDK logs at debug level and above goes to a file.
    let log_path = dir.path().join("sdk.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    tracing_subscriber::fmt()
        .with_env_filter("debug,hyper=info,h2=info,rustls=info")
        .with_ansi(false)
        .with_writer(move || log_file.try_clone().unwrap())
        .init();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // (edition 2021: set_var is safe; this test is its own process under
    // nextest and sets the variable before any SDK client exists)
    std::env::remove_var("SSL_CERT_FILE");
    std::env::remove_var("SSL_CERT_DIR");

    // 1. AWS_CA_BUNDLE names a file holding exactly the CA that signed the
    //    server certificate: the SDK still does not trust it.
    std::env::set_var("AWS_CA_BUNDLE", &ca_path);
    let e = rt.block_on(sdk_call(&endpoint, None));
    eprintln!("AWS_CA_BUNDLE={} -> {e}", ca_path.display());
    assert!(
        is_tls_trust_error(&e),
        "expected a TLS trust error, got: {e}"
    );

    // 2. AWS_CA_BUNDLE names a missing file: no failure at load, no panic;
    //    the same TLS error as before.
    std::env::set_var("AWS_CA_BUNDLE", "/nonexistent/aws-ca-bundle.pem");
    let e = rt.block_on(sdk_call(&endpoint, None));
    eprintln!("AWS_CA_BUNDLE=/nonexistent/aws-ca-bundle.pem -> {e}");
    assert!(
        is_tls_trust_error(&e),
        "expected a TLS trust error, got: {e}"
    );

    // 3. The same CA given through TrustStore: TLS passes and the error is
    //    wharf answering HTTP (it is no Secrets Manager).
    let e = rt.block_on(sdk_call(&endpoint, Some(&ca)));
    eprintln!("TrustStore with the CA -> {e}");
    assert!(
        !is_tls_trust_error(&e) && !e.contains("dispatch failure"),
        "TLS should pass: {e}"
    );

    let log = std::fs::read_to_string(&log_path).unwrap();
    let mentions: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.to_ascii_lowercase().contains("ca_bundle")
                || l.to_ascii_lowercase().contains("ca bundle")
        })
        .collect();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    eprintln!(
        "SDK log lines: {}; mentioning a CA bundle: {mentions:?}; WARN/ERROR: {warnings:#?}",
        log.lines().count()
    );
    assert!(
        mentions.is_empty(),
        "the SDK mentioned AWS_CA_BUNDLE: {mentions:?}"
    );
}
