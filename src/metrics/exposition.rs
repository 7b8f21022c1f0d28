//! One exposition in the Prometheus text format 0.0.4, through
//! `prometheus-client`'s registry and encoder.
//!
//! The crate writes OpenMetrics 1.0; node_exporter's textfile collector
//! and a `text/plain; version=0.0.4` scrape read the Prometheus text format.
//! The two differ, for what we emit, in three things only, which
//! [`to_text_format`] changes: a counter's HELP and TYPE lines name its
//! samples (`x_total`, where OpenMetrics names the family `x`), there is no
//! `# EOF` line (the encoder's [`encode_registry`] writes none) and no
//! `# UNIT` line (we register no unit: the unit is in the name). The
//! samples of each family are sorted, so the same data render the same
//! bytes. No sample has a timestamp (node_exporter refuses a file with
//! one).
//!
//! The encoder writes label values as given: [`label`] escapes them (`\`,
//! `"` and newline, the same in both formats).

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// A sample's labels: names and escaped values ([`label`]).
pub type Labels = Vec<(String, String)>;

/// One exposition being built.
#[derive(Default)]
pub struct Exposition {
    registry: Registry,
}

/// `(name, value)` with the value escaped for the text formats.
pub fn label(name: &str, value: &str) -> (String, String) {
    let mut v = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => v.push_str("\\\\"),
            '"' => v.push_str("\\\""),
            '\n' => v.push_str("\\n"),
            c => v.push(c),
        }
    }
    (name.to_string(), v)
}

/// The registry ends every help text with a period: `help` without its own.
fn sentence(help: &str) -> &str {
    help.strip_suffix('.').unwrap_or(help)
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// A gauge family (a single gauge when its one sample has no labels).
    pub fn gauge(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        let samples: Vec<(Labels, f64)> = samples.into_iter().collect();
        if let [(labels, v)] = samples.as_slice()
            && labels.is_empty()
        {
            let g = Gauge::<f64, AtomicU64>::default();
            g.set(*v);
            self.registry.register(name, sentence(help), g);
            return;
        }
        let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        for (labels, v) in samples {
            family.get_or_create(&labels).set(v);
        }
        self.registry.register(name, sentence(help), family);
    }

    /// A gauge family of whole numbers (counts).
    pub fn gauge_int(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, i64)>,
    ) {
        let samples: Vec<(Labels, i64)> = samples.into_iter().collect();
        if let [(labels, v)] = samples.as_slice()
            && labels.is_empty()
        {
            let g = Gauge::<i64, AtomicI64>::default();
            g.set(*v);
            self.registry.register(name, sentence(help), g);
            return;
        }
        let family = Family::<Labels, Gauge<i64, AtomicI64>>::default();
        for (labels, v) in samples {
            family.get_or_create(&labels).set(v);
        }
        self.registry.register(name, sentence(help), family);
    }

    /// A counter family; `name` without the `_total` its samples get.
    pub fn counter(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        let samples: Vec<(Labels, u64)> = samples.into_iter().collect();
        if let [(labels, v)] = samples.as_slice()
            && labels.is_empty()
        {
            let c = Counter::<u64, AtomicU64>::default();
            c.inc_by(*v);
            self.registry.register(name, sentence(help), c);
            return;
        }
        let family = Family::<Labels, Counter<u64, AtomicU64>>::default();
        for (labels, v) in samples {
            family.get_or_create(&labels).inc_by(v);
        }
        self.registry.register(name, sentence(help), family);
    }

    /// The exposition in the Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut om = String::new();
        // Writing into a String cannot fail; the encoder's own errors are
        // formatting errors of our values, which it does not have.
        if encode_registry(&mut om, &self.registry).is_err() {
            tracing::warn!("the metrics could not be encoded");
            return String::new();
        }
        to_text_format(&om)
    }
}

/// OpenMetrics text as `prometheus-client` writes it, in the Prometheus text
/// format 0.0.4 (see the module documentation).
pub fn to_text_format(openmetrics: &str) -> String {
    struct Block<'a> {
        name: &'a str,
        help: &'a str,
        kind: &'a str,
        samples: Vec<&'a str>,
    }
    let mut blocks: Vec<Block<'_>> = Vec::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            blocks.push(Block {
                name,
                help,
                kind: "untyped",
                samples: Vec::new(),
            });
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some(b) = blocks.last_mut() {
                b.kind = rest.split_once(' ').map_or("untyped", |(_, k)| k);
            }
        } else if line.starts_with('#') || line.is_empty() {
            // # UNIT, # EOF: not in the text format.
        } else if let Some(b) = blocks.last_mut() {
            b.samples.push(line);
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for mut b in blocks {
        let name = if b.kind == "counter" {
            format!("{}_total", b.name)
        } else {
            b.name.to_string()
        };
        out.push_str(&format!(
            "# HELP {name} {}\n# TYPE {name} {}\n",
            b.help, b.kind
        ));
        b.samples.sort_unstable();
        for s in b.samples {
            out.push_str(s);
            out.push('\n');
        }
    }
    out
}

/// The samples of `name` in a text exposition (a previous metrics file):
/// their labels (unescaped) and values. Lines that do not parse are skipped.
pub fn samples(text: &str, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = if let Some(inner) = rest.strip_prefix('{') {
            let Some((labels, rest)) = parse_labels(inner) else {
                continue;
            };
            (labels, rest)
        } else if rest.starts_with(' ') {
            (Vec::new(), rest)
        } else {
            continue;
        };
        let mut fields = value.split_whitespace();
        match (fields.next().map(str::parse::<f64>), fields.next()) {
            (Some(Ok(v)), None) => out.push((labels, v)),
            _ => continue,
        }
    }
    out
}

/// `k="v",...}` then the rest of the line.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_string(), value));
        s = &rest[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_samples_and_nothing_openmetrics_is_left() {
        let mut e = Exposition::new();
        e.counter(
            "x_requests",
            "Requests.",
            [
                (vec![label("status", "500")], 2),
                (vec![label("status", "200")], 7),
            ],
        );
        e.gauge("x_seconds", "Seconds.", [(vec![], 1.5)]);
        e.gauge_int(
            "x_records",
            "Records.",
            [(vec![label("p", "a\"b\\c\nd")], 3)],
        );
        assert_eq!(
            e.render(),
            "# HELP x_requests_total Requests.\n\
             # TYPE x_requests_total counter\n\
             x_requests_total{status=\"200\"} 7\n\
             x_requests_total{status=\"500\"} 2\n\
             # HELP x_seconds Seconds.\n\
             # TYPE x_seconds gauge\n\
             x_seconds 1.5\n\
             # HELP x_records Records.\n\
             # TYPE x_records gauge\n\
             x_records{p=\"a\\\"b\\\\c\\nd\"} 3\n"
        );
    }

    #[test]
    fn samples_are_read_back_with_their_labels_unescaped() {
        let text = "# HELP a x\n# TYPE a gauge\na{project=\"p\\\"1\",x=\"y\"} 12.5\n\
                    a{project=\"p2\"} 3\nab 4\na 5\na{broken 6\na{p=\"q\"} nan junk\n";
        let got = samples(text, "a");
        assert_eq!(
            got,
            vec![
                (
                    vec![("project".into(), "p\"1".into()), ("x".into(), "y".into())],
                    12.5
                ),
                (vec![("project".into(), "p2".into())], 3.0),
                (vec![], 5.0),
            ]
        );
    }
}
