//! Where logs go and how they look: stderr (stdout carries command output); JSON lines on
//! Lambda (for CloudWatch Logs Insights) and with `UPDRAFT_LOG_FORMAT=json`, readable lines
//! otherwise; `RUST_LOG` filters, default `info`.
//!
//! Log fields carry what devices sent (versions, channels, actions), so readable lines go
//! through `EscapeControls`: a device cannot start a forged line with `\n` or drive the
//! operator's terminal with ANSI escapes. JSON lines are escaped by JSON itself.

use std::io::Write;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    if json {
        // No span list: on Lambda the runtime's request span would add ~180 bytes to every
        // line, and the request id is in Lambda's own START/END lines.
        builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        builder
            .with_writer(|| EscapeControls(std::io::stderr()))
            .compact()
            .init();
    }
}

/// A writer for formatted log lines that escapes every control character except the line's
/// own final newline: `\n` becomes `\\n`, ESC `\\x1b`, and so on. The formatter hands over one
/// whole line per write.
pub struct EscapeControls<W: Write>(pub W);

impl<W: Write> Write for EscapeControls<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        let text = String::from_utf8_lossy(body);
        let mut out = String::with_capacity(text.len() + 1);
        for c in text.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        self.0.write_all(out.as_bytes())?;
        self.0.write_all(end)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(line: &str) -> String {
        let mut out = Vec::new();
        EscapeControls(&mut out).write_all(line.as_bytes()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn control_characters_cannot_forge_lines_or_colours() {
        assert_eq!(
            escaped("INFO check version_name=1.0\nERROR forged\n"),
            "INFO check version_name=1.0\\nERROR forged\n"
        );
        assert_eq!(
            escaped("a\u{1b}[31mred\r\t\u{7f}\n"),
            "a\\u{1b}[31mred\\r\\t\\u{7f}\n"
        );
        assert_eq!(escaped("plain ünïcode\n"), "plain ünïcode\n");
    }

    #[test]
    fn a_real_log_line_with_a_forged_field_stays_one_line() {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || EscapeControls(SharedBuf(sink.clone())))
            .compact()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let version = "1.0\n2026-01-01T00:00:00Z ERROR updraft: forged \u{1b}[2J";
            tracing::info!(version_name = %version, "update check");
        });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("1.0\\n2026"), "{text}");
    }

    struct SharedBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
