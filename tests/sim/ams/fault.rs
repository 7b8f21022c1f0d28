//! Deterministic fault schedule: `<action>[:<trigger>]`, counted on publish requests (1-based).
//!
//! Actions: an HTTP status (`500`, `503`, `408`, `429`, `401`, `413`, any 4xx/5xx), or
//! `stall=<duration>` (the request waits, then is processed normally: the client may have given
//! up by then, so a retry of it is a legitimate duplicate).
//! Triggers: none (every request), `every=N` (requests N, 2N, ...), `first=N` (requests 1..=N),
//! `after=N` (requests > N), `nth=N` (request N only), `size>N` (request bodies over N bytes).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Status(u16),
    Stall(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Always,
    Every(u64),
    First(u64),
    After(u64),
    Nth(u64),
    SizeAbove(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub action: Action,
    pub trigger: Trigger,
}

impl Fault {
    pub fn parse(spec: &str) -> Result<Fault, String> {
        let (action, trigger) = match spec.split_once(':') {
            Some((a, t)) => (a, Some(t)),
            None => (spec, None),
        };
        let action = if let Some(d) = action.strip_prefix("stall=") {
            Action::Stall(
                humantime::parse_duration(d).map_err(|e| format!("fault {spec}: stall: {e}"))?,
            )
        } else {
            match action.parse::<u16>() {
                Ok(s) if (400..600).contains(&s) => Action::Status(s),
                _ => {
                    return Err(format!(
                        "fault {spec}: action must be a 4xx/5xx status or stall=<duration>"
                    ));
                }
            }
        };
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("fault {spec}: {e}"));
        let trigger = match trigger {
            None => Trigger::Always,
            Some(t) => {
                if let Some(v) = t.strip_prefix("every=") {
                    let n = num(v)?;
                    if n == 0 {
                        return Err(format!("fault {spec}: every=0"));
                    }
                    Trigger::Every(n)
                } else if let Some(v) = t.strip_prefix("first=") {
                    Trigger::First(num(v)?)
                } else if let Some(v) = t.strip_prefix("after=") {
                    Trigger::After(num(v)?)
                } else if let Some(v) = t.strip_prefix("nth=") {
                    Trigger::Nth(num(v)?)
                } else if let Some(v) = t.strip_prefix("size>") {
                    Trigger::SizeAbove(v.parse().map_err(|e| format!("fault {spec}: size: {e}"))?)
                } else {
                    return Err(format!(
                        "fault {spec}: trigger must be every=N, first=N, after=N, nth=N or size>N"
                    ));
                }
            }
        };
        Ok(Fault { action, trigger })
    }

    /// Whether publish request number `n` (1-based) with a body of `size` bytes is hit.
    pub fn hits(&self, n: u64, size: usize) -> bool {
        match self.trigger {
            Trigger::Always => true,
            Trigger::Every(k) => n.is_multiple_of(k),
            Trigger::First(k) => n <= k,
            Trigger::After(k) => n > k,
            Trigger::Nth(k) => n == k,
            Trigger::SizeAbove(k) => size > k,
        }
    }
}
