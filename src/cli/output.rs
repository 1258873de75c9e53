//! How the CLI prints: aligned tables for people (comfy-table), JSON for
//! scripts (`--json`, times as RFC 3339 like the tables), and a spinner
//! with the elapsed time on stderr while a long call runs — only when
//! stderr is a terminal, so pipes and logs stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::{presets, CellAlignment, Table};
use serde::Serialize;

pub use crate::config::format_size as human_size;

/// A time for a table: RFC 3339, or "-" when there is none.
pub fn when(secs: Option<u64>) -> String {
    match secs {
        None | Some(0) => "-".into(),
        Some(s) => crate::timefmt::format(s),
    }
}

/// Print rows under `header` as aligned columns without borders; columns
/// whose header is in `right` (sizes, counts) are right-aligned.
pub fn table(header: &[&str], right: &[&str], rows: Vec<Vec<String>>) {
    println!("{}", render(header, right, rows));
}

fn render(header: &[&str], right: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING).set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    for (i, h) in header.iter().enumerate() {
        if let Some(c) = t.column_mut(i) {
            c.set_padding((0, 2));
            if right.contains(h) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    t.trim_fmt()
}

/// Print `v` as JSON (`--json`), or for people by `human`.
pub fn show<T: Serialize>(json: bool, v: &T, human: impl FnOnce(&T)) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        human(v);
    }
}

/// A spinner saying `what` with the elapsed time while a long call runs
/// (none when stderr is not a terminal); cleared when dropped.
pub struct Busy(Option<indicatif::ProgressBar>);

impl Busy {
    pub fn start(what: &str) -> Busy {
        if !std::io::stderr().is_terminal() {
            return Busy(None);
        }
        let pb = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            pb.set_style(style);
        }
        pb.set_message(what.to_string());
        pb.enable_steady_tick(Duration::from_millis(120));
        Busy(Some(pb))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(pb) = self.0.take() {
            pb.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align_without_borders_or_trailing_space() {
        let out = super::render(
            &["NAME", "SIZE"],
            &["SIZE"],
            vec![
                vec!["a".into(), "1 KiB".into()],
                vec!["long-name".into(), "10 MiB".into()],
            ],
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "NAME         SIZE");
        assert_eq!(lines[1], "a           1 KiB");
        assert_eq!(lines[2], "long-name  10 MiB");
    }
}
