//! Nova (compute): servers, usage report, flavors.
//!
//! Microversion: we ask for `compute 2.61` and step down 2.47 -> 2.40 -> 2.1
//! when Nova answers 406 (too old), once per session. From 2.47 each server
//! embeds its flavor (vcpus, ram, disk, ephemeral, extra specs), so no flavor
//! call is needed at all; from 2.61 `GET /flavors/{id}` includes the extra
//! specs (one call per flavor instead of two); from 2.40 the usage report is
//! paged. Below 2.69, servers in a down cell are left out of lists rather
//! than returned half-empty.

use std::collections::BTreeMap;

use reqwest::{StatusCode, Url};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::catalog::join;
use super::paging::{Collection, NextLink, PageFetch, collect};
use super::transport::Raw;
use super::{Cache, OpenStackError, Scope, Service, Session, Target};
use crate::time::Timestamp;

type Result<T> = std::result::Result<T, OpenStackError>;

/// Microversions tried, newest first.
pub const MICROVERSIONS: [&str; 4] = ["2.61", "2.47", "2.40", "2.1"];

/// Nova pages hold at most `[api] max_limit` (default 1000) items anyway.
const PAGE_LIMIT: &str = "1000";

/// One flavor per id per run.
pub type FlavorCache = Cache<Flavor>;

/// A server from `GET /servers/detail`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub status: String,
    pub tenant_id: String,
    pub user_id: String,
    pub created: Timestamp,
    #[serde(default)]
    pub updated: Option<Timestamp>,
    #[serde(rename = "OS-SRV-USG:launched_at", default)]
    pub launched_at: Option<Timestamp>,
    #[serde(rename = "OS-SRV-USG:terminated_at", default)]
    pub terminated_at: Option<Timestamp>,
    /// The image id; `None` for a server booted from a volume (Nova sends "").
    #[serde(default, deserialize_with = "image_id")]
    pub image: Option<String>,
    pub flavor: ServerFlavor,
    #[serde(default)]
    pub addresses: BTreeMap<String, Vec<Address>>,
}

impl Server {
    /// Addresses of type `floating` (cASO's PublicIPCount).
    pub fn floating_ip_count(&self) -> usize {
        self.addresses
            .values()
            .flatten()
            .filter(|a| a.ip_type.as_deref() == Some("floating"))
            .count()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Address {
    pub addr: String,
    #[serde(default)]
    pub version: Option<u8>,
    #[serde(rename = "OS-EXT-IPS:type", default)]
    pub ip_type: Option<String>,
}

/// A server's flavor: embedded (microversion 2.47+) or a reference to look up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerFlavor {
    Embedded(EmbeddedFlavor),
    Ref { id: String },
}

/// Not `untagged`: its error ("did not match any variant") names neither
/// the field nor the shapes expected. Read every field either shape has,
/// then decide, saying which one is missing.
impl<'de> Deserialize<'de> for ServerFlavor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Either {
            #[serde(default)]
            id: Option<String>,
            #[serde(default)]
            original_name: Option<String>,
            #[serde(default)]
            vcpus: Option<u32>,
            #[serde(default)]
            ram: Option<u64>,
            #[serde(default)]
            disk: Option<u64>,
            #[serde(default)]
            ephemeral: Option<u64>,
            #[serde(default)]
            extra_specs: Option<BTreeMap<String, String>>,
        }
        let f = Either::deserialize(d)?;
        match (f.vcpus, f.ram, f.disk, f.id) {
            (Some(vcpus), Some(ram), Some(disk), _) => Ok(ServerFlavor::Embedded(EmbeddedFlavor {
                original_name: f.original_name,
                vcpus,
                ram,
                disk,
                ephemeral: f.ephemeral.unwrap_or(0),
                extra_specs: f.extra_specs,
            })),
            (None, None, None, Some(id)) => Ok(ServerFlavor::Ref { id }),
            (None, None, None, None) => Err(serde::de::Error::custom(
                "neither an embedded flavor (vcpus, ram, disk: microversion 2.47+) nor a reference ({\"id\": ...})",
            )),
            (vcpus, ram, disk, _) => {
                let missing: Vec<&str> = [
                    ("vcpus", vcpus.is_none()),
                    ("ram", ram.is_none()),
                    ("disk", disk.is_none()),
                ]
                .iter()
                .filter(|(_, absent)| *absent)
                .map(|(name, _)| *name)
                .collect();
                Err(serde::de::Error::custom(format!(
                    "an embedded flavor without {}",
                    missing.join(" and ")
                )))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct EmbeddedFlavor {
    #[serde(default)]
    pub original_name: Option<String>,
    pub vcpus: u32,
    /// MiB.
    pub ram: u64,
    /// GiB.
    pub disk: u64,
    #[serde(default)]
    pub ephemeral: u64,
    /// Absent when the policy hides extra specs from this account.
    #[serde(default)]
    pub extra_specs: Option<BTreeMap<String, String>>,
}

/// `"<id>"`, `{"id": "<id>", ...}`, `""` or `null` (booted from a volume).
fn image_id<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    struct ImageId;
    impl<'de> Visitor<'de> for ImageId {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an image id, {\"id\": ...}, \"\" or null")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Self::Value, E> {
            Ok(Some(s.to_string()).filter(|s| !s.is_empty()))
        }
        fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_map<A: MapAccess<'de>>(
            self,
            map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            #[derive(Deserialize)]
            struct Ref {
                id: String,
            }
            let r = Ref::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            Ok(Some(r.id))
        }
    }
    d.deserialize_any(ImageId)
}

/// A flavor with its extra specs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram: u64,
    pub disk: u64,
    pub ephemeral: u64,
    pub extra_specs: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct FlavorBody {
    flavor: FlavorData,
}

#[derive(Deserialize)]
struct FlavorData {
    id: String,
    name: String,
    vcpus: u32,
    ram: u64,
    disk: u64,
    #[serde(rename = "OS-FLV-EXT-DATA:ephemeral", default)]
    ephemeral: u64,
    #[serde(default)]
    extra_specs: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct ExtraSpecsBody {
    extra_specs: BTreeMap<String, String>,
}

/// One server of `os-simple-tenant-usage`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ServerUsage {
    pub instance_id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The flavor's name.
    #[serde(default)]
    pub flavor: Option<String>,
    pub vcpus: u32,
    pub memory_mb: u64,
    pub local_gb: u64,
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    #[serde(default)]
    pub ended_at: Option<Timestamp>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
}

/// GETs with the negotiated microversion, stepping down on 406.
struct Compute;

impl PageFetch for Compute {
    async fn fetch(&self, session: &Session, list: &Collection<'_>, url: &Url) -> Result<Raw> {
        compute_get(session, list.scope, url).await
    }
}

/// Every item of a Compute list in the target's scope (see [`Collection`]
/// for the arguments), each page read with the negotiated microversion.
async fn collect_compute<T: serde::de::DeserializeOwned>(
    session: &Session,
    target: &Target,
    url: Url,
    items: &'static [&'static str],
    items_optional: bool,
    next: NextLink,
    what: &'static str,
) -> Result<Vec<T>> {
    let list = Collection {
        service: Service::Compute,
        scope: &target.scope,
        url,
        items,
        items_optional,
        next,
        what,
    };
    collect(session, list, &Compute).await
}

async fn compute_get(session: &Session, scope: &Scope, url: &Url) -> Result<Raw> {
    loop {
        let idx = session.nova_version_index().min(MICROVERSIONS.len() - 1);
        let v = MICROVERSIONS[idx];
        let raw = session
            .get(
                Service::Compute,
                scope,
                url,
                &[
                    ("OpenStack-API-Version", format!("compute {v}")),
                    ("X-OpenStack-Nova-API-Version", v.to_string()),
                ],
            )
            .await?;
        if raw.status == StatusCode::NOT_ACCEPTABLE && idx + 1 < MICROVERSIONS.len() {
            tracing::info!(
                refused = v,
                next = MICROVERSIONS[idx + 1],
                "Nova does not support this microversion, stepping down"
            );
            session.lower_nova_version(idx);
            continue;
        }
        return Ok(raw);
    }
}

/// The microversion this session uses with Nova (after any step-down).
pub fn microversion(session: &Session) -> &'static str {
    MICROVERSIONS[session.nova_version_index().min(MICROVERSIONS.len() - 1)]
}

fn with_query(mut url: Url, pairs: &[(&str, &str)]) -> Url {
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    url
}

/// Nova's `start`/`end` format: naive ISO 8601, read as UTC.
fn usage_time(t: Timestamp) -> String {
    let c = t.civil();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.micro
    )
}

/// Every server of the project (all pages of `GET /servers/detail`), with
/// `changes-since` when given: servers changed (created, updated, deleted)
/// since then, deleted ones included. Without it: every current server.
pub async fn list_servers(
    session: &Session,
    target: &Target,
    changes_since: Option<Timestamp>,
) -> Result<Vec<Server>> {
    let endpoint = session.endpoint(Service::Compute, &target.scope).await?;
    let since = changes_since.map(|t| t.to_string());
    let mut q: Vec<(&str, &str)> = vec![("limit", PAGE_LIMIT)];
    if let Some(s) = &since {
        q.push(("changes-since", s));
    }
    if target.all_tenants {
        q.push(("all_tenants", "1"));
        q.push(("project_id", &target.project_id));
    }
    let url = with_query(join(&endpoint, &["servers", "detail"])?, &q);
    collect_compute(
        session,
        target,
        url,
        &["servers"],
        false,
        NextLink::Links("servers_links"),
        "nova server",
    )
    .await
}

/// One server (`GET /servers/{id}`).
pub async fn get_server(session: &Session, target: &Target, id: &str) -> Result<Server> {
    #[derive(Deserialize)]
    struct Body {
        server: Server,
    }
    let endpoint = session.endpoint(Service::Compute, &target.scope).await?;
    let url = join(&endpoint, &["servers", id])?;
    let raw = compute_get(session, &target.scope, &url)
        .await?
        .found("nova server", id)?;
    Ok(raw.json::<Body>(&format!("nova server {id:?}"))?.server)
}

/// The project's usage report for `[start, end]`
/// (`GET /os-simple-tenant-usage/{project}`), all pages (2.40+).
pub async fn simple_tenant_usage(
    session: &Session,
    target: &Target,
    start: Timestamp,
    end: Timestamp,
) -> Result<Vec<ServerUsage>> {
    let endpoint = session.endpoint(Service::Compute, &target.scope).await?;
    let (s, e) = (usage_time(start), usage_time(end));
    let url = with_query(
        join(&endpoint, &["os-simple-tenant-usage", &target.project_id])?,
        &[("start", &s), ("end", &e), ("limit", PAGE_LIMIT)],
    );
    collect_compute(
        session,
        target,
        url,
        &["tenant_usage", "server_usages"],
        true,
        NextLink::Links("tenant_usage_links"),
        "nova server usage",
    )
    .await
}

/// A flavor with its extra specs: `GET /flavors/{id}` (extra specs included
/// from 2.61), else plus `GET /flavors/{id}/os-extra_specs`. Flavors are
/// global: any scope with a compute endpoint will do.
pub async fn get_flavor(session: &Session, scope: &Scope, id: &str) -> Result<Flavor> {
    let endpoint = session.endpoint(Service::Compute, scope).await?;
    let url = join(&endpoint, &["flavors", id])?;
    let raw = compute_get(session, scope, &url)
        .await?
        .found("nova flavor", id)?;
    let f = raw
        .json::<FlavorBody>(&format!("nova flavor {id:?}"))?
        .flavor;
    let extra_specs = match f.extra_specs {
        Some(specs) => specs,
        None => {
            let url = join(&endpoint, &["flavors", id, "os-extra_specs"])?;
            let raw = compute_get(session, scope, &url)
                .await?
                .found("nova flavor", id)?;
            raw.json::<ExtraSpecsBody>(&format!("extra specs of nova flavor {id:?}"))?
                .extra_specs
        }
    };
    Ok(Flavor {
        id: f.id,
        name: f.name,
        vcpus: f.vcpus,
        ram: f.ram,
        disk: f.disk,
        ephemeral: f.ephemeral,
        extra_specs,
    })
}

/// [`get_flavor`] through the run's cache: `Ok(None)` for a flavor Nova no
/// longer knows.
pub async fn cached_flavor(
    cache: &FlavorCache,
    session: &Session,
    scope: &Scope,
    id: &str,
) -> Result<Option<std::sync::Arc<Flavor>>> {
    cache
        .get_or_fetch(id, || get_flavor(session, scope, id))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_parses_embedded_and_referenced_flavors_and_image_forms() {
        let embedded: Server = serde_json::from_str(
            r#"{"id":"s1","name":"vm","status":"ACTIVE","tenant_id":"p","user_id":"u",
            "created":"2026-11-24T10:00:01Z","updated":"2026-11-24T10:00:05Z",
            "OS-SRV-USG:launched_at":"2026-11-24T10:00:04.000000","OS-SRV-USG:terminated_at":null,
            "image":"","flavor":{"vcpus":2,"ram":4096,"disk":20,"ephemeral":5,"swap":0,
            "original_name":"m1.medium","extra_specs":{"accounting:benchmark_type":"HEPscore23"}},
            "addresses":{"net":[{"addr":"10.0.0.5","version":4,"OS-EXT-IPS:type":"fixed"},
            {"addr":"192.0.2.7","version":4,"OS-EXT-IPS:type":"floating"}]}}"#,
        )
        .unwrap();
        assert_eq!(embedded.image, None);
        assert_eq!(embedded.floating_ip_count(), 1);
        assert_eq!(
            embedded.launched_at,
            Some(Timestamp::parse("2026-11-24T10:00:04Z").unwrap())
        );
        match embedded.flavor {
            ServerFlavor::Embedded(f) => {
                assert_eq!((f.vcpus, f.ram, f.disk, f.ephemeral), (2, 4096, 20, 5));
                assert_eq!(f.extra_specs.unwrap().len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let old: Server = serde_json::from_str(
            r#"{"id":"s2","name":"vm","status":"DELETED","tenant_id":"p","user_id":"u",
            "created":"2026-11-24T10:00:01Z","image":{"id":"img1","links":[]},
            "flavor":{"id":"42","links":[]}}"#,
        )
        .unwrap();
        assert_eq!(old.image.as_deref(), Some("img1"));
        assert_eq!(old.flavor, ServerFlavor::Ref { id: "42".into() });
    }

    #[test]
    fn usage_times_are_naive_utc() {
        let t = Timestamp::parse("2026-11-24T10:00:01.5Z").unwrap();
        assert_eq!(usage_time(t), "2026-11-24T10:00:01.500000");
    }
}
