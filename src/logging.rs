//! Logging with tracing: readable lines on stderr by default, JSON lines with
//! `--log-format json` (or caso's `use_json`), optionally to a file.
//!
//! caso.conf: `debug` (DEBUG instead of INFO), `log_file`/`log_dir` (oslo.log:
//! then the file only). sender.cfg: `[logging] logfile, level, console`. A log
//! file that cannot be opened is a warning and logging goes to the console.
//!
//! Text lines are for operators ([`text`]): time, level, what the line is
//! about (`project NAME (ID)`, `message ID`), the message; module paths only
//! at DEBUG. JSON lines keep every field and span field ([`project_span`],
//! [`message_span`]); the run's last line has the target [`SUMMARY`].

mod text;

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{Layer, Registry};

use crate::config::caso::CasoLogging;
use crate::config::sender::{LogLevel, SenderLogging};

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Where and what to log.
#[derive(Clone, Debug)]
pub struct LogSettings {
    pub level: Level,
    pub file: Option<PathBuf>,
    /// Also (or only) to stderr.
    pub console: bool,
    pub format: LogFormat,
}

impl LogSettings {
    /// caso.conf: DEBUG when `debug`, to `log_file` if set (oslo.log then does
    /// not write to stderr), else stderr. `--log-format` wins over `use_json`.
    pub fn from_caso(l: &CasoLogging, format: Option<LogFormat>) -> Self {
        LogSettings {
            level: if l.debug { Level::DEBUG } else { Level::INFO },
            file: l.file.clone(),
            console: l.file.is_none(),
            format: format.unwrap_or(if l.use_json {
                LogFormat::Json
            } else {
                LogFormat::Text
            }),
        }
    }

    /// sender.cfg `[logging]`; CRITICAL logs errors (tracing has no higher level).
    pub fn from_sender(l: &SenderLogging, format: Option<LogFormat>) -> Self {
        LogSettings {
            level: match l.level {
                LogLevel::Debug => Level::DEBUG,
                LogLevel::Info => Level::INFO,
                LogLevel::Warn => Level::WARN,
                LogLevel::Error | LogLevel::Critical => Level::ERROR,
            },
            file: l.logfile.clone(),
            console: l.console,
            format: format.unwrap_or_default(),
        }
    }

    /// Console only (for `--print-config`, which must not write to a log file).
    pub fn console_only(mut self) -> Self {
        self.file = None;
        self.console = true;
        self
    }
}

/// What [`init`] set up.
#[derive(Clone, Debug, Default)]
pub struct LogHandle {
    /// The file being written, if it could be opened.
    pub file: Option<PathBuf>,
    pub console: bool,
    /// Problems met while setting up (e.g. an unopenable file); already logged.
    pub warnings: Vec<String>,
}

/// The target of the one line that ends every run (`4/4 projects ok, ...`):
/// in text only its message is shown, in JSON its counts are fields too.
pub const SUMMARY: &str = "summary";

/// The span of every line about one project: text shows it once as
/// `project NAME (ID):`, JSON as the span fields `project_name`, `project_id`.
pub fn project_span(name: &str, id: &str) -> tracing::Span {
    tracing::info_span!("project", project_name = %name, project_id = %id)
}

/// The span of every line about one spooled message (its element name, which
/// is also its message id): text `message ID:`, JSON the span field `msg_id`.
pub fn message_span(id: &dyn std::fmt::Display) -> tracing::Span {
    tracing::info_span!("msg", msg_id = %id)
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

fn layer<W>(writer: W, settings: &LogSettings, ansi: bool, filter: Targets) -> BoxedLayer
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    match settings.format {
        LogFormat::Text => base
            .fmt_fields(text::SpanLabel)
            .event_format(text::TextFormat {
                targets: settings.level >= Level::DEBUG,
            })
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => base.json().with_filter(filter).boxed(),
    }
}

/// Installs the global subscriber (once per process; later calls only report).
pub fn init(settings: &LogSettings) -> LogHandle {
    // Our messages at the chosen level; chatty HTTP internals only from WARN.
    let filter = Targets::new()
        .with_default(settings.level)
        .with_target("hyper", Level::WARN)
        .with_target("hyper_util", Level::WARN)
        .with_target("reqwest", Level::WARN)
        .with_target("h2", Level::WARN);
    let mut handle = LogHandle {
        console: settings.console,
        ..LogHandle::default()
    };
    let mut layers: Vec<BoxedLayer> = Vec::new();
    if let Some(path) = &settings.file {
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(f) => {
                layers.push(layer(Mutex::new(f), settings, false, filter.clone()));
                handle.file = Some(path.clone());
            }
            Err(e) => {
                handle.warnings.push(format!(
                    "cannot open log file {}: {e}; logging to the console instead",
                    path.display()
                ));
                handle.console = true;
            }
        }
    }
    if handle.console {
        let ansi = settings.format == LogFormat::Text && std::io::stderr().is_terminal();
        layers.push(layer(std::io::stderr, settings, ansi, filter));
    }
    // Err only when a subscriber is already installed (tests): keep that one.
    let _ = tracing_subscriber::registry().with(layers).try_init();
    for w in &handle.warnings {
        tracing::warn!("{w}");
    }
    handle
}
