//! `sender.cfg`: every option SSM 4.0.0's `ssmsend` reads, plus ours, and the
//! typed [`SenderSettings`] sending runs with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    Choice, ConfigError, Effective, Kind, OptSpec, Owner, Schema, Secret, Sources, ini::Dialect,
    opt, ours,
};

const fn choice(name: &'static str) -> Choice {
    Choice {
        name,
        aliases: &[],
        supported: true,
    }
}

static PROTOCOLS: &[Choice] = &[choice("STOMP"), choice("AMS")];
static PATH_TYPES: &[Choice] = &[choice("dirq"), choice("directory")];
static CIPHERS: &[Choice] = &[choice("aes128"), choice("aes192"), choice("aes256")];
static LEVELS: &[Choice] = &[
    choice("DEBUG"),
    choice("INFO"),
    Choice {
        name: "WARN",
        aliases: &["WARNING"],
        supported: true,
    },
    choice("ERROR"),
    choice("CRITICAL"),
];

#[rustfmt::skip]
static OPTIONS: &[OptSpec] = &[
    opt("sender", "protocol", Kind::Choice(PROTOCOLS), None, "STOMP or AMS; unset means STOMP, with a warning."),
    ours("sender", "window", Kind::Int { min: 1, max: 10_000 }, Some("32"), "STOMP messages in flight awaiting a receipt."),
    ours("sender", "ams_concurrency", Kind::Int { min: 1, max: 64 }, Some("8"), "AMS publish requests in flight."),
    ours("sender", "ams_port", Kind::Int { min: 1, max: 65535 }, Some("443"), "AMS API port (SSM always uses 443)."),
    ours("sender", "ams_authn_port", Kind::Int { min: 1, max: 65535 }, Some("8443"), "ARGO authentication service port, for authx509 tokens."),
    ours("sender", "connect_timeout", Kind::Duration, Some("30s"), "TCP/TLS connect timeout."),
    ours("sender", "receipt_timeout", Kind::Duration, Some("60s"), "Wait for a STOMP RECEIPT or AMS reply."),
    ours("sender", "idle_timeout", Kind::Duration, Some("120s"), "Give up on a connection silent this long."),
    opt("broker", "host", Kind::List, None, "Broker or AMS host; ours: several `host[:port]`, comma-separated, for STOMP failover."),
    opt("broker", "port", Kind::Int { min: 1, max: 65535 }, None, "Broker port (STOMP; AMS uses HTTPS 443)."),
    opt("broker", "use_ssl", Kind::Bool, Some("true"), "STOMP over TLS with the host certificate (AMS is always HTTPS)."),
    opt("broker", "bdii", Kind::Str, None, "SSM 2/3 BDII discovery: no longer supported."),
    opt("broker", "network", Kind::Str, None, "SSM 2/3 broker network: no longer supported."),
    opt("certificates", "certificate", Kind::Path, None, "Host certificate (signs messages)."),
    opt("certificates", "key", Kind::Path, None, "Host key."),
    OptSpec { section: "certificates", key: "capath", kind: Kind::Path, default: Some("/etc/grid-security/certificates"), owner: Owner::OurDefault, help: "CA certificates directory." },
    opt("certificates", "server_cert", Kind::Path, None, "Encrypt messages for this certificate."),
    opt("certificates", "verify_server_cert", Kind::Bool, Some("true"), "Verify server_cert against capath."),
    opt("messaging", "destination", Kind::Str, None, "STOMP queue or AMS topic."),
    opt("messaging", "path", Kind::Path, None, "Outgoing message queue."),
    opt("messaging", "path_type", Kind::Choice(PATH_TYPES), Some("dirq"), "dirq or directory."),
    opt("messaging", "ams_project", Kind::Str, None, "AMS project (AMS only)."),
    opt("messaging", "token", Kind::Secret, None, "AMS token; unset: fetched with the host certificate."),
    ours("messaging", "encryption", Kind::Choice(CIPHERS), Some("aes128"), "Cipher for server_cert encryption."),
    opt("logging", "logfile", Kind::Path, None, "Log file; unopenable: a warning, then console."),
    opt("logging", "level", Kind::Choice(LEVELS), Some("INFO"), "DEBUG, INFO, WARN, ERROR, CRITICAL."),
    opt("logging", "console", Kind::Bool, Some("true"), "Also log to stderr."),
];

pub(crate) static SCHEMA: Schema = Schema {
    program: "ssmsend",
    dialect: Dialect::ConfigParser,
    env_prefix: "SSM_",
    options: OPTIONS,
    renames: &[],
    ignored_sections: &[],
    interpolate: false,
};

/// `[sender] protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Stomp,
    Ams,
}

/// `[messaging] path_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathType {
    /// Python-dirq QueueSimple (default).
    Dirq,
    /// A flat directory of files.
    Directory,
}

/// `[messaging] encryption` (ours): cipher of the S/MIME envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    Aes128,
    Aes192,
    Aes256,
}

/// One STOMP broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
}

/// STOMP delivery.
#[derive(Clone, Debug)]
pub struct Stomp {
    /// Tried in order (failover). Never empty.
    pub brokers: Vec<Broker>,
    /// `[broker] use_ssl`. Default true (SSM passes `{use_ssl: true}` as configparser defaults).
    pub use_ssl: bool,
    /// Ours, `[sender] window`. Default 32.
    pub window: usize,
}

/// ARGO Messaging Service delivery.
#[derive(Clone, Debug)]
pub struct Ams {
    /// `[broker] host`, e.g. msg.argo.grnet.gr.
    pub host: String,
    /// `[messaging] ams_project`, e.g. accounting.
    pub project: String,
    /// `[messaging] token`. Default unset: fetched with the host certificate.
    pub token: Option<Secret>,
    /// Ours, `[sender] ams_concurrency`. Default 8.
    pub concurrency: usize,
    /// Ours, `[sender] ams_port`. Default 443 (`[broker] port` is only for
    /// STOMP, as in SSM).
    pub port: u16,
    /// Ours, `[sender] ams_authn_port`. Default 8443.
    pub authn_port: u16,
}

/// How messages travel.
#[derive(Clone, Debug)]
pub enum Transport {
    Stomp(Stomp),
    Ams(Ams),
}

impl Transport {
    pub fn protocol(&self) -> Protocol {
        match self {
            Transport::Stomp(_) => Protocol::Stomp,
            Transport::Ams(_) => Protocol::Ams,
        }
    }
}

/// `[certificates]`.
#[derive(Clone, Debug)]
pub struct Certificates {
    /// Required.
    pub certificate: PathBuf,
    /// Required.
    pub key: PathBuf,
    /// Ours default `/etc/grid-security/certificates`.
    pub capath: PathBuf,
    /// Default unset: messages are signed, not encrypted.
    pub server_cert: Option<PathBuf>,
    /// Default true.
    pub verify_server_cert: bool,
}

/// `[messaging]`.
#[derive(Clone, Debug)]
pub struct Messaging {
    /// Required.
    pub destination: String,
    /// Required.
    pub path: PathBuf,
    /// Default dirq.
    pub path_type: PathType,
    /// Ours. Default aes128.
    pub encryption: Cipher,
}

/// Ours, `[sender] *_timeout`.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Default 30 s.
    pub connect: Duration,
    /// Default 60 s.
    pub receipt: Duration,
    /// Default 120 s.
    pub idle: Duration,
}

/// Log level of `[logging] level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// `[logging]`.
#[derive(Clone, Debug)]
pub struct SenderLogging {
    /// Default unset.
    pub logfile: Option<PathBuf>,
    /// Default INFO.
    pub level: LogLevel,
    /// Default true.
    pub console: bool,
}

/// Everything `ssmsend` needs, checked: a value of this type can send.
#[derive(Clone, Debug)]
pub struct SenderSettings {
    pub transport: Transport,
    pub certificates: Certificates,
    pub messaging: Messaging,
    pub timeouts: Timeouts,
    pub logging: SenderLogging,
}

fn required<T>(v: Option<T>, section: &str, key: &str, purpose: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| ConfigError::Missing {
        section: section.into(),
        key: key.into(),
        purpose: purpose.into(),
    })
}

/// `host`, `host:port`, `[v6]:port`; a bare host takes `default_port`.
fn parse_broker(
    e: &Effective,
    word: &str,
    default_port: Option<u16>,
) -> Result<Broker, ConfigError> {
    let bad = |m: String| e.invalid("broker", "host", m);
    let (host, port) = if let Some(rest) = word.strip_prefix('[') {
        let (h, after) = rest
            .split_once(']')
            .ok_or_else(|| bad(format!("{word:?}: unterminated [IPv6] address")))?;
        (h, after.strip_prefix(':'))
    } else if word.matches(':').count() == 1 {
        let (h, p) = word.split_once(':').unwrap_or((word, ""));
        (h, Some(p))
    } else {
        (word, None)
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad(format!("{word:?}: invalid port {p:?}")))?,
        None => required(
            default_port,
            "broker",
            "port",
            &format!("for STOMP when [broker] host {word:?} has no :port"),
        )?,
    };
    if host.is_empty() {
        return Err(bad(format!("{word:?}: empty host name")));
    }
    Ok(Broker {
        host: host.to_string(),
        port,
    })
}

impl SenderLogging {
    /// Only `[logging]`, so logging can start before the rest is checked.
    pub fn from_effective(e: &Effective) -> Result<Self, ConfigError> {
        let level = match e.choice("logging", "level")? {
            Some("DEBUG") => LogLevel::Debug,
            Some("WARN") => LogLevel::Warn,
            Some("ERROR") => LogLevel::Error,
            Some("CRITICAL") => LogLevel::Critical,
            _ => LogLevel::Info,
        };
        Ok(SenderLogging {
            logfile: e.path("logging", "logfile"),
            level,
            console: e.boolean("logging", "console")?,
        })
    }
}

impl SenderSettings {
    /// Types and checks everything sending needs; a missing value names its
    /// section and option.
    pub fn from_effective(e: &Effective) -> Result<Self, ConfigError> {
        // Unset means STOMP, as in SSM (the warning is given at load time).
        let protocol = match e.choice("sender", "protocol")? {
            Some("AMS") => Protocol::Ams,
            _ => Protocol::Stomp,
        };
        let hosts = e.list("broker", "host");
        let port = e.int("broker", "port")?.map(|p| p as u16);
        let transport = match protocol {
            Protocol::Stomp => {
                let hosts = required(
                    Some(hosts).filter(|h| !h.is_empty()),
                    "broker",
                    "host",
                    "to send with STOMP",
                )?;
                let brokers = hosts
                    .iter()
                    .map(|h| parse_broker(e, h, port))
                    .collect::<Result<Vec<_>, _>>()?;
                Transport::Stomp(Stomp {
                    brokers,
                    use_ssl: e.boolean("broker", "use_ssl")?,
                    window: e.int("sender", "window")?.unwrap_or(32) as usize,
                })
            }
            Protocol::Ams => {
                let host = match hosts.as_slice() {
                    [] => {
                        return Err(ConfigError::Missing {
                            section: "broker".into(),
                            key: "host".into(),
                            purpose: "to send with AMS (e.g. msg.argo.grnet.gr)".into(),
                        });
                    }
                    [one] => one.clone(),
                    _ => {
                        return Err(e.invalid(
                            "broker",
                            "host",
                            "AMS takes exactly one host (several hosts are a STOMP failover list)"
                                .into(),
                        ));
                    }
                };
                Transport::Ams(Ams {
                    host,
                    project: required(
                        e.string("messaging", "ams_project"),
                        "messaging",
                        "ams_project",
                        "to send with AMS",
                    )?,
                    token: e.secret("messaging", "token"),
                    concurrency: e.int("sender", "ams_concurrency")?.unwrap_or(8) as usize,
                    port: e.int("sender", "ams_port")?.unwrap_or(443) as u16,
                    authn_port: e.int("sender", "ams_authn_port")?.unwrap_or(8443) as u16,
                })
            }
        };
        let path_type = match e.choice("messaging", "path_type")? {
            Some("directory") => PathType::Directory,
            _ => PathType::Dirq,
        };
        let encryption = match e.choice("messaging", "encryption")? {
            Some("aes192") => Cipher::Aes192,
            Some("aes256") => Cipher::Aes256,
            _ => Cipher::Aes128,
        };
        let dur = |k: &str, d: u64| -> Result<Duration, ConfigError> {
            Ok(e.timeout("sender", k)?.unwrap_or(Duration::from_secs(d)))
        };
        let settings = SenderSettings {
            transport,
            certificates: Certificates {
                certificate: required(
                    e.path("certificates", "certificate"),
                    "certificates",
                    "certificate",
                    "to sign messages",
                )?,
                key: required(
                    e.path("certificates", "key"),
                    "certificates",
                    "key",
                    "to sign messages",
                )?,
                capath: e
                    .path("certificates", "capath")
                    .unwrap_or_else(|| "/etc/grid-security/certificates".into()),
                server_cert: e.path("certificates", "server_cert"),
                verify_server_cert: e.boolean("certificates", "verify_server_cert")?,
            },
            messaging: Messaging {
                destination: required(
                    e.string("messaging", "destination"),
                    "messaging",
                    "destination",
                    "(the queue or topic to send to)",
                )?,
                path: required(
                    e.path("messaging", "path"),
                    "messaging",
                    "path",
                    "(the outgoing message queue)",
                )?,
                path_type,
                encryption,
            },
            timeouts: Timeouts {
                connect: dur("connect_timeout", 30)?,
                receipt: dur("receipt_timeout", 60)?,
                idle: dur("idle_timeout", 120)?,
            },
            logging: SenderLogging::from_effective(e)?,
        };
        Ok(settings)
    }
}

/// Loads `sender.cfg` as `ssmsend -c PATH` does, then the `SSM_<SECTION>__<KEY>`
/// environment. The SSM 2/3 BDII style (`bdii`/`network`, no `host`) is refused.
pub fn load_sender(path: &Path, strict: bool) -> Result<Effective, ConfigError> {
    load_sender_with_env(path, strict, std::env::vars().collect())
}

/// [`load_sender`] with an explicit environment (tests).
pub(crate) fn load_sender_with_env(
    path: &Path,
    strict: bool,
    env: Vec<(String, String)>,
) -> Result<Effective, ConfigError> {
    let mut eff = super::load(
        &SCHEMA,
        Sources {
            files: vec![path.to_path_buf()],
            env,
            strict,
            ..Sources::default()
        },
    )?;
    if eff.text("sender", "protocol").is_none() {
        eff.warnings
            .push("No option set for [sender] protocol. Defaulting to STOMP.".to_string());
    }
    let legacy: Vec<&str> = ["bdii", "network"]
        .into_iter()
        .filter(|k| eff.text("broker", k).is_some())
        .collect();
    if !legacy.is_empty() {
        let keys = legacy.join("/");
        if eff.list("broker", "host").is_empty() {
            return Err(ConfigError::Unsupported(format!(
                "{}: [broker] {keys}: broker discovery through a BDII was removed in SSM 4 and is not supported; \
                 set [broker] host and port (or use protocol: AMS with host: msg.argo.grnet.gr)",
                path.display()
            )));
        }
        eff.warnings.push(format!(
            "{}: [broker] {keys} is ignored (BDII discovery is gone since SSM 4); using [broker] host",
            path.display()
        ));
    }
    Ok(eff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Origin;
    use std::io::Write;

    fn cfg(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sender.cfg");
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        (d, p)
    }

    const BASE: &str = "[sender]\nprotocol: STOMP\n[broker]\nhost: b1.example:6162, b2.example\nport: 61613\nuse_ssl: True\n[certificates]\ncertificate: /c.pem\nkey: /k.pem\n[messaging]\ndestination: /queue/x\npath: /spool\n";

    #[test]
    fn stomp_failover_list() {
        let (_d, p) = cfg(BASE);
        let e = load_sender_with_env(&p, false, vec![]).unwrap();
        assert!(e.warnings().is_empty(), "{:?}", e.warnings());
        let s = SenderSettings::from_effective(&e).unwrap();
        let Transport::Stomp(st) = &s.transport else {
            panic!()
        };
        assert_eq!(
            st.brokers,
            [
                Broker {
                    host: "b1.example".into(),
                    port: 6162
                },
                Broker {
                    host: "b2.example".into(),
                    port: 61613
                }
            ]
        );
        assert!(st.use_ssl);
        assert_eq!(st.window, 32);
        assert_eq!(s.messaging.path_type, PathType::Dirq);
        assert_eq!(s.messaging.encryption, Cipher::Aes128);
        assert_eq!(s.timeouts.receipt, Duration::from_secs(60));
        assert!(s.certificates.verify_server_cert);
        assert_eq!(s.logging.level, LogLevel::Info);
    }

    /// default < file < env (ssmsend has no option flags besides -c).
    #[test]
    fn precedence() {
        let (_d, p) = cfg(&format!("{BASE}[logging]\nlevel: DEBUG\nconsole: false\n"));
        let e = load_sender_with_env(
            &p,
            false,
            vec![
                ("SSM_LOGGING__LEVEL".into(), "error".into()),
                ("SSM_SENDER__WINDOW".into(), "4".into()),
            ],
        )
        .unwrap();
        let s = SenderSettings::from_effective(&e).unwrap();
        assert_eq!(s.logging.level, LogLevel::Error);
        assert!(!s.logging.console);
        assert_eq!(
            e.get("logging", "console").unwrap().origin,
            Origin::File {
                path: p.clone(),
                line: 15
            }
        );
        assert_eq!(
            e.get("logging", "level").unwrap().origin,
            Origin::Env {
                var: "SSM_LOGGING__LEVEL".into()
            }
        );
        assert_eq!(
            e.get("certificates", "capath").unwrap().origin,
            Origin::Default
        );
        let Transport::Stomp(st) = &s.transport else {
            panic!()
        };
        assert_eq!(st.window, 4);
    }

    #[test]
    fn missing_values_name_section_and_option() {
        for (drop, want) in [
            (
                "host: b1.example:6162, b2.example\n",
                "[broker] host is required to send with STOMP",
            ),
            (
                "destination: /queue/x\n",
                "[messaging] destination is required",
            ),
            (
                "certificate: /c.pem\n",
                "[certificates] certificate is required",
            ),
            ("key: /k.pem\n", "[certificates] key is required"),
            (
                "port: 61613\n",
                "[broker] port is required for STOMP when [broker] host \"b2.example\" has no :port",
            ),
        ] {
            let (_d, p) = cfg(&BASE.replace(drop, ""));
            let e = load_sender_with_env(&p, false, vec![]).unwrap();
            let err = SenderSettings::from_effective(&e).unwrap_err().to_string();
            assert!(err.starts_with(want), "{drop:?}: {err}");
        }
    }

    #[test]
    fn use_ssl_defaults_to_true_as_in_ssm() {
        let (_d, p) = cfg(&BASE.replace("use_ssl: True\n", ""));
        let s = SenderSettings::from_effective(&load_sender_with_env(&p, false, vec![]).unwrap())
            .unwrap();
        let Transport::Stomp(st) = &s.transport else {
            panic!()
        };
        assert!(st.use_ssl);
    }

    #[test]
    fn protocol_defaults_to_stomp_with_warning() {
        let (_d, p) = cfg(&BASE.replace("protocol: STOMP\n", ""));
        let e = load_sender_with_env(&p, false, vec![]).unwrap();
        let s = SenderSettings::from_effective(&e).unwrap();
        assert_eq!(s.transport.protocol(), Protocol::Stomp);
        assert_eq!(
            e.warnings(),
            ["No option set for [sender] protocol. Defaulting to STOMP."]
        );
    }

    #[test]
    fn ams_needs_one_host_and_a_project() {
        let text = "[sender]\nprotocol: AMS\n[broker]\nhost: msg.argo.grnet.gr\n[certificates]\ncertificate: /c\nkey: /k\n[messaging]\ndestination: t\npath: /p\nams_project: accounting\ntoken: s3cr3t\n";
        let (_d, p) = cfg(text);
        let s = SenderSettings::from_effective(&load_sender_with_env(&p, false, vec![]).unwrap())
            .unwrap();
        let Transport::Ams(a) = &s.transport else {
            panic!()
        };
        assert_eq!(a.host, "msg.argo.grnet.gr");
        assert_eq!((a.port, a.authn_port), (443, 8443));
        assert_eq!(a.token.as_ref().unwrap().expose(), "s3cr3t");
        assert!(!format!("{s:?}").contains("s3cr3t"));

        let (_d, p) = cfg(&text.replace("ams_project: accounting\n", ""));
        let err = SenderSettings::from_effective(&load_sender_with_env(&p, false, vec![]).unwrap())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "[messaging] ams_project is required to send with AMS"
        );
    }

    #[test]
    fn legacy_bdii_with_host_is_a_warning() {
        let (_d, p) = cfg(&BASE.replace(
            "[certificates]",
            "bdii: ldap://x:2170\nnetwork: PROD\n[certificates]",
        ));
        let e = load_sender_with_env(&p, false, vec![]).unwrap();
        assert!(
            e.warnings()
                .iter()
                .any(|w| w.contains("[broker] bdii/network is ignored"))
        );
    }
}
