//! Property tests of the JSON item parsers (Keystone projects, Nova
//! servers, Cinder volumes, Neutron floating IPs, Glance images), 10,000
//! cases each: arbitrary JSON never panics and errors stay short; items
//! rendered as the APIs send them parse back to what was rendered; an item
//! with one required field missing or of the wrong type is refused with an
//! error naming that field.

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::cinder::Volume;
use super::decode::decode;
use super::glance::Image;
use super::keystone::Project;
use super::neutron::FloatingIp;
use super::nova::{EmbeddedFlavor, Server, ServerFlavor};
use super::paging::{Collection, NextLink, read_page};
use super::{Scope, Service};
use crate::time::Timestamp;

const CASES: u32 = 10_000;

/// Keys the parsers know, so that arbitrary objects hit them often.
const KEYS: &[&str] = &[
    "id",
    "name",
    "status",
    "tenant_id",
    "user_id",
    "created",
    "updated",
    "flavor",
    "vcpus",
    "ram",
    "disk",
    "ephemeral",
    "extra_specs",
    "image",
    "addresses",
    "addr",
    "size",
    "created_at",
    "attachments",
    "floating_ip_address",
    "tags",
    "enabled",
    "domain_id",
    "x",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u32>().prop_map(Value::from),
        // Short binary fractions: serde_json reads them back exactly.
        any::<i32>().prop_map(|n| Value::from(f64::from(n) / 4.0)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("2026-11-24T10:00:01Z")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..7).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// Whatever the value: no panic, on either decode path or as a page item,
/// and an error no longer than the input plus a line.
fn survives<T: DeserializeOwned>(v: &Value, items: &'static str) -> Result<(), TestCaseError> {
    let fast = serde_json::from_value::<T>(v.clone());
    let slow = decode::<T>(v);
    prop_assert_eq!(fast.is_ok(), slow.is_ok(), "paths disagree on {}", v);
    if let Err(e) = slow {
        prop_assert!(
            e.message.chars().count() <= super::decode::MESSAGE_CHARS + 40,
            "{}",
            e
        );
        prop_assert!(
            e.path
                .as_ref()
                .is_some_and(|p| p.len() <= v.to_string().len() * 2),
            "{}",
            e
        );
    }
    let page = format!("{{\"{items}\": [{v}]}}");
    let _ = read_page::<T>(page.as_bytes(), &collection(items));
    Ok(())
}

fn collection(items: &'static str) -> Collection<'static> {
    static SCOPE: Scope = Scope::Unscoped;
    let path: &'static [&'static str] = match items {
        "servers" => &["servers"],
        "volumes" => &["volumes"],
        "floatingips" => &["floatingips"],
        "projects" => &["projects"],
        _ => &["images"],
    };
    Collection {
        service: Service::Compute,
        scope: &SCOPE,
        url: reqwest::Url::parse("https://cloud.example/x").unwrap_or_else(|_| unreachable!()),
        items: path,
        items_optional: false,
        next: NextLink::Keystone,
        what: "item",
    }
}

fn time() -> impl Strategy<Value = Timestamp> {
    (0i64..4_102_444_800).prop_map(|s| Timestamp::from_unix_micros(s * 1_000_000))
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._\\-\u{e9}\u{4e2d}]{1,16}"
}

fn opt<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
    prop::option::of(s)
}

fn arb_server() -> impl Strategy<Value = (Server, Value)> {
    let flavor = prop_oneof![
        text().prop_map(|id| ServerFlavor::Ref { id }),
        (
            opt(text()),
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(original_name, vcpus, ram, disk, ephemeral)| {
                ServerFlavor::Embedded(EmbeddedFlavor {
                    original_name,
                    vcpus,
                    ram,
                    disk,
                    ephemeral,
                    extra_specs: Some([("hw:cpu".to_string(), "2".to_string())].into()),
                })
            }),
    ];
    (
        (text(), text(), text(), text(), text()),
        (time(), opt(time()), opt(time()), opt(time())),
        opt(text()),
        flavor,
    )
        .prop_map(
            |(
                (id, name, status, tenant_id, user_id),
                (created, updated, launched, ended),
                image,
                flavor,
            )| {
                let flavor_json = match &flavor {
                    ServerFlavor::Ref { id } => json!({"id": id, "links": []}),
                    ServerFlavor::Embedded(f) => json!({
                        "original_name": f.original_name, "vcpus": f.vcpus, "ram": f.ram,
                        "disk": f.disk, "ephemeral": f.ephemeral, "swap": 0,
                        "extra_specs": f.extra_specs,
                    }),
                };
                let v = json!({
                    "id": id, "name": name, "status": status, "tenant_id": tenant_id,
                    "user_id": user_id, "created": created.to_string(),
                    "updated": updated.map(|t| t.to_string()),
                    "OS-SRV-USG:launched_at": launched.map(|t| t.to_string()),
                    "OS-SRV-USG:terminated_at": ended.map(|t| t.to_string()),
                    "image": image.as_ref().map_or(json!(""), |i| json!({"id": i, "links": []})),
                    "flavor": flavor_json, "addresses": {},
                });
                let s = Server {
                    id,
                    name,
                    status,
                    tenant_id,
                    user_id,
                    created,
                    updated,
                    launched_at: launched,
                    terminated_at: ended,
                    image,
                    flavor,
                    addresses: Default::default(),
                };
                (s, v)
            },
        )
}

fn arb_volume() -> impl Strategy<Value = (Volume, Value)> {
    (
        text(),
        opt(text()),
        text(),
        any::<u64>(),
        time(),
        opt(time()),
        opt(text()),
    )
        .prop_map(
            |(id, name, status, size, created_at, updated_at, user_id)| {
                let v = json!({
                    "id": id, "name": name, "status": status, "size": size,
                    "created_at": created_at.to_string(),
                    "updated_at": updated_at.map(|t| t.to_string()), "user_id": user_id,
                    "attachments": [],
                });
                let vol = Volume {
                    id,
                    name,
                    status,
                    size,
                    created_at,
                    updated_at,
                    user_id,
                    project_id: None,
                    volume_type: None,
                    attachments: Vec::new(),
                };
                (vol, v)
            },
        )
}

fn arb_fip() -> impl Strategy<Value = (FloatingIp, Value)> {
    (text(), text(), opt(text()), opt(text()), opt(time())).prop_map(
        |(id, addr, project_id, status, created_at)| {
            let v = json!({
                "id": id, "floating_ip_address": addr, "project_id": project_id,
                "status": status, "created_at": created_at.map(|t| t.to_string()),
            });
            let f = FloatingIp {
                id,
                floating_ip_address: addr,
                project_id,
                status,
                created_at,
                port_id: None,
            };
            (f, v)
        },
    )
}

/// Custom properties beside the standard fields (Keystone's VO, Glance's
/// marketplace URI): keys the structs do not know.
fn properties() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("x_[a-z]{1,6}", arb_json(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn arb_project() -> impl Strategy<Value = (Project, Value)> {
    (
        text(),
        text(),
        opt(text()),
        any::<bool>(),
        prop::collection::vec(text(), 0..3),
        properties(),
    )
        .prop_map(|(id, name, domain_id, enabled, tags, properties)| {
            let mut v = json!({"id": id, "name": name, "domain_id": domain_id,
                "enabled": enabled, "tags": tags});
            if let Some(o) = v.as_object_mut() {
                o.extend(properties.clone());
            }
            let p = Project {
                id,
                name,
                domain_id,
                enabled,
                tags,
                properties,
            };
            (p, v)
        })
}

fn arb_image() -> impl Strategy<Value = (Image, Value)> {
    (text(), opt(text()), opt(text()), properties()).prop_map(|(id, name, status, properties)| {
        let mut v = json!({"id": id, "name": name, "status": status});
        if let Some(o) = v.as_object_mut() {
            o.extend(properties.clone());
        }
        let i = Image {
            id,
            name,
            status,
            properties,
        };
        (i, v)
    })
}

/// Round trip on both paths, then each required field removed, and each
/// replaced by a value of the wrong type: refused, naming the field.
fn round_trip_and_near_misses<T>(x: &T, v: &Value, required: &[&str]) -> Result<(), TestCaseError>
where
    T: DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let parsed: T = serde_json::from_slice(v.to_string().as_bytes())
        .map_err(|e| TestCaseError::fail(format!("{e}: {v}")))?;
    prop_assert_eq!(&parsed, x);
    prop_assert_eq!(
        &decode::<T>(v).map_err(|e| TestCaseError::fail(e.to_string()))?,
        x
    );
    for field in required {
        let mut missing = v.clone();
        missing.as_object_mut().map(|o| o.remove(*field));
        let e = decode::<T>(&missing).err().map(|e| e.to_string());
        prop_assert!(
            e.as_ref()
                .is_some_and(|e| e.contains(&format!("`{field}`"))),
            "{:?} for {}",
            e,
            field
        );
        let mut wrong = v.clone();
        wrong[*field] = json!([[true]]);
        let e = decode::<T>(&wrong).err().map(|e| e.to_string());
        prop_assert!(
            e.as_ref().is_some_and(|e| e
                .strip_prefix(field)
                .is_some_and(|rest| rest.starts_with([':', '.', '[']))),
            "{:?} for {}",
            e,
            field
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn any_json_as_a_nova_server(v in arb_json()) { survives::<Server>(&v, "servers")?; }
    #[test]
    fn any_json_as_a_cinder_volume(v in arb_json()) { survives::<Volume>(&v, "volumes")?; }
    #[test]
    fn any_json_as_a_neutron_floating_ip(v in arb_json()) { survives::<FloatingIp>(&v, "floatingips")?; }
    #[test]
    fn any_json_as_a_keystone_project(v in arb_json()) { survives::<Project>(&v, "projects")?; }
    #[test]
    fn any_json_as_a_glance_image(v in arb_json()) { survives::<Image>(&v, "images")?; }

    #[test]
    fn nova_servers_round_trip((s, v) in arb_server()) {
        round_trip_and_near_misses(&s, &v, &["id", "name", "status", "tenant_id", "user_id", "created", "flavor"])?;
    }
    #[test]
    fn cinder_volumes_round_trip((x, v) in arb_volume()) {
        round_trip_and_near_misses(&x, &v, &["id", "status", "size", "created_at"])?;
    }
    #[test]
    fn neutron_floating_ips_round_trip((x, v) in arb_fip()) {
        round_trip_and_near_misses(&x, &v, &["id", "floating_ip_address"])?;
    }
    #[test]
    fn keystone_projects_round_trip((x, v) in arb_project()) {
        round_trip_and_near_misses(&x, &v, &["id", "name"])?;
    }
    #[test]
    fn glance_images_round_trip((x, v) in arb_image()) {
        round_trip_and_near_misses(&x, &v, &["id"])?;
    }
}
