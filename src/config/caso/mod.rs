//! caso.conf for `caso-extract`: the typed [`CasoSettings`] extraction runs
//! with, built from the [`Effective`] configuration that [`load_caso`] reads
//! from a [`CasoSources`]. The option table is `options.rs`;
//! `[keystone_auth]` and its check are `auth.rs`.

mod auth;
mod energy;
mod options;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::voms::VoMap;
use super::{ConfigError, Effective, FlagValue, Origin, Sources, conf_files_in};
pub use crate::openstack::Interface;
pub use crate::record::RecordType;
use crate::time::Timestamp;
pub use auth::KeystoneAuth;
pub use energy::{GreenDigitCim, PrometheusSettings, valid_label_name};
use options::D;
pub(crate) use options::SCHEMA;

/// Where records go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Messenger {
    /// APEL messages in a dirq spool for `ssmsend` (`ssmv4` is its old name).
    Ssm,
    /// Discard.
    Noop,
    /// JSON lines to a Logstash TCP input.
    Logstash,
    /// Energy records to the GreenDIGIT CIM service.
    GreenDigitCim,
}

/// Which OpenStack service records are extracted from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extractor {
    Nova,
    Cinder,
    Neutron,
    /// Energy records from Prometheus (VMs listed by Nova).
    Prometheus,
}

/// Keystone authentication method (`v3password` etc. are old spellings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthType {
    Password,
    ApplicationCredential,
    OidcAccessToken,
}

// Each enum above from the canonical names of its option's table
// (MESSENGERS, EXTRACTORS, AUTH_TYPES; INTERFACES is the catalog's own
// `openstack::Interface`, RECORD_TYPES the record module's): aliases are already
// resolved, and a name without a variant is a bug in the table.
impl std::str::FromStr for Messenger {
    type Err = ();
    fn from_str(name: &str) -> Result<Self, ()> {
        match name {
            "ssm" => Ok(Messenger::Ssm),
            "noop" => Ok(Messenger::Noop),
            "logstash" => Ok(Messenger::Logstash),
            "greendigit_cim" => Ok(Messenger::GreenDigitCim),
            _ => Err(()),
        }
    }
}

impl std::str::FromStr for Extractor {
    type Err = ();
    fn from_str(name: &str) -> Result<Self, ()> {
        match name {
            "nova" => Ok(Extractor::Nova),
            "cinder" => Ok(Extractor::Cinder),
            "neutron" => Ok(Extractor::Neutron),
            "prometheus" => Ok(Extractor::Prometheus),
            _ => Err(()),
        }
    }
}

impl std::str::FromStr for AuthType {
    type Err = ();
    fn from_str(name: &str) -> Result<Self, ()> {
        match name {
            "password" => Ok(AuthType::Password),
            "applicationcredential" => Ok(AuthType::ApplicationCredential),
            "oidcaccesstoken" => Ok(AuthType::OidcAccessToken),
            _ => Err(()),
        }
    }
}

/// A list option's canonical choice names as their enums.
fn typed_list<T: std::str::FromStr>(
    e: &Effective,
    section: &str,
    key: &str,
) -> Result<Vec<T>, ConfigError> {
    e.choices(section, key)?
        .into_iter()
        .map(|name| e.typed(section, key, name))
        .collect()
}

/// `[ssm]`: the spool the ssm messenger writes.
#[derive(Clone, Debug)]
pub struct Ssm {
    /// Default `/var/spool/apel/outgoing/openstack`.
    pub output_path: PathBuf,
    /// Records per message. Default 100.
    pub max_size: usize,
}

/// `[benchmark]`: flavor extra-spec keys.
#[derive(Clone, Debug)]
pub struct Benchmark {
    /// Default `accounting:benchmark_type`.
    pub name_key: String,
    /// Default `accounting:benchmark_value`.
    pub value_key: String,
}

/// `[accelerator]`: flavor extra-spec keys.
#[derive(Clone, Debug)]
pub struct Accelerator {
    /// Default `Accelerator:Type`.
    pub type_key: String,
    /// Default `Accelerator:Vendor`.
    pub vendor_key: String,
    /// Default `Accelerator:Model`.
    pub model_key: String,
    /// Default `Accelerator:Number`.
    pub number_key: String,
}

/// `[logstash]`.
#[derive(Clone, Debug)]
pub struct Logstash {
    /// Default `localhost`.
    pub host: String,
    /// Default 5000.
    pub port: u16,
}

/// `[messenger_*] record_types`, with "empty = all" already applied.
#[derive(Clone, Debug)]
pub struct MessengerRecordTypes {
    /// Default cloud, ip, accelerator, storage.
    pub ssm: Vec<RecordType>,
    /// Default all.
    pub noop: Vec<RecordType>,
    /// Default all.
    pub logstash: Vec<RecordType>,
    /// Default energy (cASO: all; the CIM service takes energy records).
    pub greendigit_cim: Vec<RecordType>,
}

impl MessengerRecordTypes {
    pub fn for_messenger(&self, m: Messenger) -> &[RecordType] {
        match m {
            Messenger::Ssm => &self.ssm,
            Messenger::Noop => &self.noop,
            Messenger::Logstash => &self.logstash,
            Messenger::GreenDigitCim => &self.greendigit_cim,
        }
    }
}

/// Logging options of caso.conf (oslo.log).
#[derive(Clone, Debug)]
pub struct CasoLogging {
    /// `debug`: DEBUG instead of INFO. Default false.
    pub debug: bool,
    /// `log_file` joined to `log_dir` (oslo: `log_dir` alone means
    /// `<log_dir>/caso-extract.log`). Default unset: stderr.
    pub file: Option<PathBuf>,
    /// `use_json`. Default false.
    pub use_json: bool,
}

/// Everything `caso-extract` acts on.
#[derive(Clone, Debug)]
pub struct CasoSettings {
    /// Default `noop` (the appliance sets `ssmv4`, i.e. ssm). Never empty.
    pub messengers: Vec<Messenger>,
    /// Default `/var/spool/caso`.
    pub spooldir: PathBuf,
    /// Default `$CASO_LOCK_PATH`, else `$spooldir`.
    pub lock_path: PathBuf,
    /// Default false.
    pub dry_run: bool,
    /// GOCDB site name. No default; required to extract ([`Self::site_name`]).
    pub site_name: Option<String>,
    /// Default `$site_name`.
    pub service_name: Option<String>,
    /// Default empty (only projects tagged `caso_tag`).
    pub projects: Vec<String>,
    /// Default `caso`.
    pub caso_tag: String,
    /// Default `VO`.
    pub vo_property: String,
    /// Default `/etc/caso/voms.json` (used only if it exists).
    pub mapping_file: PathBuf,
    /// `mapping_file` as loaded (empty when there is no such file).
    pub vo_map: VoMap,
    /// Default unset: each project's lastrun.
    pub extract_from: Option<Timestamp>,
    /// Default unset: now.
    pub extract_to: Option<Timestamp>,
    /// Default nova, cinder, neutron. Never empty.
    pub extractors: Vec<Extractor>,
    /// Default unset.
    pub region_name: Option<String>,
    /// Ours. Default 8.
    pub concurrency: usize,
    /// Ours. Default 30 min.
    pub lock_timeout: Duration,
    /// Ours. Default unset: an unmapped project is an error.
    pub default_vo: Option<String>,
    pub logging: CasoLogging,
    pub keystone_auth: KeystoneAuth,
    pub ssm: Ssm,
    pub benchmark: Benchmark,
    pub accelerator: Accelerator,
    pub logstash: Logstash,
    pub record_types: MessengerRecordTypes,
    pub prometheus: PrometheusSettings,
    pub greendigit_cim: GreenDigitCim,
}

fn required(e: &Effective, section: &str, key: &str) -> Result<String, ConfigError> {
    e.string(section, key).ok_or_else(|| ConfigError::Missing {
        section: section.into(),
        key: key.into(),
        purpose: "(no default)".into(),
    })
}

/// `extract_from` and `extract_to`, checked against each other and the clock:
/// either before 1970, or `extract_from` after `now` (nothing could be
/// extracted), is a configuration error, not a failure of every project.
pub(crate) fn period(
    e: &Effective,
    now: Timestamp,
) -> Result<(Option<Timestamp>, Option<Timestamp>), ConfigError> {
    let from = e.time(D, "extract_from")?;
    let to = e.time(D, "extract_to")?;
    for (key, t) in [("extract_from", from), ("extract_to", to)] {
        if let Some(t) = t.filter(|t| *t < Timestamp::EPOCH) {
            return Err(e.invalid(D, key, format!("{t} is before 1970-01-01")));
        }
    }
    if let Some(t) = from.filter(|t| *t > now) {
        return Err(e.invalid(
            D,
            "extract_from",
            format!("{t} is in the future (now {now})"),
        ));
    }
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(e.invalid(D, "extract_from", format!("{f} is after extract_to {t}")));
    }
    Ok((from, to))
}

/// `[<section>] record_types`; empty means `all` (cASO: every type; for
/// the ssm messenger ours is every APEL type, as energy cannot go there).
fn record_types(
    e: &Effective,
    section: &str,
    all: &[RecordType],
) -> Result<Vec<RecordType>, ConfigError> {
    let types: Vec<RecordType> = typed_list(e, section, "record_types")?;
    if types.is_empty() && e.list(section, "record_types").is_empty() {
        return Ok(all.to_vec());
    }
    Ok(types)
}

impl CasoLogging {
    /// Only the logging options, so logging can start before the rest is checked.
    pub fn from_effective(e: &Effective) -> Result<Self, ConfigError> {
        let file = match (e.path(D, "log_file"), e.path(D, "log_dir")) {
            (Some(f), Some(dir)) => Some(dir.join(f)),
            (Some(f), None) => Some(f),
            (None, Some(dir)) => Some(dir.join("caso-extract.log")),
            (None, None) => None,
        };
        Ok(CasoLogging {
            debug: e.boolean(D, "debug")?,
            file,
            use_json: e.boolean(D, "use_json")?,
        })
    }
}

impl CasoSettings {
    /// Types every option of the effective configuration.
    pub fn from_effective(e: &Effective) -> Result<Self, ConfigError> {
        let messengers: Vec<Messenger> = typed_list(e, D, "messengers")?;
        if messengers.is_empty() {
            return Err(ConfigError::Missing {
                section: D.into(),
                key: "messengers".into(),
                purpose: "(at least one of ssm, noop, logstash, greendigit_cim)".into(),
            });
        }
        let extractors: Vec<Extractor> = typed_list(e, D, "extractor")?;
        if extractors.is_empty() {
            return Err(ConfigError::Missing {
                section: D.into(),
                key: "extractor".into(),
                purpose: "(at least one of nova, cinder, neutron, prometheus)".into(),
            });
        }
        let (extract_from, extract_to) = period(e, Timestamp::now())?;
        let record_types = MessengerRecordTypes {
            ssm: record_types(e, "messenger_ssm", &RecordType::APEL)?,
            noop: record_types(e, "messenger_noop", &RecordType::ALL)?,
            logstash: record_types(e, "messenger_logstash", &RecordType::ALL)?,
            greendigit_cim: record_types(e, "messenger_greendigit_cim", &RecordType::ALL)?,
        };
        let greendigit_cim = GreenDigitCim::from_effective(e)?;
        energy::check(e, &record_types.ssm)?;
        let mapping_file = e.path_or_default(D, "mapping_file")?;
        let spooldir = e.path_or_default(D, "spooldir")?;
        Ok(CasoSettings {
            messengers,
            // Default `$spooldir`, or `$CASO_LOCK_PATH`; empty: the spool.
            lock_path: e.path(D, "lock_path").unwrap_or_else(|| spooldir.clone()),
            spooldir,
            dry_run: e.boolean(D, "dry_run")?,
            site_name: e.string(D, "site_name"),
            service_name: e.string(D, "service_name"),
            projects: e.list(D, "projects"),
            caso_tag: required(e, D, "caso_tag")?,
            vo_property: required(e, D, "vo_property")?,
            vo_map: VoMap::load(&mapping_file)?,
            mapping_file,
            extract_from,
            extract_to,
            extractors,
            region_name: e.string(D, "region_name"),
            concurrency: e.int_or_default(D, "concurrency")? as usize,
            lock_timeout: e.duration_or_default(D, "lock_timeout")?,
            default_vo: e.string(D, "default_vo"),
            logging: CasoLogging::from_effective(e)?,
            keystone_auth: KeystoneAuth::from_effective(e)?,
            ssm: Ssm {
                output_path: e.path_or_default("ssm", "output_path")?,
                max_size: e.int_or_default("ssm", "max_size")? as usize,
            },
            benchmark: Benchmark {
                name_key: required(e, "benchmark", "name_key")?,
                value_key: required(e, "benchmark", "value_key")?,
            },
            accelerator: Accelerator {
                type_key: required(e, "accelerator", "type_key")?,
                vendor_key: required(e, "accelerator", "vendor_key")?,
                model_key: required(e, "accelerator", "model_key")?,
                number_key: required(e, "accelerator", "number_key")?,
            },
            logstash: Logstash {
                host: required(e, "logstash", "host")?,
                port: e.int_or_default("logstash", "port")? as u16,
            },
            record_types,
            prometheus: PrometheusSettings::from_effective(e)?,
            greendigit_cim,
        })
    }

    /// What extraction cannot do without and loading does not require (so
    /// that `--print-config` works without it): the site name, and the CIM
    /// account with the greendigit_cim messenger.
    pub fn ready_to_extract(&self) -> Result<(), ConfigError> {
        self.site_name()?;
        energy::check_account(&self.messengers, &self.greendigit_cim)
    }

    /// The site name, which extraction cannot do without.
    pub fn site_name(&self) -> Result<&str, ConfigError> {
        self.site_name
            .as_deref()
            .ok_or_else(|| ConfigError::Missing {
                section: D.into(),
                key: "site_name".into(),
                purpose: "to extract records: set it to the site's GOCDB name in caso.conf".into(),
            })
    }

    /// `service_name`, which defaults to the site name.
    pub fn service_name(&self) -> Result<&str, ConfigError> {
        match self.service_name.as_deref() {
            Some(s) => Ok(s),
            None => self.site_name(),
        }
    }
}

/// The files oslo.config reads when no `--config-file` is given: the first
/// `caso.conf` and the first `caso-extract.conf` found in `~/.caso`, `~`,
/// `/etc/caso`, `/etc`; likewise the `.conf.d` directories.
fn default_locations(home: Option<&Path>, suffix: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(h) = home {
        dirs.push(h.join(".caso"));
        dirs.push(h.to_path_buf());
    }
    dirs.push("/etc/caso".into());
    dirs.push("/etc".into());
    ["caso", "caso-extract"]
        .iter()
        .filter_map(|name| {
            dirs.iter()
                .map(|d| d.join(format!("{name}{suffix}")))
                .find(|p| p.exists())
        })
        .collect()
}

/// What `caso-extract` was told to read: config's own view of its command
/// line, which `cli` builds (config never sees the flags themselves).
#[derive(Clone, Debug, Default)]
pub struct CasoSources {
    /// `--config-file`, in order; empty: the oslo default locations.
    pub files: Vec<PathBuf>,
    /// `--config-dir`, read after the files; empty: the oslo default locations.
    pub dirs: Vec<PathBuf>,
    /// The flags that set caso.conf options (the highest layer).
    pub flags: Vec<FlagValue>,
    /// `--strict-config`: unknown options are errors.
    pub strict: bool,
}

/// Loads caso.conf as `caso-extract` does: files from `--config-file` (or the
/// oslo default locations), then `--config-dir` `*.conf` files, environment,
/// flags.
pub fn load_caso(sources: &CasoSources) -> Result<Effective, ConfigError> {
    load_caso_with_env(sources, std::env::vars().collect())
}

/// [`load_caso`] with an explicit environment (tests).
pub(crate) fn load_caso_with_env(
    sources: &CasoSources,
    env: Vec<(String, String)>,
) -> Result<Effective, ConfigError> {
    let home = env
        .iter()
        .find(|(k, _)| k == "HOME")
        .map(|(_, v)| PathBuf::from(v));
    let mut notes = Vec::new();
    let mut files = if sources.files.is_empty() {
        default_locations(home.as_deref(), ".conf")
    } else {
        sources.files.clone()
    };
    let dirs = if sources.dirs.is_empty() {
        default_locations(home.as_deref(), ".conf.d")
    } else {
        sources.dirs.clone()
    };
    for d in &dirs {
        files.extend(conf_files_in(d)?);
    }
    // Only when nothing at all was read: a --config-dir file is a file.
    if files.is_empty() {
        let dirs: Vec<String> = sources
            .dirs
            .iter()
            .map(|d| format!("{}/*.conf", d.display()))
            .collect();
        let also = if dirs.is_empty() {
            String::new()
        } else {
            format!(" nor {}", dirs.join(", "))
        };
        notes.push(format!(
            "no configuration file given or found (looked for caso.conf in ~/.caso, ~, /etc/caso, /etc{also}); using defaults"
        ));
    }
    let mut dynamic_defaults = Vec::new();
    if let Some((_, v)) = env.iter().find(|(k, _)| k == "CASO_LOCK_PATH") {
        dynamic_defaults.push((
            D,
            "lock_path",
            v.clone(),
            Origin::Env {
                var: "CASO_LOCK_PATH".into(),
            },
        ));
    }
    super::load(
        &SCHEMA,
        Sources {
            files,
            env,
            dynamic_defaults,
            flags: sources.flags.clone(),
            strict: sources.strict,
            notes,
        },
    )
}

/// Flags that set caso.conf options: `(section, key, flag)`.
pub(crate) fn flag(
    section: &'static str,
    key: &'static str,
    flag: &'static str,
    value: String,
) -> FlagValue {
    FlagValue {
        section,
        key,
        value,
        flag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `--config-file` / `--config-dir` as the command line gives them, and
    /// the two option flags these tests use (cli's own tests cover the rest).
    fn cli(args: &[&str]) -> CasoSources {
        let mut sources = CasoSources::default();
        let mut args = args.iter();
        while let Some(a) = args.next() {
            match *a {
                "--config-file" => sources.files.push(args.next().unwrap().into()),
                "--config-dir" => sources.dirs.push(args.next().unwrap().into()),
                "--projects" => sources.flags.push(flag(
                    D,
                    "projects",
                    "--projects",
                    args.next().unwrap().to_string(),
                )),
                "--nodebug" => sources
                    .flags
                    .push(flag(D, "debug", "--nodebug", "false".into())),
                other => panic!("not a flag these tests know: {other}"),
            }
        }
        sources
    }

    fn file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
        let p = dir.path().join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p.display().to_string()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load(args: &[&str], e: &[(&str, &str)]) -> Effective {
        load_caso_with_env(&cli(args), env(e)).unwrap()
    }

    /// default < file < second file < env < flag, one option each step.
    #[test]
    fn precedence() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nregion_name = file1\nsite_name = S1\nprojects = p1\nspooldir = /a\n",
        );
        let b = file(&d, "b.conf", "[DEFAULT]\nsite_name = S2\nprojects = p2\n");
        let ev = [
            ("CASO_DEFAULT__PROJECTS", "p3"),
            ("CASO_DEFAULT__DEBUG", "yes"),
        ];

        // An empty --config-dir: no file at all, only defaults.
        let empty = tempfile::tempdir().unwrap();
        let e0 = load(&["--config-dir", empty.path().to_str().unwrap()], &[]);
        let s0 = CasoSettings::from_effective(&e0).unwrap();
        assert_eq!(s0.spooldir, PathBuf::from("/var/spool/caso"));
        assert_eq!(e0.get(D, "spooldir").unwrap().origin, Origin::Default);

        let e1 = load(&["--config-file", &a], &[]);
        assert_eq!(e1.text(D, "site_name"), Some("S1"));
        assert_eq!(e1.text(D, "spooldir"), Some("/a"));

        let e2 = load(&["--config-file", &a, "--config-file", &b], &[]);
        assert_eq!(e2.text(D, "site_name"), Some("S2"));
        assert_eq!(
            e2.text(D, "region_name"),
            Some("file1"),
            "first file still counts"
        );
        assert_eq!(
            e2.get(D, "site_name").unwrap().origin,
            Origin::File {
                path: b.clone().into(),
                line: 2
            }
        );

        let e3 = load(&["--config-file", &a, "--config-file", &b], &ev);
        let s3 = CasoSettings::from_effective(&e3).unwrap();
        assert_eq!(s3.projects, ["p3"]);
        assert!(s3.logging.debug);
        assert_eq!(s3.site_name.as_deref(), Some("S2"));
        assert_eq!(
            e3.get(D, "projects").unwrap().origin,
            Origin::Env {
                var: "CASO_DEFAULT__PROJECTS".into()
            }
        );

        let e4 = load(
            &[
                "--config-file",
                &a,
                "--config-file",
                &b,
                "--projects",
                "p4,p5",
                "--nodebug",
            ],
            &ev,
        );
        let s4 = CasoSettings::from_effective(&e4).unwrap();
        assert_eq!(s4.projects, ["p4", "p5"]);
        assert!(!s4.logging.debug);
        assert_eq!(
            e4.get(D, "projects").unwrap().origin,
            Origin::Flag {
                flag: "--projects".into()
            }
        );
    }

    #[test]
    fn config_dir_files_come_after_config_files_sorted() {
        let d = tempfile::tempdir().unwrap();
        let main = file(
            &d,
            "main.conf",
            "[DEFAULT]\nsite_name = MAIN\nregion_name = r\n",
        );
        let sub = tempfile::tempdir().unwrap();
        file(&sub, "20-b.conf", "[DEFAULT]\nsite_name = B\n");
        file(
            &sub,
            "10-a.conf",
            "[DEFAULT]\nsite_name = A\ncaso_tag = t\n",
        );
        file(&sub, "ignored.txt", "[DEFAULT]\nsite_name = TXT\n");
        let e = load(
            &[
                "--config-file",
                &main,
                "--config-dir",
                sub.path().to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(e.text(D, "site_name"), Some("B"));
        assert_eq!(e.text(D, "caso_tag"), Some("t"));
        assert_eq!(e.text(D, "region_name"), Some("r"));
    }

    #[test]
    fn interpolation_after_all_layers() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nsite_name = FILE\nspooldir = /srv/caso\n[ssm]\noutput_path = ${spooldir}/out\n",
        );
        let e = load(
            &["--config-file", &a],
            &[("CASO_DEFAULT__SITE_NAME", "ENV")],
        );
        let s = CasoSettings::from_effective(&e).unwrap();
        assert_eq!(s.service_name.as_deref(), Some("ENV"));
        assert_eq!(s.lock_path, PathBuf::from("/srv/caso"));
        assert_eq!(s.ssm.output_path, PathBuf::from("/srv/caso/out"));
    }

    #[test]
    fn interpolation_chain_literal_and_loop() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nsite_name = $region_name\nregion_name = ${caso_tag}-x\ncaso_tag = $$tag\n",
        );
        let s = CasoSettings::from_effective(&load(&["--config-file", &a], &[])).unwrap();
        assert_eq!(s.site_name.as_deref(), Some("$tag-x"));
        assert_eq!(s.service_name.as_deref(), Some("$tag-x"));

        let b = file(
            &d,
            "b.conf",
            "[DEFAULT]\nsite_name = $region_name\nregion_name = $site_name\n",
        );
        let err = load_caso_with_env(&cli(&["--config-file", &b]), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("b.conf:3: [DEFAULT] region_name: interpolation loop: [DEFAULT] region_name -> [DEFAULT] site_name -> [DEFAULT] region_name"),
            "{err}"
        );

        let c = file(&d, "c.conf", "[DEFAULT]\nsite_name = $nosuch\n");
        let err = load_caso_with_env(&cli(&["--config-file", &c]), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("c.conf:2: [DEFAULT] site_name: $nosuch does not name an option"),
            "{err}"
        );
    }

    #[test]
    fn interpolation_error_does_not_echo_a_secret() {
        let d = tempfile::tempdir().unwrap();
        let a = file(&d, "a.conf", "[keystone_auth]\npassword = abc$xyz\n");
        let err = load_caso_with_env(&cli(&["--config-file", &a]), vec![])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "a.conf:2: [keystone_auth] password: a $ placeholder does not name an option"
            ),
            "{err}"
        );
        assert!(!err.contains("xyz"), "{err}");
    }

    #[test]
    fn group_interpolation_and_unset_is_empty() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nsite_name = x${region_name}y\nregion_name =\n[keystone_auth]\nproject_name = $DEFAULT.site_name-$username\n",
        );
        let s = CasoSettings::from_effective(&load(&["--config-file", &a], &[])).unwrap();
        assert_eq!(s.site_name.as_deref(), Some("xy"));
        assert_eq!(s.keystone_auth.project_name.as_deref(), Some("xy-"));
    }

    #[test]
    fn old_spellings_work_with_one_warning_each() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nmessengers = ssmv4, noop\ntenants = a,b\n[keystone_auth]\nauth_type = v3applicationcredential\n[messenger_ssmv4]\nrecord_types = cloud\n",
        );
        let b = file(&d, "b.conf", "[DEFAULT]\nmessengers = ssmv4\n");
        let e = load(&["--config-file", &a, "--config-file", &b], &[]);
        let s = CasoSettings::from_effective(&e).unwrap();
        assert_eq!(s.messengers, [Messenger::Ssm]);
        assert_eq!(s.projects, ["a", "b"]);
        assert_eq!(
            s.keystone_auth.auth_type,
            Some(AuthType::ApplicationCredential)
        );
        assert_eq!(s.record_types.ssm, [RecordType::Cloud]);
        let w = e.warnings().join("\n");
        assert_eq!(w.matches("\"ssmv4\" is deprecated").count(), 1, "{w}");
        assert!(
            w.contains("a.conf:3: [DEFAULT] tenants is deprecated, use [DEFAULT] projects"),
            "{w}"
        );
        assert!(
            w.contains("old spelling of \"applicationcredential\""),
            "{w}"
        );
        assert!(
            w.contains("[messenger_ssmv4] record_types is deprecated"),
            "{w}"
        );
    }

    #[test]
    fn the_energy_path_loads_and_refuses_energy_for_apel() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nextractor = nova,prometheus\nmessengers = ssm,greendigit_cim\n[prometheus]\nprometheus_endpoint = http://x:9090\nlabels = a:b, c : d:e\ncpu_normalization_factor = 0.5\n[greendigit_cim]\nemail = e@x\npassword = pw\n",
        );
        let s = CasoSettings::from_effective(&load(&["--config-file", &a], &[])).unwrap();
        assert_eq!(s.extractors, [Extractor::Nova, Extractor::Prometheus]);
        assert_eq!(s.record_types.greendigit_cim, [RecordType::Energy]);
        assert_eq!(s.record_types.ssm, RecordType::APEL);
        assert_eq!(s.record_types.logstash, RecordType::ALL);
        assert_eq!(
            s.prometheus.labels,
            [("a".into(), "b".into()), ("c".into(), "d:e".into())]
        );
        assert_eq!(s.prometheus.cpu_normalization_factor, 0.5);
        assert_eq!(s.prometheus.step_seconds, 30);
        assert_eq!(s.prometheus.endpoint.as_str(), "http://x:9090/");
        // An empty ssm list is every APEL type, never energy.
        let b = file(&d, "b.conf", "[messenger_ssm]\nrecord_types =\n");
        let s = CasoSettings::from_effective(&load(&["--config-file", &b], &[])).unwrap();
        assert_eq!(s.record_types.ssm, RecordType::APEL);
        for (text, want) in [
            (
                "[messenger_ssm]\nrecord_types = cloud,energy\n",
                "a.conf:2: [messenger_ssm] record_types: energy records cannot go to APEL",
            ),
            (
                "[DEFAULT]\nsite_name = S\nmessengers = greendigit_cim\n[greendigit_cim]\nemail = e@x\n",
                "[greendigit_cim] password is required by the greendigit_cim messenger",
            ),
            (
                "[prometheus]\nlabels = novalue\n",
                "a.conf:2: [prometheus] labels: \"novalue\" is not key:value",
            ),
            (
                "[prometheus]\nprometheus_metric_name = a-b\n",
                "[prometheus] prometheus_metric_name: \"a-b\" is not a Prometheus metric name",
            ),
            (
                "[prometheus]\nprometheus_step_seconds = 0\n",
                "[prometheus] prometheus_step_seconds: 0 is out of range 1..=86400",
            ),
            (
                "[prometheus]\ncpu_normalization_factor = nan\n",
                "[prometheus] cpu_normalization_factor: expected a finite number",
            ),
            (
                "[prometheus]\nprometheus_endpoint = ftp://u:secret@h/\n",
                "[prometheus] prometheus_endpoint: ftp://h:21 is not an http(s) URL",
            ),
        ] {
            let a = file(&d, "a.conf", text);
            let err = load_caso_with_env(&cli(&["--config-file", &a]), vec![])
                .and_then(|e| CasoSettings::from_effective(&e))
                .and_then(|s| s.ready_to_extract())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn bad_values_name_option_and_line() {
        let d = tempfile::tempdir().unwrap();
        for (text, want) in [
            (
                "[DEFAULT]\n\ndry_run = maybe\n",
                "a.conf:3: [DEFAULT] dry_run: expected a boolean",
            ),
            (
                "[ssm]\nmax_size = 0\n",
                "a.conf:2: [ssm] max_size: 0 is out of range 1..=100000",
            ),
            (
                "[DEFAULT]\nmessengers = ssm,carrier_pigeon\n",
                "a.conf:2: [DEFAULT] messengers: \"carrier_pigeon\" is not one of ssm, noop, logstash",
            ),
            (
                "[DEFAULT]\nextract_from = yesterday\n",
                "a.conf:2: [DEFAULT] extract_from: invalid date/time",
            ),
            (
                "[keystone_auth]\nauth_type = token\n",
                "a.conf:2: [keystone_auth] auth_type: \"token\" is not one of password",
            ),
        ] {
            let a = file(&d, "a.conf", text);
            let err = load_caso_with_env(&cli(&["--config-file", &a]), vec![])
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    /// An empty value means the table's default, as before the getters
    /// fell back to it (the defaults are written once, in options.rs).
    #[test]
    fn empty_values_take_the_table_default() {
        let d = tempfile::tempdir().unwrap();
        let a = file(
            &d,
            "a.conf",
            "[DEFAULT]\nspooldir =\nlock_path =\nconcurrency =\nlock_timeout =\n[ssm]\nmax_size =\n[keystone_auth]\ninterface =\nretry_backoff =\n",
        );
        let s = CasoSettings::from_effective(&load(&["--config-file", &a], &[])).unwrap();
        assert_eq!(s.spooldir, PathBuf::from("/var/spool/caso"));
        assert_eq!(s.lock_path, PathBuf::from("/var/spool/caso"));
        assert_eq!(s.concurrency, 8);
        assert_eq!(s.lock_timeout, Duration::from_secs(1800));
        assert_eq!(s.ssm.max_size, 100);
        assert_eq!(s.keystone_auth.interface, Interface::Public);
        assert_eq!(s.keystone_auth.retry_backoff, Duration::from_secs(1));
    }

    #[test]
    fn booleans_in_any_case() {
        let d = tempfile::tempdir().unwrap();
        for (v, want) in [
            ("TRUE", true),
            ("Yes", true),
            ("on", true),
            ("1", true),
            ("False", false),
            ("NO", false),
            ("Off", false),
            ("0", false),
        ] {
            let a = file(&d, "a.conf", &format!("[DEFAULT]\ndry_run = {v}\n"));
            let s = CasoSettings::from_effective(&load(&["--config-file", &a], &[])).unwrap();
            assert_eq!(s.dry_run, want, "{v}");
        }
    }

    #[test]
    fn caso_lock_path_env_is_the_default() {
        let d = tempfile::tempdir().unwrap();
        let a = file(&d, "a.conf", "[DEFAULT]\nspooldir = /s\n");
        let s = CasoSettings::from_effective(&load(
            &["--config-file", &a],
            &[("CASO_LOCK_PATH", "/locks")],
        ))
        .unwrap();
        assert_eq!(s.lock_path, PathBuf::from("/locks"));
    }

    #[test]
    fn secrets_are_masked() {
        let d = tempfile::tempdir().unwrap();
        let a = file(&d, "a.conf", "[keystone_auth]\npassword = hunter2\n");
        let e = load(&["--config-file", &a], &[]);
        let s = CasoSettings::from_effective(&e).unwrap();
        assert_eq!(format!("{:?}", s.keystone_auth.password), "Some(****)");
        assert_eq!(
            s.keystone_auth.password.as_ref().unwrap().expose(),
            "hunter2"
        );
        assert!(!e.render().contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
