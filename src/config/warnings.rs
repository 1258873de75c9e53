//! Settings that are valid but probably not what the operator meant.
//! `serve` logs each at start-up (`warn`), `check-config` prints them.

use super::server::Mode;
use super::Config;

impl Config {
    /// Whether anyone who reaches wharf may push: no accounts at all, in
    /// registry mode.
    pub fn open_push(&self) -> bool {
        self.auth.admins.is_empty()
            && self.auth.robots.is_empty()
            && self.server.mode == Mode::Registry
    }

    /// One sentence per risky or surprising setting.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let exposed = !self.listen.ip().is_loopback();
        if exposed && self.open_push() {
            w.push(format!(
                "wharf listens on {} with no accounts: anyone who reaches it can push and fill the disk. \
                 Add an [[auth.admins]] entry, or set server.mode = \"mirror\" for a pull-through-only mirror",
                self.listen
            ));
        }
        if exposed
            && self.server.tls.is_none()
            && !(self.auth.admins.is_empty() && self.auth.robots.is_empty())
        {
            w.push(format!(
                "wharf listens on {} over plain HTTP with accounts: passwords and tokens cross the network in clear text \
                 (set [server.tls] or terminate TLS in front of wharf)",
                self.listen
            ));
        }
        if !self.remotes.is_empty() && !self.remotes.iter().any(|r| r.default) {
            let names: Vec<&str> = self.remotes.iter().map(|r| r.name.as_str()).collect();
            w.push(format!(
                "no remote has default = true, so names without a remote prefix (like library/alpine) are not mirrored \
                 from Docker Hub any more; pull them as {}/<path>, or set default = true on one remote",
                names.first().copied().unwrap_or("<remote>")
            ));
        }
        if let super::StorageBackend::S3(s3) = &self.storage {
            if s3.redirect.is_none() && s3.redirect_endpoint.is_some() {
                w.push(
                    "storage.s3.redirect_endpoint is set but storage.s3.redirect is not true: blob GETs stream through wharf \
                     and the redirect endpoint is never used (set redirect = true, or remove redirect_endpoint)"
                        .into(),
                );
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Overrides, RawConfig};

    fn warnings(toml: &str, listen: &str) -> Vec<String> {
        let o = Overrides {
            listen: Some(listen.to_string()),
            data_dir: None,
        };
        RawConfig::parse(toml)
            .unwrap()
            .validate(&o)
            .unwrap()
            .warnings()
    }

    #[test]
    fn the_embedded_default_on_loopback_is_quiet() {
        assert!(warnings("", "127.0.0.1:5000").is_empty());
    }

    #[test]
    fn open_push_on_the_network_is_called_out() {
        let w = warnings("", "0.0.0.0:5000");
        assert!(
            w.iter()
                .any(|s| s.contains("anyone who reaches it can push")),
            "{w:?}"
        );
        assert!(warnings("[server]\nmode = \"mirror\"\n", "0.0.0.0:5000").is_empty());
    }

    #[test]
    fn an_unused_redirect_endpoint_is_called_out() {
        let s3 = |keys: &str| {
            format!("[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"wharf\"\nredirect_endpoint = \"https://s3.example.com\"\n{keys}")
        };
        let w = warnings(&s3(""), "127.0.0.1:5000");
        assert!(
            w.iter().any(|s| s.contains("storage.s3.redirect_endpoint")),
            "{w:?}"
        );
        assert!(warnings(&s3("redirect = true\n"), "127.0.0.1:5000").is_empty());
    }

    #[test]
    fn a_remote_list_without_default_is_called_out() {
        let w = warnings(
            "[[remotes]]\nname = \"corp\"\nurl = \"https://corp.example\"\n",
            "127.0.0.1:5000",
        );
        assert!(
            w.iter()
                .any(|s| s.contains("no remote has default = true") && s.contains("corp/<path>")),
            "{w:?}"
        );
    }
}
