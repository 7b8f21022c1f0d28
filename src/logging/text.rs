//! The text line format for operators:
//!
//! ```text
//! 2026-12-02T00:13:19.096972Z  INFO project project-002 (daf9bd44...): no lastrun file, extracting from 1970-01-01
//! 2026-12-02T00:13:19.815413Z  INFO 4/4 projects ok, 16 messages (265 records) spooled
//! ```
//!
//! Time (UTC), level, what the line is about (the project or message span,
//! once), the message and any other fields. The module path (the event's
//! target) is shown only at DEBUG; a [`super::SUMMARY`] line shows only its
//! message (its fields repeat it for JSON).

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Spans shown by their label alone ([`SpanLabel`]), not `name{fields}`.
const LABELLED: [&str; 2] = ["project", "msg"];

pub struct TextFormat {
    /// Show each event's module path (DEBUG).
    pub targets: bool,
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        SystemTime.format_time(&mut w)?;
        let level = meta.level();
        if w.has_ansi_escapes() {
            write!(w, " \x1b[{}m{level:>5}\x1b[0m ", colour(level))?;
        } else {
            write!(w, " {level:>5} ")?;
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                let fields = ext
                    .get::<FormattedFields<N>>()
                    .map_or("", |f| f.fields.as_str());
                if LABELLED.contains(&span.name()) && !fields.is_empty() {
                    write!(w, "{fields}: ")?;
                } else if fields.is_empty() {
                    write!(w, "{}: ", span.name())?;
                } else {
                    write!(w, "{}{{{fields}}}: ", span.name())?;
                }
            }
        }
        if self.targets {
            write!(w, "{}: ", meta.target())?;
        }
        if meta.target() == super::SUMMARY {
            let mut m = MessageOnly(String::new());
            event.record(&mut m);
            w.write_str(&m.0)?;
        } else {
            DefaultFields::new().format_fields(w.by_ref(), event)?;
        }
        writeln!(w)
    }
}

fn colour(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 31,
        Level::WARN => 33,
        Level::INFO => 32,
        Level::DEBUG => 34,
        Level::TRACE => 35,
    }
}

struct MessageOnly(String);

impl Visit for MessageOnly {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

/// Span fields as a label: `project NAME (ID)`, `message ID`; any other
/// field as `name=value`.
pub struct SpanLabel;

impl<'w> FormatFields<'w> for SpanLabel {
    fn format_fields<R: RecordFields>(&self, mut w: Writer<'w>, fields: R) -> fmt::Result {
        let mut label = Label::default();
        fields.record(&mut label);
        w.write_str(&label.finish())
    }
}

#[derive(Default)]
struct Label {
    project_name: Option<String>,
    project_id: Option<String>,
    msg_id: Option<String>,
    other: Vec<String>,
}

impl Visit for Label {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "project_name" => self.project_name = Some(text),
            "project_id" => self.project_id = Some(text),
            "msg_id" => self.msg_id = Some(text),
            name => self.other.push(format!("{name}={text}")),
        }
    }
}

impl Label {
    fn finish(self) -> String {
        let mut parts = Vec::new();
        match (self.project_name.filter(|n| !n.is_empty()), self.project_id) {
            (Some(name), Some(id)) if name != id => parts.push(format!("project {name} ({id})")),
            (_, Some(id)) => parts.push(format!("project {id}")),
            (Some(name), None) => parts.push(format!("project {name}")),
            (None, None) => {}
        }
        if let Some(id) = self.msg_id {
            parts.push(format!("message {id}"));
        }
        parts.extend(self.other);
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;
    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    fn logged(targets: bool, f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(buf.clone())
            .with_ansi(false)
            .fmt_fields(SpanLabel)
            .event_format(TextFormat { targets });
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn project_once_and_no_module_path() {
        let out = logged(false, || {
            let _s = crate::logging::project_span("proj-a", "0123abcd").entered();
            tracing::info!(vo = "vo.example", "extracting");
        });
        let line = out.trim_end();
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{line}");
        assert_eq!(
            rest,
            " INFO project proj-a (0123abcd): extracting vo=\"vo.example\""
        );
    }

    #[test]
    fn module_path_at_debug_and_message_span() {
        let out = logged(true, || {
            let _s = crate::logging::message_span(&"6b0f62c8/6b0f62cb6e32d6").entered();
            tracing::warn!("kept");
        });
        assert!(
            out.contains(
                " WARN message 6b0f62c8/6b0f62cb6e32d6: cloud_accounting::logging::text::tests: kept"
            ),
            "{out}"
        );
    }

    #[test]
    fn summary_shows_its_message_only() {
        let out = logged(false, || {
            tracing::info!(target: crate::logging::SUMMARY, ok = 4, total = 4, "4/4 projects ok");
        });
        assert!(out.ends_with(" INFO 4/4 projects ok\n"), "{out}");
    }

    #[test]
    fn other_spans_keep_their_name() {
        let out = logged(false, || {
            let _s = tracing::info_span!("run", n = 3).entered();
            tracing::info!("x");
        });
        assert!(out.ends_with(" INFO run{n=3}: x\n"), "{out}");
    }
}
