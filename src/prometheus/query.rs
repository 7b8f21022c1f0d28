//! What cASO 5.2.2's `prometheus` extractor asks Prometheus, reproduced so
//! the same samples are summed: its time chunks ([`chunks`]), its label
//! selector (here over many VMs at once: [`selector`], [`groups`]) and its
//! energy factor ([`energy_factor`]). cASO fetches every point of a chunk
//! (`query_range`) and adds them; we ask Prometheus for their sum
//! ([`sum_query`]: the same points, summed where they are).

use std::fmt::Write as _;

use uuid::Uuid;

use crate::time::Timestamp;

/// Most steps per chunk, as cASO's `_split_time_chunks(max_points=11_000)`
/// (a chunk holds up to 11,001 points: Prometheus refuses more than 11,000
/// steps per query).
pub const MAX_POINTS: i64 = 11_000;

/// Longest selector sent in one request: a group of VMs is split before its
/// regex reaches this (a form body has no URL limit, but Prometheus parses
/// the whole regex for every query).
pub const MAX_SELECTOR_BYTES: usize = 256 << 10;

/// One `query_range` window, in the whole seconds sent (`start`, `end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub start: i64,
    pub end: i64,
}

impl Chunk {
    /// Points Prometheus evaluates in the window.
    pub fn points(&self, step: u32) -> i64 {
        if self.end < self.start {
            0
        } else {
            (self.end - self.start) / i64::from(step.max(1)) + 1
        }
    }
}

/// cASO's chunks of `[from, to]` at `step` seconds:
///
/// ```python
/// while start < end:
///     remaining_steps = int((end - start).total_seconds() / step_seconds)
///     chunk_steps = min(remaining_steps, max_points)
///     chunk_end = start + timedelta(seconds=chunk_steps * step_seconds)
///     yield start, min(chunk_end, end)
///     start = chunk_end + timedelta(seconds=step_seconds)
/// ```
///
/// and prometheus-api-client sends `round(dt.timestamp())` of each bound
/// (half to even). cASO's datetimes are zone-less and `timestamp()` reads
/// them in the host's zone: on a host not on UTC its windows are shifted by
/// the offset. Ours are UTC (the same windows as cASO on a UTC host).
pub fn chunks(from: Timestamp, to: Timestamp, step: u32) -> Vec<Chunk> {
    let step_us = i64::from(step.max(1)) * 1_000_000;
    let (mut start, end) = (from.unix_micros(), to.unix_micros());
    let mut out = Vec::new();
    while start < end {
        // total_seconds() is micros / 10**6 correctly rounded, as here.
        let remaining = ((end - start) as f64 / 1e6 / f64::from(step.max(1))) as i64;
        let chunk_end = start.saturating_add(remaining.min(MAX_POINTS).saturating_mul(step_us));
        out.push(Chunk {
            start: round_half_even(start),
            end: round_half_even(chunk_end.min(end)),
        });
        start = chunk_end.saturating_add(step_us);
    }
    out
}

/// Python's `round(micros / 1e6)`: to the nearest second, halves to even.
fn round_half_even(micros: i64) -> i64 {
    let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    match frac.cmp(&500_000) {
        std::cmp::Ordering::Less => secs,
        std::cmp::Ordering::Greater => secs + 1,
        std::cmp::Ordering::Equal => secs + (secs & 1),
    }
}

/// µW x step seconds to Wh, computed as cASO does
/// (`step / 3600 / 1_000_000`, left to right). cASO multiplies each sample
/// by it before adding; we multiply Prometheus's sum: the same value to a
/// relative 1e-12 (measured: within 1e-14 over a week of 30 s samples).
pub fn energy_factor(step: u32) -> f64 {
    f64::from(step) / 3600.0 / 1_000_000.0
}

/// The instant query that sums, per series, exactly the points cASO's
/// `query_range` of `chunk` returns (`start + k x step <= end`), and the
/// time to evaluate it at; `None` when the chunk has no point.
///
/// A subquery `[R:step]` evaluates its expression at the multiples of
/// `step` (since the epoch) within `(T - R, T]`; cASO's points are
/// `start + k x step`, whatever `start` is. So the expression is read
/// `offset d` earlier, `d` being how far the points are before the next
/// multiples, and `T` is the last point plus `d`. `R` is half a step more
/// than the points span, so the first is inside whether the range is
/// closed on the left (Prometheus 2) or open (Prometheus 3).
pub fn sum_query(selector: &str, chunk: Chunk, step: u32) -> Option<(String, i64)> {
    let n = chunk.points(step) - 1;
    if n < 0 {
        return None;
    }
    let step = i64::from(step.max(1));
    let last = chunk.start + n * step;
    let d = (step - chunk.start.rem_euclid(step)) % step;
    let range_ms = n * step * 1000 + step * 500;
    // PromQL refuses `offset 0s`.
    let offset = if d > 0 {
        format!(" offset {d}s")
    } else {
        String::new()
    };
    Some((
        format!("sum_over_time(({selector}{offset})[{range_ms}ms:{step}s])"),
        last + d,
    ))
}

/// `"..."` of PromQL with `"` and `\` escaped (cASO pastes values raw, so a
/// quote in a label value breaks its query; an ordinary value is the same).
fn promql_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A value matched literally by a Prometheus (RE2) regex.
fn regex_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// `metric{k="v",...,uuid=~"id1|id2|..."}`: cASO's selector (`labels` in
/// their order) with its `uuid="<vm>"` replaced by one regex over `ids`.
/// A `labels` entry on the uuid label itself is dropped (cASO overwrites it
/// with the VM's id too).
pub fn selector(
    metric: &str,
    labels: &[(String, String)],
    uuid_label: &str,
    ids: &[Uuid],
) -> String {
    let mut out = String::with_capacity(64 + ids.len() * 37);
    out.push_str(metric);
    out.push('{');
    for (k, v) in labels.iter().filter(|(k, _)| k != uuid_label) {
        let _ = write!(out, "{k}=");
        promql_string(&mut out, v);
        out.push(',');
    }
    let mut regex = String::with_capacity(ids.len() * 37);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            regex.push('|');
        }
        regex_escape(&mut regex, &id.hyphenated().to_string());
    }
    let _ = write!(out, "{uuid_label}=~");
    promql_string(&mut out, &regex);
    out.push('}');
    out
}

/// `ids` in groups of at most `per_request` whose selectors stay under
/// [`MAX_SELECTOR_BYTES`], in order.
pub fn groups(ids: &[Uuid], per_request: usize, fixed_bytes: usize) -> Vec<&[Uuid]> {
    // A hyphenated uuid plus its `|` (uuids need no regex escape).
    let by_size = (MAX_SELECTOR_BYTES.saturating_sub(fixed_bytes) / 37).max(1);
    ids.chunks(per_request.clamp(1, by_size)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix(s)
    }

    #[test]
    fn chunks_are_casos() {
        // A week at 30 s: 20,160 steps, cASO's two chunks.
        let c = chunks(t(0), t(7 * 86_400), 30);
        assert_eq!(
            c,
            vec![
                Chunk {
                    start: 0,
                    end: 330_000
                },
                Chunk {
                    start: 330_030,
                    end: 604_800
                },
            ]
        );
        assert_eq!(c[0].points(30), 11_001);
        // Shorter than a step: one window of one point.
        assert_eq!(
            chunks(t(100), t(110), 30),
            vec![Chunk {
                start: 100,
                end: 100
            }]
        );
        assert!(chunks(t(5), t(5), 30).is_empty());
        // Sub-second bounds are rounded half to even, as Python's round().
        let c = chunks(
            Timestamp::from_unix_micros(10_500_000),
            Timestamp::from_unix_micros(71_500_000),
            30,
        );
        assert_eq!(c, vec![Chunk { start: 10, end: 70 }]);
        assert_eq!(round_half_even(11_500_000), 12);
        assert_eq!(round_half_even(-1_500_000), -2);
    }

    #[test]
    fn the_factor_is_casos_float() {
        // Python's 30 / 3600 / 1_000_000, and for 7 s where the order matters.
        assert_eq!(energy_factor(30), 8.333333333333334e-09);
        assert_eq!(energy_factor(7), 7.0 / 3600.0 / 1e6);
        assert_ne!(energy_factor(7), 7.0 / (3600.0 * 1e6));
    }

    #[test]
    fn selectors_match_every_id_literally() {
        let ids = [Uuid::from_u128(1), Uuid::from_u128(2)];
        let labels = vec![
            ("type_instance".to_string(), "scaph".to_string()),
            ("uuid".to_string(), "dropped".to_string()),
            ("q".to_string(), "a\"b\\".to_string()),
        ];
        assert_eq!(
            selector("m", &labels, "uuid", &ids),
            "m{type_instance=\"scaph\",q=\"a\\\"b\\\\\",uuid=~\"00000000-0000-0000-0000-000000000001|00000000-0000-0000-0000-000000000002\"}"
        );
        let mut r = String::new();
        regex_escape(&mut r, "a.b|c");
        assert_eq!(r, "a\\.b\\|c");
    }

    #[test]
    fn sum_queries_read_casos_points() {
        // Aligned: no offset; one point: half a step of range.
        assert_eq!(
            sum_query("m", Chunk { start: 60, end: 60 }, 30),
            Some(("sum_over_time((m)[15000ms:30s])".into(), 60))
        );
        // Points 7, 37, 67 (end 80): read 23 s earlier at 30, 60, 90.
        assert_eq!(
            sum_query("m", Chunk { start: 7, end: 80 }, 30),
            Some(("sum_over_time((m offset 23s)[75000ms:30s])".into(), 90))
        );
        assert_eq!(sum_query("m", Chunk { start: 5, end: 4 }, 30), None);
        // A week's first chunk: 11,001 points.
        let (q, t) = sum_query(
            "m",
            Chunk {
                start: 0,
                end: 330_000,
            },
            30,
        )
        .unwrap();
        assert_eq!(
            (q.as_str(), t),
            ("sum_over_time((m)[330015000ms:30s])", 330_000)
        );
    }

    #[test]
    fn groups_bound_the_selector() {
        let ids: Vec<Uuid> = (0..20_000).map(Uuid::from_u128).collect();
        let g = groups(&ids, usize::MAX, 100);
        assert!(g.len() > 1);
        assert!(g.iter().all(|g| g.len() * 37 + 100 <= MAX_SELECTOR_BYTES));
        assert_eq!(g.iter().map(|g| g.len()).sum::<usize>(), 20_000);
        assert_eq!(groups(&ids[..5], 2, 0).len(), 3);
    }
}
