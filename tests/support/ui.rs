//! A dashboard visitor over plain HTTP: signs in through the form (the
//! sign-in nonce cookie and its CSRF field), keeps the session cookie, and
//! reads the CSRF token pages put in their forms.

use reqwest::blocking::Response;

use super::{http, Wharf};

/// The value of `name=` in a response's `Set-Cookie` headers.
pub fn set_cookie(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// The value of the first `name="csrf" value="..."` field in `html`.
pub fn csrf_in(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_string())
}

/// `name=value` of a full `Set-Cookie` line.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or("").to_string()
}

/// A signed-in (or anonymous) visitor.
pub struct Visitor<'w> {
    pub w: &'w Wharf,
    /// `wharf_session=...`, or empty.
    pub cookie: String,
    /// The CSRF token of the session's forms.
    pub csrf: String,
}

impl<'w> Visitor<'w> {
    pub fn anonymous(w: &'w Wharf) -> Visitor<'w> {
        Visitor {
            w,
            cookie: String::new(),
            csrf: String::new(),
        }
    }

    /// Sign in through the form; panics unless it redirects to `/ui/`.
    pub fn sign_in(w: &'w Wharf, user: &str, pass: &str) -> Visitor<'w> {
        let (r, _) = Self::try_sign_in(w, user, pass);
        assert_eq!(r.status(), 303, "sign-in as {user} failed");
        let cookie = pair(&set_cookie(&r, "wharf_session").expect("no session cookie"));
        let mut v = Visitor {
            w,
            cookie,
            csrf: String::new(),
        };
        let (_, html) = v.get("/ui/");
        v.csrf = csrf_in(&html).expect("no CSRF field on the projects page");
        v
    }

    /// Post the sign-in form; returns the answer and the form page's nonce cookie.
    pub fn try_sign_in(w: &Wharf, user: &str, pass: &str) -> (Response, String) {
        let page = http().get(format!("{}/ui/login", w.url())).send().unwrap();
        let nonce = pair(&set_cookie(&page, "wharf_login").expect("no sign-in cookie"));
        let csrf = csrf_in(&page.text().unwrap()).expect("no CSRF field on the sign-in form");
        let r = http()
            .post(format!("{}/ui/login", w.url()))
            .header("cookie", &nonce)
            .form(&[("username", user), ("password", pass), ("csrf", &csrf)])
            .send()
            .unwrap();
        (r, nonce)
    }

    /// GET a dashboard page: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = self.get_raw(path);
        (r.status().as_u16(), r.text().unwrap())
    }

    pub fn get_raw(&self, path: &str) -> Response {
        http()
            .get(format!("{}{path}", self.w.url()))
            .header("cookie", &self.cookie)
            .send()
            .unwrap()
    }

    /// POST a form with this session's CSRF token: (status, body).
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut all: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        all.extend_from_slice(fields);
        self.post_exact(path, &all)
    }

    /// POST exactly `fields` (no CSRF token added).
    pub fn post_exact(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let r = http()
            .post(format!("{}{path}", self.w.url()))
            .header("cookie", &self.cookie)
            .form(fields)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }
}
