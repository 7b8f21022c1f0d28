//! sender.cfg's option table: every option SSM 4.0.0's `ssmsend` reads,
//! plus ours. Each default is written here once.

use crate::config::ini::Dialect;
use crate::config::schema::{Choice, Kind, OptSpec, Owner, Schema, choice, opt};

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
    opt("sender", "window", Kind::Int { min: 1, max: 10_000 }, Some("64"), "STOMP messages in flight awaiting a receipt.").ours(),
    opt("sender", "ams_concurrency", Kind::Int { min: 1, max: 64 }, Some("8"), "AMS publish requests in flight.").ours(),
    opt("sender", "ams_max_messages_per_request", Kind::Int { min: 1, max: 1000 }, Some("100"), "Messages per AMS publish request at most; 1 publishes one per request, as SSM does.").ours(),
    opt("sender", "ams_max_request_bytes", Kind::Int { min: 10_000, max: 100_000_000 }, Some("1000000"), "AMS publish requests are filled up to this many bytes of JSON (base64 data included); a larger message goes alone.").ours(),
    opt("sender", "ams_port", Kind::Int { min: 1, max: 65535 }, Some("443"), "AMS API port (SSM always uses 443).").ours(),
    opt("sender", "ams_authn_port", Kind::Int { min: 1, max: 65535 }, Some("8443"), "ARGO authentication service port, for authx509 tokens.").ours(),
    opt("sender", "connect_timeout", Kind::Duration, Some("30s"), "TCP/TLS connect timeout.").ours(),
    opt("sender", "receipt_timeout", Kind::Duration, Some("60s"), "Wait for a STOMP RECEIPT or AMS reply.").ours(),
    opt("sender", "idle_timeout", Kind::Duration, Some("120s"), "Give up on a connection silent this long.").ours(),
    opt("sender", "loader_checks", Kind::Bool, Some("true"), "Reject, not send, a message the APEL server's loader would reject.").ours(),
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
    opt("messaging", "encryption", Kind::Choice(CIPHERS), Some("aes128"), "Cipher for server_cert encryption.").ours(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sender::{Cipher, LogLevel};

    /// Every name of the tables has its typed value (the settings would
    /// otherwise fail with an internal error; PATH_TYPES: see the sender tests).
    #[test]
    fn every_choice_has_a_value() {
        fn without<T: std::str::FromStr>(table: &[Choice]) -> Vec<&'static str> {
            table
                .iter()
                .filter(|c| c.name.parse::<T>().is_err())
                .map(|c| c.name)
                .collect()
        }
        assert_eq!(without::<Cipher>(CIPHERS), Vec::<&str>::new());
        assert_eq!(without::<LogLevel>(LEVELS), Vec::<&str>::new());
    }
}
