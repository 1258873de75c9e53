//! The moto server (PyPI `moto[server]`): AWS Secrets Manager and ECR on a
//! loopback port, with boto3 to seed it. Killed on drop.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The region every test uses.
pub const REGION: &str = "us-east-1";

pub struct Moto {
    child: Child,
    pub url: String,
    log: tempfile::NamedTempFile,
}

impl Moto {
    pub fn start() -> Moto {
        let port = super::free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = if super::have("moto_server") {
            Command::new("moto_server")
        } else {
            let mut c = Command::new("python3");
            c.args(["-m", "moto.server"]);
            c
        };
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("moto_server not found: pip install 'moto[server]' (tests/run.sh does)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut m = Moto {
            child,
            url: format!("http://{addr}"),
            log,
        };
        if let Err(why) = super::wait_own_port(&mut m.child, port, Duration::from_secs(30)) {
            panic!(
                "moto {why}: {}",
                std::fs::read_to_string(m.log.path()).unwrap_or_default()
            );
        }
        m
    }

    /// Run Python with boto3 clients `sm` and `ecr` bound to this server;
    /// its trimmed stdout.
    pub fn py(&self, code: &str) -> String {
        let prelude = format!(
            "import boto3, json, base64\n\
             kw = dict(region_name='{REGION}', endpoint_url='{}', aws_access_key_id='test', aws_secret_access_key='test')\n\
             sm = boto3.client('secretsmanager', **kw)\n\
             ecr = boto3.client('ecr', **kw)\n",
            self.url
        );
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!("{prelude}{code}"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Create the secret `name` (`create`) or store a new value for it.
    pub fn put_secret(&self, name: &str, value: &str, create: bool) {
        let v = serde_json::to_string(value).unwrap();
        if create {
            self.py(&format!(
                "sm.create_secret(Name='{name}', SecretString={v})"
            ));
        } else {
            self.py(&format!(
                "sm.put_secret_value(SecretId='{name}', SecretString={v})"
            ));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
