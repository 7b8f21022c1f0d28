//! Fault injection: a deterministic schedule of misbehaviours.
//!
//! Spec syntax (`--fault SPEC`, repeatable): `KIND[=VALUE][:KEY=VALUE]...`
//!
//! Kinds:
//! - `5xx=CODE`        answer CODE (500-599) with an error body instead of the resource
//! - `stall=DURATION`  wait DURATION (e.g. `30s`, `500ms`), then answer normally
//! - `latency=DURATION` add DURATION to the answer (like `--latency`, but scoped)
//! - `malformed-json`  answer 200 with a JSON body cut in the middle
//! - `truncated-page`  a list page holding half its items and a next link whose
//!   marker does not exist (following it gives 400 "marker not found")
//! - `repeat-marker`   list next links repeat the request's marker forever
//! - `401-after=N`     on the (N+1)th matching request, revoke every token issued so
//!   far (once): that request and later ones with old tokens get 401, new
//!   authentications succeed
//! - `huge-body=SIZE`  answer 200 with a body of SIZE bytes (`1G`, `64M`, `10K` or a
//!   number), honestly announced in `Content-Length`, streamed
//! - `endless-body`    answer 200 with a chunked body that never ends
//! - `dense-json=SIZE` answer 200 with a list of the request's kind (`projects`,
//!   `servers`, `volumes`, `floatingips`, `images`) holding one item whose `x` is a
//!   list of zeros, SIZE bytes in all: cheap to send, costly to decode
//! - `lying-length`    answer 200 announcing `Content-Length: 1099511627776` (1 TiB)
//!   and streaming bytes as long as the client reads
//! - `endless-pages`   every list page (Nova, Keystone projects, Glance, Cinder,
//!   Neutron) links to a next page with a marker never seen before, holding the
//!   first page's items again
//! - `redirect=PORT`   answer 302 to `http://127.0.0.1:PORT` (another origin; `same`:
//!   the simulator itself) plus the request's own path and query
//! - `401-garbage=SIZE` answer 401 with a body of SIZE bytes: the request's body and
//!   `X-Auth-Token` echoed, then terminal escapes, control bytes and invalid UTF-8
//!
//! Selectors (all optional):
//! - `path=PREFIX`   the request path starts with PREFIX (e.g. `/compute`,
//!   `/compute/v2.1/servers/detail`, `/identity/v3/auth/tokens`); default: any
//!   OpenStack path (never `/_sim`)
//! - `project=ID`    the request concerns project ID (token scope, URL or filter)
//! - `method=GET`    the HTTP method
//! - `every=N`       fire on every Nth matching request (N, 2N, ...)
//! - `nth=N`         fire on the Nth matching request only
//! - `after=N`       fire on every matching request after the Nth
//! - `times=N`       fire at most N times
//!
//! Without `every`/`nth`/`after` a fault fires on every matching request.
//! Counting is per fault and per matching request, so a given client request
//! sequence always meets the same faults.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Status(u16),
    Stall(Duration),
    Latency(Duration),
    MalformedJson,
    TruncatedPage,
    RepeatMarker,
    RevokeAfter(u64),
    HugeBody(u64),
    EndlessBody,
    DenseJson(u64),
    LyingLength,
    EndlessPages,
    /// `None`: the simulator's own origin.
    Redirect(Option<u16>),
    Garbage401(u64),
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Status(_) => "5xx",
            Kind::Stall(_) => "stall",
            Kind::Latency(_) => "latency",
            Kind::MalformedJson => "malformed-json",
            Kind::TruncatedPage => "truncated-page",
            Kind::RepeatMarker => "repeat-marker",
            Kind::RevokeAfter(_) => "401-after",
            Kind::HugeBody(_) => "huge-body",
            Kind::EndlessBody => "endless-body",
            Kind::DenseJson(_) => "dense-json",
            Kind::LyingLength => "lying-length",
            Kind::EndlessPages => "endless-pages",
            Kind::Redirect(_) => "redirect",
            Kind::Garbage401(_) => "401-garbage",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    Always,
    Every(u64),
    Nth(u64),
    After(u64),
}

#[derive(Debug)]
pub struct Fault {
    pub spec: String,
    pub kind: Kind,
    pub path: Option<String>,
    pub project: Option<String>,
    pub method: Option<String>,
    pub schedule: Schedule,
    pub times: Option<u64>,
    matched: AtomicU64,
    fired: AtomicU64,
}

/// `1G`, `64M`, `10K` (powers of 1024) or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_uppercase()),
        _ => (s, 'B'),
    };
    let shift = match unit {
        'B' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        _ => return Err(format!("bad size {s:?}: unit K, M or G")),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("bad size {s:?}"))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("bad duration {s:?}: {e}"))
}

impl Fault {
    pub fn parse(spec: &str) -> Result<Fault, String> {
        let mut parts = spec.split(':');
        let head = parts.next().unwrap_or_default();
        let (kind, value) = match head.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (head, None),
        };
        let need =
            |what: &str| value.ok_or_else(|| format!("fault {spec:?}: {kind} needs ={what}"));
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("fault {spec:?}: {v:?} is not a number"))
        };
        let kind = match kind {
            "5xx" => {
                let code = num(need("CODE")?)?;
                if !(500..=599).contains(&code) {
                    return Err(format!("fault {spec:?}: status {code} is not 5xx"));
                }
                Kind::Status(code as u16)
            }
            "stall" => Kind::Stall(parse_duration(need("DURATION")?)?),
            "latency" => Kind::Latency(parse_duration(need("DURATION")?)?),
            "malformed-json" => Kind::MalformedJson,
            "truncated-page" => Kind::TruncatedPage,
            "repeat-marker" => Kind::RepeatMarker,
            "401-after" => Kind::RevokeAfter(num(need("N")?)?),
            "huge-body" => Kind::HugeBody(parse_size(need("SIZE")?)?),
            "endless-body" => Kind::EndlessBody,
            "dense-json" => Kind::DenseJson(parse_size(need("SIZE")?)?),
            "lying-length" => Kind::LyingLength,
            "endless-pages" => Kind::EndlessPages,
            "redirect" => match need("PORT")? {
                "same" => Kind::Redirect(None),
                port => Kind::Redirect(Some(
                    port.parse::<u16>()
                        .map_err(|_| format!("fault {spec:?}: {port:?} is not a port"))?,
                )),
            },
            "401-garbage" => Kind::Garbage401(parse_size(need("SIZE")?)?),
            other => return Err(format!("fault {spec:?}: unknown kind {other:?}")),
        };
        let mut fault = Fault {
            spec: spec.to_string(),
            schedule: match kind {
                Kind::RevokeAfter(n) => Schedule::Nth(n + 1),
                _ => Schedule::Always,
            },
            kind,
            path: None,
            project: None,
            method: None,
            times: None,
            matched: AtomicU64::new(0),
            fired: AtomicU64::new(0),
        };
        for sel in parts {
            let (k, v) = sel
                .split_once('=')
                .ok_or_else(|| format!("fault {spec:?}: selector {sel:?} is not KEY=VALUE"))?;
            match k {
                "path" => fault.path = Some(v.to_string()),
                "project" => fault.project = Some(v.to_string()),
                "method" => fault.method = Some(v.to_ascii_uppercase()),
                "every" => fault.schedule = Schedule::Every(num(v)?.max(1)),
                "nth" => fault.schedule = Schedule::Nth(num(v)?),
                "after" => fault.schedule = Schedule::After(num(v)?),
                "times" => fault.times = Some(num(v)?),
                other => return Err(format!("fault {spec:?}: unknown selector {other:?}")),
            }
        }
        Ok(fault)
    }

    /// Counts the request if it matches and says whether the fault fires.
    pub fn check(&self, method: &str, path: &str, projects: &[&str]) -> bool {
        if self.path.as_deref().is_some_and(|p| !path.starts_with(p)) {
            return false;
        }
        if self.method.as_deref().is_some_and(|m| m != method) {
            return false;
        }
        if let Some(p) = &self.project
            && !projects.contains(&p.as_str())
        {
            return false;
        }
        let n = self.matched.fetch_add(1, Ordering::SeqCst) + 1;
        let due = match self.schedule {
            Schedule::Always => true,
            Schedule::Every(k) => n.is_multiple_of(k),
            Schedule::Nth(k) => n == k,
            Schedule::After(k) => n > k,
        };
        if !due {
            return false;
        }
        let fired = self.fired.fetch_add(1, Ordering::SeqCst);
        if self.times.is_some_and(|t| fired >= t) {
            return false;
        }
        true
    }

    pub fn fired(&self) -> u64 {
        let f = self.fired.load(Ordering::SeqCst);
        self.times.map_or(f, |t| f.min(t))
    }

    pub fn reset(&self) {
        self.matched.store(0, Ordering::SeqCst);
        self.fired.store(0, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let f = Fault::parse("5xx=503:path=/compute:every=10").unwrap();
        assert_eq!(f.kind, Kind::Status(503));
        assert_eq!(f.schedule, Schedule::Every(10));
        let f = Fault::parse("stall=30s:path=/image:nth=3").unwrap();
        assert_eq!(f.kind, Kind::Stall(Duration::from_secs(30)));
        let f = Fault::parse("401-after=5").unwrap();
        assert_eq!(f.schedule, Schedule::Nth(6));
        assert!(Fault::parse("5xx=404").is_err());
        assert!(Fault::parse("bogus").is_err());
        assert!(Fault::parse("malformed-json:colour=red").is_err());
    }

    #[test]
    fn every_nth_counts_matching_requests_only() {
        let f = Fault::parse("5xx=500:path=/compute:every=2").unwrap();
        let hits: Vec<bool> = [
            "/compute/a",
            "/image",
            "/compute/b",
            "/compute/c",
            "/compute/d",
        ]
        .iter()
        .map(|p| f.check("GET", p, &[]))
        .collect();
        assert_eq!(hits, [false, false, true, false, true]);
    }
}
