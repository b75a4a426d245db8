//! How every operator command prints: one JSON document on stdout with `--json`, a table or a
//! sentence otherwise; errors as one sentence with a hint (`ops::errors`), and with `--json`
//! also as a JSON `{"error", "message"}` document on stdout. Every document ends with a
//! newline.

use serde::Serialize;

/// What a command produced: the same result as JSON and as text for people.
pub struct Report {
    pub json: serde_json::Value,
    pub text: String,
}

impl Report {
    pub fn new(value: &impl Serialize, text: impl Into<String>) -> anyhow::Result<Self> {
        Ok(Report {
            json: serde_json::to_value(value)?,
            text: text.into(),
        })
    }

    /// A result whose text is its one sentence (`Display`).
    pub fn sentence(value: &(impl Serialize + std::fmt::Display)) -> anyhow::Result<Self> {
        Self::new(value, value.to_string())
    }

    /// What the report prints the way the command was asked to, newline included.
    pub fn rendered(&self, json: bool) -> String {
        if json {
            let mut out = serde_json::to_string_pretty(&self.json).unwrap_or_default();
            out.push('\n');
            out
        } else if self.text.is_empty() {
            String::new()
        } else {
            format!("{}\n", self.text.trim_end())
        }
    }

    /// Prints the report the way the command was asked to.
    pub fn print(&self, json: bool) {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(self.rendered(json).as_bytes());
        let _ = out.flush();
    }
}

/// A table with left-aligned columns sized to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 == widths.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_end_with_a_newline() {
        let r = Report::new(&serde_json::json!({"a": 1}), "a sentence").unwrap();
        assert!(r.rendered(true).ends_with("}\n"));
        assert_eq!(r.rendered(false), "a sentence\n");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "LONGER"], &[vec!["wide cell".into(), "x".into()]]);
        assert_eq!(t, "A          LONGER\nwide cell  x");
    }
}
