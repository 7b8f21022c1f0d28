//! The period of one project: from its lastrun (or `--extract-from`) to the
//! run's end (`--extract-to`, or now, never later than now). A lastrun a
//! moment ahead of the run's end is "up to date"; one in the future, or a
//! `--extract-from` after `--extract-to`, fails that project only.

use super::messenger::LastrunStore;
use super::{Failure, RunConfig};
use crate::time::Timestamp;

/// The period one project's records cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Period {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// The run's end: `--extract-to`, or `now`; never later than `now`.
pub(super) fn period_end(extract_to: Option<Timestamp>, now: Timestamp) -> Timestamp {
    match extract_to {
        Some(t) if t > now => {
            tracing::warn!(target: super::LOG_TARGET, extract_to = %t, now = %now, "extract-to is in the future: extracting up to now");
            now
        }
        Some(t) => t,
        None => now,
    }
}

/// From the lastrun (or `--extract-from`) to the run's `to`; `None` when the
/// project is already extracted up to now.
pub(super) fn period_of(
    cfg: &RunConfig,
    lastrun: &dyn LastrunStore,
    project: &str,
) -> Result<Option<Period>, Failure> {
    let from = match cfg.extract_from {
        Some(t) => t,
        None => match lastrun.read(project) {
            Ok(Some(t)) => t,
            Ok(None) => {
                tracing::info!(target: super::LOG_TARGET, "no lastrun file, extracting from 1970-01-01");
                Timestamp::EPOCH
            }
            Err(e) => return Err(Failure::new(project, "lastrun file", e.to_string())),
        },
    };
    // A run that starts within a second or two of the previous one finds
    // that run's lastrun (its `to` + 1 s, as cASO writes it) at or just after
    // its own `to`: nothing to extract yet, not an error. Further ahead is a
    // wrong clock or file, which the admin must see.
    if cfg.extract_from.is_none() && from >= cfg.to && from.seconds_since(cfg.to) <= 2 {
        tracing::info!(target: super::LOG_TARGET, "up to date: the previous run ended moments ago (lastrun {from})");
        return Ok(None);
    }
    if from >= cfg.now {
        return Err(Failure::new(
            project,
            "period",
            format!(
                "cannot extract from the future (from {from}, now {}): check --extract-from or the lastrun file",
                cfg.now
            ),
        ));
    }
    if from > cfg.to {
        return Err(Failure::new(
            project,
            "period",
            format!("extract-from {from} is after extract-to {}", cfg.to),
        ));
    }
    Ok(Some(Period { from, to: cfg.to }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{messenger, nova};
    use std::collections::HashMap;
    use std::num::NonZeroUsize;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Lastruns(Mutex<HashMap<String, Result<Timestamp, String>>>);

    impl LastrunStore for Lastruns {
        fn read(&self, p: &str) -> Result<Option<Timestamp>, messenger::BoxError> {
            match self.0.lock().unwrap().get(p) {
                None => Ok(None),
                Some(Ok(t)) => Ok(Some(*t)),
                Some(Err(e)) => Err(e.clone().into()),
            }
        }
        fn write(&self, p: &str, t: Timestamp) -> Result<(), messenger::BoxError> {
            self.0.lock().unwrap().insert(p.into(), Ok(t));
            Ok(())
        }
    }

    fn cfg(extract_from: Option<Timestamp>, to: Timestamp, now: Timestamp) -> RunConfig {
        RunConfig {
            site_name: "S".into(),
            service_name: "S".into(),
            extractors: vec![],
            keys: nova::FlavorKeys::default(),
            extract_from,
            to,
            now,
            vo_property: "VO".into(),
            mapping_file: "/etc/caso/voms.json".into(),
            dry_run: false,
            max_records: NonZeroUsize::MIN,
            messengers: vec![],
            concurrency: 1,
        }
    }

    #[test]
    fn period_from_lastrun_or_flag() {
        let t = |s: &str| Timestamp::parse(s).unwrap();
        let now = t("2026-11-30T12:00:00Z");
        let store = Lastruns::default();
        store
            .0
            .lock()
            .unwrap()
            .insert("p1".into(), Ok(t("2026-11-24 10:00:01+00:00")));
        store
            .0
            .lock()
            .unwrap()
            .insert("bad".into(), Err("invalid lastrun file x".into()));
        store
            .0
            .lock()
            .unwrap()
            .insert("future".into(), Ok(t("2026-12-01T00:00:00Z")));
        let c = cfg(None, now, now);
        assert_eq!(
            period_of(&c, &store, "p1").unwrap().unwrap(),
            Period {
                from: t("2026-11-24T10:00:01Z"),
                to: now
            }
        );
        assert_eq!(
            period_of(&c, &store, "new").unwrap().unwrap().from,
            Timestamp::EPOCH
        );
        let f = period_of(&c, &store, "bad").unwrap_err();
        assert_eq!(
            (f.project.as_str(), f.object.as_str()),
            ("bad", "lastrun file")
        );
        let f = period_of(&c, &store, "future").unwrap_err();
        assert!(f.cause.contains("cannot extract from the future"), "{f}");
        // The previous run's `to` was a moment ago: its lastrun (`to` + 1 s)
        // is just ahead of this run's `to`. Up to date, not an error.
        store
            .0
            .lock()
            .unwrap()
            .insert("just-done".into(), Ok(now.add_seconds(1)));
        assert_eq!(period_of(&c, &store, "just-done").unwrap(), None);
        let c = cfg(
            Some(t("2026-11-01T00:00:00Z")),
            t("2026-10-01T00:00:00Z"),
            now,
        );
        let f = period_of(&c, &store, "p1").unwrap_err();
        assert!(f.cause.contains("is after extract-to"), "{f}");
    }
}
