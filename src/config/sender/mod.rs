//! sender.cfg for `ssmsend`: the typed [`SenderSettings`] sending runs with,
//! in the types of the modules that use them ([`Cipher`], [`Layout`],
//! [`Timeouts`], [`CertificateSettings`]), built from the [`Effective`]
//! configuration [`load_sender`] reads. The option table is `options.rs`.

mod options;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{ConfigError, Effective, Sources};
use crate::secret::Secret;
pub use crate::smime::{CertificateSettings, Cipher};
pub use crate::spool::Layout;
pub use crate::stomp::Timeouts;
pub(crate) use options::SCHEMA;

/// `[sender] protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Stomp,
    Ams,
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
    /// Ours, `[sender] window`. Default 64 (enough for 30 ms each way; see the WAN benchmark).
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
    /// Ours, `[sender] ams_max_messages_per_request`. Default 100; 1 is
    /// SSM's one message per request.
    pub max_messages_per_request: usize,
    /// Ours, `[sender] ams_max_request_bytes`. Default 1,000,000.
    pub max_request_bytes: usize,
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

/// `[messaging]`.
#[derive(Clone, Debug)]
pub struct Messaging {
    /// Required.
    pub destination: String,
    /// Required.
    pub path: PathBuf,
    /// Default dirq.
    pub path_type: Layout,
    /// Ours. Default aes128.
    pub encryption: Cipher,
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

impl FromStr for LogLevel {
    type Err = ();
    /// The canonical names of the table's LEVELS (aliases already resolved).
    fn from_str(name: &str) -> Result<Self, ()> {
        match name {
            "DEBUG" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARN" => Ok(LogLevel::Warn),
            "ERROR" => Ok(LogLevel::Error),
            "CRITICAL" => Ok(LogLevel::Critical),
            _ => Err(()),
        }
    }
}

/// `[messaging] path_type` (the table's PATH_TYPES) as the spool's layout:
/// config's own mapping, as the names are sender.cfg's.
fn layout(e: &Effective, name: &str) -> Result<Layout, ConfigError> {
    match name {
        "dirq" => Ok(Layout::Dirq),
        "directory" => Ok(Layout::Directory),
        _ => Err(e.invalid(
            "messaging",
            "path_type",
            format!("internal: {name:?} has no meaning here"),
        )),
    }
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
    /// `[certificates]`.
    pub certificates: CertificateSettings,
    pub messaging: Messaging,
    /// Ours, `[sender] *_timeout`. Default 30 s connect, 60 s receipt, 120 s idle.
    pub timeouts: Timeouts,
    pub logging: SenderLogging,
    /// Ours, `[sender] loader_checks`. Default true: a message the APEL
    /// server's loader would reject goes to reject/ instead of being sent.
    pub loader_checks: bool,
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
        Ok(SenderLogging {
            logfile: e.path("logging", "logfile"),
            level: e.typed("logging", "level", e.choice_or_default("logging", "level")?)?,
            console: e.boolean("logging", "console")?,
        })
    }
}

/// `[messaging] path` and `path_type`: all that `ssmsend status` needs
/// (it signs and sends nothing, so no certificate or broker is required).
pub fn outgoing_queue(e: &Effective) -> Result<(PathBuf, Layout), ConfigError> {
    let path = required(
        e.path("messaging", "path"),
        "messaging",
        "path",
        "(the outgoing message queue)",
    )?;
    Ok((
        path,
        layout(e, e.choice_or_default("messaging", "path_type")?)?,
    ))
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
                    window: e.int_or_default("sender", "window")? as usize,
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
                    concurrency: e.int_or_default("sender", "ams_concurrency")? as usize,
                    max_messages_per_request: e
                        .int_or_default("sender", "ams_max_messages_per_request")?
                        as usize,
                    max_request_bytes: e.int_or_default("sender", "ams_max_request_bytes")?
                        as usize,
                    port: e.int_or_default("sender", "ams_port")? as u16,
                    authn_port: e.int_or_default("sender", "ams_authn_port")? as u16,
                })
            }
        };
        let (path, path_type) = outgoing_queue(e)?;
        let encryption = e.typed(
            "messaging",
            "encryption",
            e.choice_or_default("messaging", "encryption")?,
        )?;
        let settings = SenderSettings {
            // Default true (the table's default): only an explicit value turns it off.
            loader_checks: e.get("sender", "loader_checks").is_none()
                || e.boolean("sender", "loader_checks")?,
            transport,
            certificates: CertificateSettings {
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
                capath: e.path_or_default("certificates", "capath")?,
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
                path,
                path_type,
                encryption,
            },
            timeouts: Timeouts {
                connect: e.timeout_or_default("sender", "connect_timeout")?,
                receipt: e.timeout_or_default("sender", "receipt_timeout")?,
                idle: e.timeout_or_default("sender", "idle_timeout")?,
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
    use std::time::Duration;

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
        assert_eq!(st.window, 64);
        assert_eq!(s.messaging.path_type, Layout::Dirq);
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

    /// The table's names as the real types: `[messaging] path_type` and
    /// `encryption` become the spool's layout and the S/MIME cipher.
    #[test]
    fn path_type_and_encryption_are_the_real_types() {
        let (_d, p) = cfg(&format!("{BASE}path_type: directory\nencryption: aes256\n"));
        let env = vec![("SSM_SENDER__CONNECT_TIMEOUT".into(), "5s".into())];
        let s =
            SenderSettings::from_effective(&load_sender_with_env(&p, false, env).unwrap()).unwrap();
        assert_eq!(s.messaging.path_type, Layout::Directory);
        assert_eq!(s.messaging.encryption, Cipher::Aes256);
        assert_eq!(s.timeouts.connect, Duration::from_secs(5));
        assert_eq!(s.timeouts.idle, Duration::from_secs(120));
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
