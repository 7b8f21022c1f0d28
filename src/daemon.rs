//! Cron mode and daemon mode, shared by both programs.
//!
//! Cron mode (the default) runs once. Daemon mode (`--interval 1h`) runs,
//! sleeps the interval give or take a small random jitter (so sites started
//! together do not hit their cloud or AMS in step), and runs again, forever,
//! one run at a time.
//!
//! In both modes SIGTERM or SIGINT asks the run in progress to stop
//! gracefully: nothing new is started, waits that nothing depends on yet
//! (connecting, logging in, the run lock, the sleep between runs) end at
//! once, and the work already started (a project's requests, messages sent
//! and awaiting their receipt) gets [`STOP_GRACE`] to finish before it is
//! abandoned (kept for the next run); then the program exits 0. A second
//! signal exits at once (exit 1); the spools are crash-safe, so even that
//! loses nothing.

use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use tokio_util::sync::CancellationToken;

use crate::exit;

/// The jitter is at most this fraction of the interval...
const JITTER_FRACTION: f64 = 0.05;
/// ...and never more than this.
const JITTER_MAX: Duration = Duration::from_secs(60);

/// Parses `--interval` (humantime: `90s`, `30m`, `1h`, `1h 30m`); zero is
/// refused since it would loop without pause.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))?;
    if d.is_zero() {
        return Err(format!("{s:?}: the interval must be longer than zero"));
    }
    Ok(d)
}

/// How long the work in progress may still take after a stop request:
/// a receipt or publish answer for a message already sent, the requests of a
/// project being extracted. Short, so that a stop takes "a second or two"
/// whatever the peers do; what is unfinished then is kept for the next run.
pub const STOP_GRACE: Duration = Duration::from_millis(1500);

/// The graceful stop request, set by SIGTERM/SIGINT and checked by the
/// pipelines before they start each project or message; every wait selects
/// on [`Shutdown::requested`] or [`Shutdown::grace_over`].
#[derive(Clone, Debug)]
pub struct Shutdown {
    token: CancellationToken,
    /// When the stop was requested (set once, before the token fires).
    at: Arc<OnceLock<Instant>>,
    grace: Duration,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown {
            token: CancellationToken::new(),
            at: Arc::default(),
            grace: STOP_GRACE,
        }
    }
}

impl Shutdown {
    /// A request that only [`Shutdown::request`] sets (for tests and
    /// library callers).
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// The same with another grace than [`STOP_GRACE`] (for tests).
    pub fn with_grace(grace: Duration) -> Shutdown {
        Shutdown {
            grace,
            ..Shutdown::default()
        }
    }

    /// Listens for SIGTERM and SIGINT on a thread of its own (the pipelines
    /// start their own runtimes), from the moment this returns: the first
    /// signal requests the stop, a second one exits 1 at once.
    pub fn on_signals() -> anyhow::Result<Shutdown> {
        let shutdown = Shutdown::new();
        let requester = shutdown.clone();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || listen(requester, ready_tx))
            .context("cannot start the signal thread")?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(shutdown),
            Ok(Err(e)) => Err(anyhow!("cannot listen for SIGTERM/SIGINT: {e}")),
            Err(_) => Err(anyhow!("the signal thread ended before listening")),
        }
    }

    /// Asks the run to stop after the work in progress.
    pub fn request(&self) {
        self.at.get_or_init(Instant::now);
        self.token.cancel();
    }

    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the stop is requested.
    pub async fn requested(&self) {
        self.token.cancelled().await
    }

    /// Resolves [`STOP_GRACE`] after the stop was requested: the moment the
    /// work in progress is abandoned. Every call shares that one deadline.
    pub async fn grace_over(&self) {
        self.requested().await;
        let at = *self.at.get_or_init(Instant::now);
        tokio::time::sleep_until((at + self.grace).into()).await
    }

    /// The token, for code that selects on it.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

fn listen(shutdown: Shutdown, ready: mpsc::Sender<Result<(), String>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    rt.block_on(async move {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let name = |term: bool| if term { "SIGTERM" } else { "SIGINT" };
        let first = tokio::select! {
            _ = term.recv() => true,
            _ = int.recv() => false,
        };
        tracing::warn!(
            "{}: finishing the work in progress, then exiting (send it again to exit at once)",
            name(first)
        );
        shutdown.request();
        let second = tokio::select! {
            _ = term.recv() => true,
            _ = int.recv() => false,
        };
        tracing::error!("{} again: exiting at once", name(second));
        std::process::exit(1);
    });
}

/// The pause before the next run: `interval` plus or minus a random jitter
/// of up to 5 % of it, at most 60 s.
pub fn next_pause(interval: Duration) -> Duration {
    let max = interval.mul_f64(JITTER_FRACTION).min(JITTER_MAX);
    let mut bytes = [0u8; 8];
    // Without randomness the cadence is merely exact.
    if openssl::rand::rand_bytes(&mut bytes).is_err() {
        return interval;
    }
    // Uniform in [-1, 1].
    let unit = (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
    let offset = max.mul_f64(unit.abs());
    if unit < 0.0 {
        interval.saturating_sub(offset)
    } else {
        interval + offset
    }
}

/// When daemon mode runs: the first run after `first_after` (zero: at
/// once), then one every `every` give or take the jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub every: Duration,
    /// `--initial-delay`: lets another program go first, as cron's offsets
    /// do (ssmsend after caso-extract's first run in docker-compose).
    pub first_after: Duration,
}

impl Schedule {
    /// `--interval` and `--initial-delay` as given: a delay without an
    /// interval is a usage error (cron mode runs once, at once).
    pub fn from_flags(
        interval: Option<Duration>,
        initial_delay: Option<Duration>,
    ) -> anyhow::Result<Option<Schedule>> {
        match (interval, initial_delay) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(exit::usage(anyhow!(
                "--initial-delay is for daemon mode: give --interval too (cron mode runs at once)"
            ))),
            (Some(every), first_after) => Ok(Some(Schedule {
                every,
                first_after: first_after.unwrap_or_default(),
            })),
        }
    }
}

/// Parses `--initial-delay` (humantime; zero allowed: no delay).
pub fn parse_delay(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

/// Runs `once` in cron mode (`schedule` `None`: its result is the
/// program's) or daemon mode: again after each pause until `shutdown` is
/// requested, then `Ok` (exit 0). In daemon mode a failed run is logged and
/// the next one tried; only a configuration error (exit 2) ends the daemon,
/// since no later run could succeed.
pub fn run(
    schedule: Option<Schedule>,
    shutdown: &Shutdown,
    mut once: impl FnMut(&Shutdown) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let Some(Schedule {
        every: interval,
        first_after,
    }) = schedule
    else {
        return once(shutdown);
    };
    if first_after.is_zero() {
        tracing::info!(
            interval = %humantime::format_duration(interval),
            "daemon mode: one run now, then one per interval; SIGTERM stops after the work in progress"
        );
    } else {
        tracing::info!(
            interval = %humantime::format_duration(interval),
            first_in = %humantime::format_duration(first_after),
            "daemon mode: the first run after the initial delay, then one per interval; SIGTERM stops after the work in progress"
        );
        if sleep(first_after, shutdown)? {
            tracing::info!("stopped on request");
            return Ok(());
        }
    }
    loop {
        if let Err(e) = once(shutdown) {
            if exit::is_usage(&e) {
                return Err(e);
            }
            // A run's summary already said what failed.
            if !exit::is_reported(&e) {
                tracing::error!(
                    "run failed, trying again next interval: {}",
                    exit::Chain(&e)
                );
            }
        }
        if shutdown.is_requested() {
            tracing::info!("stopped on request");
            return Ok(());
        }
        let pause = next_pause(interval);
        tracing::info!(
            next_in = %humantime::format_duration(Duration::from_secs(pause.as_secs())),
            "run done, sleeping"
        );
        if sleep(pause, shutdown)? {
            tracing::info!("stopped on request");
            return Ok(());
        }
    }
}

/// Sleeps `pause` or until the stop is requested (then `true`).
fn sleep(pause: Duration, shutdown: &Shutdown) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("cannot start the timer")?;
    Ok(rt.block_on(async {
        tokio::select! {
            _ = tokio::time::sleep(pause) => false,
            _ = shutdown.requested() => true,
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn intervals_are_humantime_and_positive() {
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_interval("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
        assert!(
            parse_interval("0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(parse_interval("hourly").is_err());
        assert!(parse_interval("3600").is_err(), "a unit is required");
    }

    #[test]
    fn jitter_is_within_5_percent_and_60_seconds() {
        let hour = Duration::from_secs(3600);
        let min = Duration::from_secs(100);
        let mut seen_below = false;
        let mut seen_above = false;
        for _ in 0..200 {
            let p = next_pause(hour);
            assert!(p >= hour - Duration::from_secs(60) && p <= hour + Duration::from_secs(60));
            let p = next_pause(min);
            assert!(
                p >= Duration::from_secs(95) && p <= Duration::from_secs(105),
                "{p:?}"
            );
            seen_below |= p < min;
            seen_above |= p > min;
        }
        assert!(seen_below && seen_above, "the jitter goes both ways");
    }

    #[test]
    fn cron_mode_runs_once_and_returns_its_result() {
        let runs = Cell::new(0);
        let r = run(None, &Shutdown::new(), |_| {
            runs.set(runs.get() + 1);
            Err(anyhow!("boom"))
        });
        assert_eq!(runs.get(), 1);
        assert_eq!(r.unwrap_err().to_string(), "boom");
    }

    fn every(every: Duration) -> Schedule {
        Schedule {
            every,
            first_after: Duration::ZERO,
        }
    }

    #[test]
    fn an_initial_delay_needs_an_interval_and_ends_on_a_stop_request() {
        let hour = Duration::from_secs(3600);
        assert_eq!(Schedule::from_flags(None, None).unwrap(), None);
        let e = Schedule::from_flags(None, Some(hour)).unwrap_err();
        assert!(exit::is_usage(&e), "{e}");
        assert!(e.to_string().contains("--interval"), "{e}");
        assert_eq!(
            Schedule::from_flags(Some(hour), None).unwrap(),
            Some(every(hour))
        );
        assert_eq!(parse_delay("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_delay("0s"), Ok(Duration::ZERO));
        assert!(parse_delay("soon").is_err());
        // A stop during the delay: no run at all, Ok.
        let stop = Shutdown::new();
        stop.request();
        let runs = Cell::new(0);
        let delayed = Schedule {
            every: hour,
            first_after: hour,
        };
        let start = Instant::now();
        let r = run(Some(delayed), &stop, |_| {
            runs.set(runs.get() + 1);
            Ok(())
        });
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(runs.get(), 0);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn daemon_mode_repeats_survives_failures_and_stops_on_request() {
        let runs = Cell::new(0);
        let stop = Shutdown::new();
        let r = run(Some(every(Duration::from_millis(1))), &stop, |s| {
            runs.set(runs.get() + 1);
            if runs.get() == 3 {
                s.request();
            }
            Err(anyhow!("a runtime failure"))
        });
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(runs.get(), 3);
    }

    #[test]
    fn daemon_mode_ends_on_a_configuration_error() {
        let runs = Cell::new(0);
        let r = run(
            Some(every(Duration::from_millis(1))),
            &Shutdown::new(),
            |_| {
                runs.set(runs.get() + 1);
                Err(exit::usage(anyhow!("[DEFAULT] site_name is required")))
            },
        );
        assert_eq!(runs.get(), 1);
        assert!(r.unwrap_err().to_string().contains("site_name"));
    }

    #[tokio::test]
    async fn the_grace_is_one_deadline_from_the_request() {
        let stop = Shutdown::with_grace(Duration::from_millis(200));
        let early = tokio::time::timeout(Duration::from_millis(300), stop.grace_over()).await;
        assert!(early.is_err(), "no grace runs out before a request");
        stop.request();
        let start = Instant::now();
        stop.grace_over().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // A later call does not start a new grace.
        stop.grace_over().await;
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(400),
            "{took:?}"
        );
    }

    #[test]
    fn a_requested_stop_ends_the_sleep() {
        let stop = Shutdown::new();
        stop.request();
        assert!(sleep(Duration::from_secs(3600), &stop).unwrap());
    }
}
