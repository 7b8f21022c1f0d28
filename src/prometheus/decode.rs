//! Prometheus instant-query answers (`resultType` vector), decoded with
//! serde: [`Vector`], and [`add_energy`], which adds each series' value
//! times the factor to the sum of its VM (by the uuid label), in the order
//! of the answer. Error bodies (`{"status":"error","errorType":...,
//! "error":...}`) are [`ApiError`]s. Bodies are read capped before they
//! get here; a series with more than [`MAX_LABELS`] labels is refused.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};

/// A label set is a few labels; a body full of labels is refused.
pub const MAX_LABELS: usize = 512;

/// A successful answer of `resultType` vector.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Vector {
    pub status: String,
    pub data: VectorData,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VectorData {
    pub result_type: String,
    pub result: Vec<Series>,
}

/// One series of the answer: its labels and its one sample.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Series {
    pub metric: Labels,
    pub value: Sample,
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

/// A series' labels, at most [`MAX_LABELS`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Labels(pub HashMap<String, String>);

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

/// A successful vector answer's series; anything else is an error.
pub fn vector(body: &[u8]) -> Result<Vec<Series>, String> {
    let v: Vector = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if v.status != "success" {
        return Err(format!("status {:?}, not success", v.status));
    }
    if v.data.result_type != "vector" {
        return Err(format!("resultType {:?}, not vector", v.data.result_type));
    }
    Ok(v.data.result)
}

/// Where [`add_energy`] adds: the VM of each series (by its uuid label),
/// the running sums, how many series each got, the factor.
pub struct EnergySink<'a> {
    pub uuid_label: &'a str,
    /// uuid label value → index in `sums`.
    pub index: &'a HashMap<String, usize>,
    pub sums: &'a mut [f64],
    pub series: &'a mut [u64],
    pub factor: f64,
}

/// Adds every series of an answer to its VM's sum (`sum += value *
/// factor`, in the answer's order); series of no VM of `index` are
/// ignored. On error nothing has been added.
pub fn add_energy(body: &[u8], sink: &mut EnergySink<'_>) -> Result<(), String> {
    for s in vector(body)? {
        let Some(&i) = s
            .metric
            .0
            .get(sink.uuid_label)
            .and_then(|v| sink.index.get(v))
        else {
            continue;
        };
        if let (Some(sum), Some(n)) = (sink.sums.get_mut(i), sink.series.get_mut(i)) {
            *sum += s.value.value * sink.factor;
            *n += 1;
        }
    }
    Ok(())
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
                series: &mut n,
                factor: 2.0,
            },
        )?;
        Ok((s, n))
    }

    #[test]
    fn series_are_added_to_their_vm_in_order() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"uuid":"a","x":"1"},"value":[1,"1.5"]},
            {"value":[1,"4"],"metric":{"uuid":"b"}},
            {"metric":{"uuid":"zz"},"value":[1,"100"]},
            {"metric":{"uuid":"a","x":"2"},"value":[1,"0.25"]}]},"warnings":["w"]}"#;
        let (s, n) = sums(body, &["a", "b", "c"]).unwrap();
        assert_eq!(s, vec![1.5 * 2.0 + 0.25 * 2.0, 8.0, 0.0]);
        assert_eq!(n, vec![2, 1, 0]);
        let (s, _) = sums(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"uuid":"a"},"value":[1,"NaN"]}]}}"#,
            &["a"],
        )
        .unwrap();
        assert!(s[0].is_nan());
    }

    #[test]
    fn anything_else_is_an_error_and_adds_nothing() {
        for bad in [
            r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            r#"{"status":"error","errorType":"bad_data","error":"x"}"#,
            r#"{"status":"success"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"uuid":"a"},"value":[1,"2"]},{"metric":{"uuid":"a"},"value":[1,"x"]}]}}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}} trailing"#,
            "[]",
            "",
        ] {
            let index = HashMap::from([("a".to_string(), 0)]);
            let (mut s, mut n) = (vec![0.0], vec![0]);
            let r = add_energy(
                bad.as_bytes(),
                &mut EnergySink {
                    uuid_label: "uuid",
                    index: &index,
                    sums: &mut s,
                    series: &mut n,
                    factor: 1.0,
                },
            );
            assert!(r.is_err(), "{bad}");
            assert_eq!((s[0], n[0]), (0.0, 0), "{bad}");
        }
        let e: ApiError = serde_json::from_str(
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .unwrap();
        assert_eq!(e.error_type, "bad_data");
    }
}
