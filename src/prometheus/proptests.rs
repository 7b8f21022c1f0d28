//! Property tests of the answer decoder: arbitrary bytes and arbitrary
//! JSON shaped like an answer never panic; the output is one sum per VM
//! asked (never more), each counting only series of that VM, and nothing is
//! added from an answer that fails; a rendered vector decodes to the sums
//! computed directly.

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::decode::{EnergySink, add_energy, vector};

const CASES: u32 = 10_000;

fn run(body: &[u8], ids: &[&str]) -> (Result<(), String>, Vec<f64>, Vec<u64>) {
    let index: HashMap<String, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, s)| (s.to_string(), i))
        .collect();
    let (mut sums, mut series) = (vec![0.0; ids.len()], vec![0u64; ids.len()]);
    let r = add_energy(
        body,
        &mut EnergySink {
            uuid_label: "uuid",
            index: &index,
            sums: &mut sums,
            series: &mut series,
            factor: 1.0,
        },
    );
    (r, sums, series)
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
            Just("vector")
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
                        Just("value"),
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
        let (r, sums, series) = run(&body, &["a", "b"]);
        prop_assert_eq!(sums.len(), 2);
        if r.is_err() {
            prop_assert_eq!(series, vec![0, 0]);
        }
        let _ = vector(&body);
    }

    #[test]
    fn arbitrary_answers_never_panic(v in arb_json()) {
        let body = serde_json::to_vec(&json!({"status": "success", "data": {"resultType": "vector", "result": [v.clone()]}})).unwrap();
        let (r, sums, series) = run(&body, &["a", "b"]);
        prop_assert_eq!(sums.len(), 2);
        prop_assert!(series.iter().sum::<u64>() <= 1);
        if r.is_err() {
            prop_assert_eq!(series, vec![0, 0]);
        }
        let _ = run(&serde_json::to_vec(&v).unwrap(), &["a"]);
    }

    #[test]
    fn rendered_vectors_decode_to_their_sums(
        series in prop::collection::vec((0usize..4, -1000i32..1000, any::<bool>()), 0..12)
    ) {
        let ids = ["a", "b", "c", "d"];
        let mut expect = [0.0f64; 4];
        let mut counts = [0u64; 4];
        let mut result = Vec::new();
        for (vm, value, value_first) in &series {
            let v = f64::from(*value) / 8.0;
            expect[*vm] += v;
            counts[*vm] += 1;
            let metric = json!({"uuid": ids[*vm], "type_instance": "x"});
            let value = json!([1_700_000_000, v.to_string()]);
            // Key order must not matter.
            result.push(if *value_first {
                format!("{{\"value\":{value},\"metric\":{metric}}}")
            } else {
                format!("{{\"metric\":{metric},\"value\":{value}}}")
            });
        }
        let body = format!("{{\"status\":\"success\",\"data\":{{\"resultType\":\"vector\",\"result\":[{}]}}}}", result.join(","));
        let (r, sums, counted) = run(body.as_bytes(), &ids[..3]);
        prop_assert!(r.is_ok(), "{:?}", r);
        prop_assert_eq!(&sums[..], &expect[..3]);
        prop_assert_eq!(&counted[..], &counts[..3]);
    }
}
