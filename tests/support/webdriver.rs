//! A headless Chromium driven over the W3C WebDriver protocol: chromedriver
//! on a free port, and the handful of endpoints the dashboard tests need
//! (navigate, find, type, click, read, run a script, screenshot), spoken as
//! JSON with the blocking reqwest client the tests already use. Both
//! processes stop when the guard drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use super::{free_port, have, wait_own_port};

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver (and the Chromium it started), killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser session; chromedriver and Chromium are stopped on drop.
pub struct Browser {
    _driver: Driver,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    /// Where screenshots go.
    pub out_dir: PathBuf,
}

/// Whether Chromium and chromedriver are installed (prints SKIPPED if not).
pub fn available() -> bool {
    for cmd in ["chromium", "chromedriver"] {
        if !have(cmd) {
            eprintln!("\n\n******** SKIPPED: no {cmd} on PATH (apt-get install chromium chromium-driver); the browser test did not run ********\n");
            return false;
        }
    }
    true
}

impl Browser {
    /// Start chromedriver and a headless Chromium; screenshots go to `out_dir`.
    pub fn start(out_dir: &Path) -> Browser {
        let port = free_port();
        let mut driver = Driver(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        if let Err(why) = wait_own_port(&mut driver.0, port, Duration::from_secs(20)) {
            panic!("chromedriver {why}");
        }
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900", "--no-proxy-server"]
            }
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        std::fs::create_dir_all(out_dir).unwrap();
        Browser {
            _driver: driver,
            base,
            session,
            http,
            out_dir: out_dir.to_path_buf(),
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().unwrap().json().unwrap();
        if r["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", r["value"]);
        }
        r["value"].clone()
    }

    pub fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    pub fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// The element `css` selects (waits up to 10 s for it).
    pub fn find(&self, css: &str) -> String {
        for _ in 0..100 {
            if let Some(e) = self.try_find(css) {
                return e;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no element {css} on {}:\n{}", self.url(), self.source());
    }

    pub fn try_find(&self, css: &str) -> Option<String> {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let r: Value = self
            .http
            .post(url)
            .json(&json!({ "using": "css selector", "value": css }))
            .send()
            .ok()?
            .json()
            .ok()?;
        r["value"][ELEMENT].as_str().map(str::to_string)
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        );
    }

    /// The visible text of the element `css` selects, or `None` when there
    /// is none or the page replaced it meanwhile (a self-reloading page).
    pub fn try_text(&self, css: &str) -> Option<String> {
        let e = self.try_find(css)?;
        let url = format!("{}/session/{}/element/{e}/text", self.base, self.session);
        let r: Value = self.http.get(url).send().ok()?.json().ok()?;
        r["value"].as_str().map(str::to_string)
    }

    /// The visible text of the element `css` selects.
    pub fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.call(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Run `script` (a function body) in the page; its return value.
    pub fn run(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Resize the window (smaller screenshots).
    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }

    /// Save a PNG of the viewport as `<out_dir>/<name>.png`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .unwrap();
        let path = self.out_dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends Chromium; the driver process goes when its guard drops.
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
    }
}
