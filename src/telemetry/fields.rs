//! [`PlainFields`]: the text log format's field formatter. It writes what
//! tracing-subscriber's `DefaultFields` writes, byte for byte, but writes a
//! plain `name=value` field directly instead of painting its name and `=`
//! with empty ANSI styles (which went through the formatting machinery
//! four times per field: most of the cost of the per-request log line).
//! Everything else (the message, `log.` and `r#` names, errors with
//! sources, and all fields when ANSI colours are on) is handed to
//! `DefaultVisitor` itself.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// The field formatter of [`LogFormat::Text`](crate::config::LogFormat).
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, target: Writer<'a>) -> PlainVisitor<'a> {
        PlainVisitor {
            writer: target,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// Formats one set of fields (see [`PlainFields`]).
pub struct PlainVisitor<'a> {
    writer: Writer<'a>,
    /// Nothing written yet (no separating space needed).
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Whether `field` is written here rather than by `DefaultVisitor`.
    fn is_plain(&self, field: &Field) -> bool {
        let n = field.name();
        !self.writer.has_ansi_escapes()
            && n != "message"
            && !n.starts_with("log.")
            && !n.starts_with("r#")
    }

    /// Let `DefaultVisitor` write one field, continuing this visit.
    fn delegate(&mut self, field: &Field, visit: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut v = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        visit(&mut v);
        self.result = v.finish();
        // It skips `log.` fields (metadata of events from the `log` crate).
        if !field.name().starts_with("log.") {
            self.is_empty = false;
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if self.is_plain(field) {
            self.record_debug(field, &value)
        } else {
            self.delegate(field, |v| v.record_str(field, value))
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        self.delegate(field, |v| v.record_error(field, value))
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if !self.is_plain(field) {
            return self.delegate(field, |v| v.record_debug(field, value));
        }
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.result = self.writer.write_char(' ');
        }
        self.result = self
            .writer
            .write_str(field.name())
            .and_then(|()| self.writer.write_char('='))
            .and_then(|()| write!(self.writer, "{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl MakeWriter<'_> for Buf {
        type Writer = Buf;
        fn make_writer(&self) -> Buf {
            self.clone()
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer failure")]
    struct Outer(#[source] io::Error);

    /// Events and spans of every kind of field, logged through `subscriber`.
    fn log_all(subscriber: impl tracing::Subscriber + Send + Sync) {
        tracing::subscriber::with_default(subscriber, || {
            let span =
                tracing::info_span!("request", id = %"3f9a-1b", user = tracing::field::Empty);
            let _in = span.enter();
            span.record("user", "alice");
            let e = Outer(io::Error::other("inner \x1b[31mcause"));
            let plain = io::Error::other("no source");
            tracing::info!(
                method = %http::Method::GET,
                target = %"/v2/a/b/manifests/sha256:00?ns=x",
                status = 200u16,
                bytes = 404u64,
                complete = true,
                duration_ms = format_args!("{:.1}", 1.25),
                "request"
            );
            tracing::warn!(
                error = &e as &(dyn std::error::Error + 'static),
                quoted = "a \"b\"",
                "failed \x1b[2J here"
            );
            tracing::warn!(
                error = &plain as &(dyn std::error::Error + 'static),
                n = -3i64,
                f = 0.5f64
            );
            tracing::info!(
                r#type = "raw",
                "log.target" = "skipped",
                after = 1,
                "{} formatted",
                2
            );
            tracing::info!(only = ?Some("x"));
            tracing::info!("");
        });
    }

    fn output(ansi: bool, plain: bool) -> String {
        let buf = Buf::default();
        let b = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(ansi)
            .without_time();
        if plain {
            log_all(b.fmt_fields(PlainFields).finish());
        } else {
            log_all(b.finish());
        }
        let out = buf.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_what_default_fields_writes() {
        for ansi in [false, true] {
            let default = output(ansi, false);
            assert!(default.lines().count() >= 6, "{default}");
            assert_eq!(output(ansi, true), default, "ansi = {ansi}");
        }
    }
}
