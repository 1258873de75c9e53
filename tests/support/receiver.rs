//! A notification receiver for tests: records every POST it accepts and
//! answers 200, or fails on purpose (503, or a reset connection) while it
//! is "down".

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::fake_upstream::{Request, Response, Server};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Up = 0,
    /// 503 Service Unavailable.
    Unavailable = 1,
    /// The connection is reset before any answer.
    Reset = 2,
}

pub struct Receiver {
    server: Server,
    mode: Arc<AtomicU8>,
    accepted: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let mode = Arc::new(AtomicU8::new(Mode::Up as u8));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let (m, a) = (mode.clone(), accepted.clone());
        let server = Server::start(move |req, conn| match m.load(Ordering::SeqCst) {
            0 => {
                a.lock().unwrap().push(req);
                let _ = Response::new(200).write(&mut conn.stream, false);
            }
            1 => {
                let _ = Response::new(503)
                    .body("down for maintenance")
                    .write(&mut conn.stream, false);
            }
            _ => conn.reset(),
        });
        Receiver {
            server,
            mode,
            accepted,
        }
    }

    pub fn url(&self) -> String {
        format!("{}/events", self.server.url())
    }

    pub fn set(&self, m: Mode) {
        self.mode.store(m as u8, Ordering::SeqCst);
    }

    /// Every accepted request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.accepted.lock().unwrap().clone()
    }

    /// Every event of every accepted envelope, in arrival order
    /// (redeliveries included).
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .flat_map(|r| {
                let v: serde_json::Value =
                    serde_json::from_slice(&r.body).expect("an envelope is JSON");
                v["events"]
                    .as_array()
                    .expect("envelope.events is an array")
                    .clone()
            })
            .collect()
    }

    /// Events of `action`, deduplicated by id (first delivery kept).
    pub fn unique(&self, action: &str) -> Vec<serde_json::Value> {
        let mut seen = std::collections::HashSet::new();
        self.events()
            .into_iter()
            .filter(|e| e["action"] == action)
            .filter(|e| seen.insert(e["id"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    /// Wait (up to `timeout`) until `f` holds for the events received.
    pub fn wait_for(&self, what: &str, timeout: Duration, f: impl Fn(&Receiver) -> bool) {
        super::wait_until(what, timeout, || f(self));
    }
}
