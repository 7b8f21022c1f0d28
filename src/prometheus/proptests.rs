//! Property tests of the `query_range` decoders: arbitrary bytes and
//! arbitrary JSON shaped like an answer never panic; the output is one sum
//! per VM asked (never more), each sum counts only samples of its series;
//! a rendered matrix decodes to the sums computed directly.

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::decode::{EnergySink, Matrix, add_energy};

const CASES: u32 = 10_000;

fn run(body: &[u8], ids: &[&str]) -> (Result<(), String>, Vec<f64>, Vec<u64>) {
    let index: HashMap<String, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.to_string(), i))
        .collect();
    let (mut sums, mut samples) = (vec![0.0; ids.len()], vec![0u64; ids.len()]);
    let r = add_energy(
        body,
        &mut EnergySink {
            uuid_label: "uuid",
            index: &index,
            sums: &mut sums,
            samples: &mut samples,
            factor: 1.0,
        },
    );
    (r, sums, samples)
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("a"),
            Just("b"),
            Just("1.5"),
            Just("NaN"),
            Just("x"),
            Just("success"),
            Just("matrix")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("status"),
                        Just("data"),
                        Just("resultType"),
                        Just("result"),
                        Just("metric"),
                        Just("values"),
                        Just("uuid"),
                        Just("x")
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let (_, sums, samples) = run(&body, &["a", "b"]);
        prop_assert_eq!(sums.len(), 2);
        prop_assert_eq!(samples.len(), 2);
        let _ = serde_json::from_slice::<Matrix>(&body);
    }

    #[test]
    fn arbitrary_answers_never_panic(v in arb_json()) {
        let body = serde_json::to_vec(&json!({"status": "success", "data": {"resultType": "matrix", "result": [v.clone()]}})).unwrap();
        let (_, sums, samples) = run(&body, &["a", "b"]);
        prop_assert_eq!(sums.len(), 2);
        prop_assert!(samples.iter().sum::<u64>() <= body.len() as u64);
        let (_, _, _) = run(&serde_json::to_vec(&v).unwrap(), &["a"]);
    }

    #[test]
    fn rendered_matrices_decode_to_their_sums(
        series in prop::collection::vec((0usize..4, prop::collection::vec(-1000i32..1000, 0..20), any::<bool>()), 0..8)
    ) {
        let ids = ["a", "b", "c", "d"];
        let mut expect = [0.0f64; 4];
        let mut counts = [0u64; 4];
        let mut result = Vec::new();
        for (vm, values, values_first) in &series {
            let vals: Vec<Value> = values.iter().enumerate().map(|(t, v)| json!([t, (f64::from(*v) / 8.0).to_string()])).collect();
            for v in values {
                expect[*vm] += f64::from(*v) / 8.0;
                counts[*vm] += 1;
            }
            let metric = json!({"uuid": ids[*vm], "type_instance": "x"});
            // Key order must not matter.
            let text = if *values_first {
                format!("{{\"values\":{},\"metric\":{}}}", Value::Array(vals), metric)
            } else {
                format!("{{\"metric\":{},\"values\":{}}}", metric, Value::Array(vals))
            };
            result.push(text);
        }
        let body = format!("{{\"status\":\"success\",\"data\":{{\"resultType\":\"matrix\",\"result\":[{}]}}}}", result.join(","));
        let (r, sums, samples) = run(body.as_bytes(), &ids[..3]);
        prop_assert!(r.is_ok(), "{:?}", r);
        prop_assert_eq!(&sums[..], &expect[..3]);
        prop_assert_eq!(&samples[..], &counts[..3]);
    }
}
