//! Prometheus `query_range` answers, decoded with serde.
//!
//! Two forms: [`Matrix`] (typed series with their samples) for general
//! use, and [`add_energy`], which adds each sample times the factor to the
//! sum of its VM while the body is decoded, in the order of the answer
//! (series by series, sample by sample, as cASO's loop), without holding
//! the samples: memory is the body and one number per VM. Error bodies
//! (`{"status":"error","errorType":...,"error":...}`) are [`ApiError`]s.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Samples of a series with more labels than this are not ours: a label
/// set is a few labels; a body full of labels is refused.
const MAX_LABELS: usize = 512;

/// A successful answer of `resultType` matrix.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Matrix {
    pub status: String,
    pub data: MatrixData,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatrixData {
    pub result_type: String,
    pub result: Vec<Series>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Series {
    pub metric: BTreeMap<String, String>,
    #[serde(default)]
    pub values: Vec<Sample>,
}

/// `[<unix seconds>, "<value>"]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub time: f64,
    pub value: f64,
}

impl<'de> serde::Deserialize<'de> for Sample {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (time, value): (f64, std::borrow::Cow<'de, str>) = serde::Deserialize::deserialize(d)?;
        Ok(Sample {
            time,
            value: parse_value(&value).map_err(de::Error::custom)?,
        })
    }
}

/// Prometheus's text of a float (`1.5`, `NaN`, `+Inf`, `-Inf`), read as
/// Python's `float()` reads it.
pub fn parse_value(s: &str) -> Result<f64, String> {
    s.parse::<f64>().map_err(|_| {
        format!(
            "sample value {:?} is not a number",
            crate::net::excerpt(s.as_bytes())
        )
    })
}

/// The error body of Prometheus's HTTP API.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    pub status: String,
    #[serde(default)]
    pub error_type: String,
    #[serde(default)]
    pub error: String,
}

/// Where [`add_energy`] adds: the VM of each series (by its uuid label),
/// the running sums and sample counts, the factor.
pub struct EnergySink<'a> {
    pub uuid_label: &'a str,
    /// uuid label value → index in `sums`.
    pub index: &'a HashMap<String, usize>,
    pub sums: &'a mut [f64],
    pub samples: &'a mut [u64],
    pub factor: f64,
}

/// Adds every sample of a `query_range` answer to its VM's sum:
/// `sum += value * factor`, in the answer's order. Series of no VM of
/// `index` are ignored. An answer that is not a successful matrix is an
/// error (and the sums are then to be discarded).
pub fn add_energy(body: &[u8], sink: &mut EnergySink<'_>) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let outcome = Top { sink }
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    match outcome {
        (Some(status), _) if status != "success" => Err(format!("status {status:?}, not success")),
        (None, _) => Err("no status".to_string()),
        (_, None) => Err("no data".to_string()),
        (_, Some(kind)) if kind != "matrix" => Err(format!("resultType {kind:?}, not matrix")),
        _ => Ok(()),
    }
}

struct Top<'s, 'a> {
    sink: &'s mut EnergySink<'a>,
}

/// (status, resultType)
type Outcome = (Option<String>, Option<String>);

impl<'de> DeserializeSeed<'de> for Top<'_, '_> {
    type Value = Outcome;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Outcome, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_, '_> {
    type Value = Outcome;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Prometheus API answer object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outcome, A::Error> {
        let (mut status, mut kind) = (None, None);
        let mut seen_data = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "status" => status = Some(map.next_value::<String>()?),
                "data" if !seen_data => {
                    seen_data = true;
                    kind = map.next_value_seed(Data { sink: self.sink })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((status, kind.or(seen_data.then(String::new))))
    }
}

struct Data<'s, 'a> {
    sink: &'s mut EnergySink<'a>,
}

impl<'de> DeserializeSeed<'de> for Data<'_, '_> {
    type Value = Option<String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Data<'_, '_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a data object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kind = None;
        let mut seen_result = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "resultType" => kind = Some(map.next_value::<String>()?),
                "result" if !seen_result => {
                    seen_result = true;
                    map.next_value_seed(Result_ {
                        sink: &mut *self.sink,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !seen_result {
            return Err(de::Error::missing_field("result"));
        }
        Ok(kind)
    }
}

struct Result_<'s, 'a> {
    sink: &'s mut EnergySink<'a>,
}

impl<'de> DeserializeSeed<'de> for Result_<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Result_<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of series")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(OneSeries {
                sink: &mut *self.sink,
            })?
            .is_some()
        {}
        Ok(())
    }
}

struct OneSeries<'s, 'a> {
    sink: &'s mut EnergySink<'a>,
}

impl<'de> DeserializeSeed<'de> for OneSeries<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// Where a series' samples go: its VM's sum once `metric` is known; until
/// then (`values` written first) they are kept and added in order after.
enum Target {
    Unknown(Vec<f64>),
    Vm(usize),
    None,
}

impl<'de> Visitor<'de> for OneSeries<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a series object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let sink = self.sink;
        let mut target = Target::Unknown(Vec::new());
        let (mut seen_metric, mut seen_values) = (false, false);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "metric" if !seen_metric => {
                    seen_metric = true;
                    let labels = map.next_value::<Labels>()?;
                    let vm = labels
                        .0
                        .get(sink.uuid_label)
                        .and_then(|v| sink.index.get(v))
                        .copied();
                    let kept = match std::mem::replace(&mut target, Target::None) {
                        Target::Unknown(kept) => kept,
                        _ => Vec::new(),
                    };
                    if let Some(i) = vm {
                        for value in kept {
                            add(sink, i, value);
                        }
                        target = Target::Vm(i);
                    }
                }
                "values" if !seen_values => {
                    seen_values = true;
                    map.next_value_seed(Values {
                        sink: &mut *sink,
                        target: &mut target,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

fn add(sink: &mut EnergySink<'_>, i: usize, value: f64) {
    if let (Some(sum), Some(n)) = (sink.sums.get_mut(i), sink.samples.get_mut(i)) {
        *sum += value * sink.factor;
        *n += 1;
    }
}

/// A series' labels, at most [`MAX_LABELS`].
struct Labels(HashMap<String, String>);

impl<'de> serde::Deserialize<'de> for Labels {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a label object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut out = HashMap::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if out.len() >= MAX_LABELS {
                        return Err(de::Error::custom("more than 512 labels in a series"));
                    }
                    out.insert(k, v);
                }
                Ok(Labels(out))
            }
        }
        d.deserialize_map(V)
    }
}

struct Values<'s, 't, 'a> {
    sink: &'s mut EnergySink<'a>,
    target: &'t mut Target,
}

impl<'de> DeserializeSeed<'de> for Values<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Values<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of [time, \"value\"] samples")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(sample) = seq.next_element::<Sample>()? {
            match self.target {
                Target::Vm(i) => add(self.sink, *i, sample.value),
                Target::Unknown(kept) => kept.push(sample.value),
                Target::None => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(body: &str, ids: &[&str]) -> Result<(Vec<f64>, Vec<u64>), String> {
        let index: HashMap<String, usize> = ids
            .iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), i))
            .collect();
        let (mut s, mut n) = (vec![0.0; ids.len()], vec![0; ids.len()]);
        add_energy(
            body.as_bytes(),
            &mut EnergySink {
                uuid_label: "uuid",
                index: &index,
                sums: &mut s,
                samples: &mut n,
                factor: 2.0,
            },
        )?;
        Ok((s, n))
    }

    #[test]
    fn samples_are_added_to_their_vm_in_order() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"uuid":"a","x":"1"},"values":[[1,"1.5"],[2,"-2"]]},
            {"values":[[1,"4"]],"metric":{"uuid":"b"}},
            {"metric":{"uuid":"zz"},"values":[[1,"100"]]},
            {"metric":{"uuid":"a","x":"2"},"values":[[1,"0.25"]]}]},"warnings":["w"]}"#;
        let (s, n) = sums(body, &["a", "b", "c"]).unwrap();
        assert_eq!(s, vec![(1.5 * 2.0 + -2.0 * 2.0) + 0.25 * 2.0, 8.0, 0.0]);
        assert_eq!(n, vec![3, 1, 0]);
        let (s, _) = sums(
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"uuid":"a"},"values":[[1,"NaN"],[2,"+Inf"]]}]}}"#,
            &["a"],
        )
        .unwrap();
        assert!(s[0].is_nan());
    }

    #[test]
    fn anything_else_is_an_error() {
        for bad in [
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            r#"{"status":"error","errorType":"bad_data","error":"x"}"#,
            r#"{"status":"success"}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"uuid":"a"},"values":[[1,"x"]]}]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}} trailing"#,
            "[]",
            "",
        ] {
            assert!(sums(bad, &["a"]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_typed_matrix_decodes_too() {
        let m: Matrix = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"uuid":"a"},"values":[[1.5,"NaN"],[2,"3"]]}]}}"#,
        )
        .unwrap();
        assert_eq!(
            m.data.result[0].values[1],
            Sample {
                time: 2.0,
                value: 3.0
            }
        );
        let e: ApiError = serde_json::from_str(
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .unwrap();
        assert_eq!(e.error_type, "bad_data");
    }
}
