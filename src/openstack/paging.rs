//! Reading every page of a collection.
//!
//! OpenStack APIs page with `limit`/`marker`; they announce the next page as
//! a link (`servers_links`, `volumes_links`, `floatingips_links`,
//! `tenant_usage_links`: `[{"rel": "next", "href": ...}]`; Glance: `next`;
//! Keystone: `links.next`). Link hosts and path prefixes are often wrong
//! behind proxies, so only the link's query is taken and applied to our own
//! endpoint URL. A marker seen twice is an error, never an endless loop, and
//! so is a list still linking to more after [`MAX_PAGES`] pages.

use std::collections::HashSet;

use reqwest::Url;
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::decode::decode;
use super::transport::{DETAIL_CHARS, Raw};
use super::{OpenStackError, Scope, Service, Session};
use crate::net::{excerpt, excerpt_chars, json_values};

type Result<T> = std::result::Result<T, OpenStackError>;

/// Pages read from one list before a further next link is an error: ten
/// million items at the 1000 per page we ask for, far beyond any project,
/// yet an end to a server whose every page links to a new one.
pub const MAX_PAGES: usize = 10_000;

/// JSON values all pages of one list may hold together (ten million: some
/// 60,000 Nova servers): what the items of a list cost in memory, however
/// the server spreads them over pages. Each page is also bounded alone
/// ([`MAX_JSON_VALUES`](super::MAX_JSON_VALUES)).
pub const MAX_LIST_VALUES: usize = 10_000_000;

/// Where a page says what comes next.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NextLink {
    /// `"<key>": [{"rel": "next", "href": ...}]` at the top level.
    Links(&'static str),
    /// Glance: `"next": "/v2/images?marker=..."`.
    Field(&'static str),
    /// Keystone: `"links": {"next": ... | null}`.
    Keystone,
}

/// Describes one paged collection.
pub(crate) struct Collection<'a> {
    pub service: Service,
    pub scope: &'a Scope,
    /// First page, with every filter and `limit` in the query.
    pub url: Url,
    /// Path of object keys to the item array, e.g. `["servers"]`.
    pub items: &'static [&'static str],
    /// Whether the item array may be absent (Nova's usage of an idle
    /// project is `{"tenant_usage": {}}`).
    pub items_optional: bool,
    pub next: NextLink,
    /// What an item is, for error messages ("nova server").
    pub what: &'static str,
}

/// Fetches one page; the Nova client implements it to add its microversion.
/// `url` is the page of `list` to read.
pub(crate) trait PageFetch {
    async fn fetch(&self, session: &Session, list: &Collection<'_>, url: &Url) -> Result<Raw>;
}

/// Plain authenticated GET.
pub(crate) struct PlainGet;

impl PageFetch for PlainGet {
    async fn fetch(&self, session: &Session, list: &Collection<'_>, url: &Url) -> Result<Raw> {
        session.get(list.service, list.scope, url, &[]).await
    }
}

/// Reads every page and deserializes every item (an item that does not
/// parse is an error naming it and its id).
pub(crate) async fn collect<T: DeserializeOwned>(
    session: &Session,
    c: Collection<'_>,
    fetch: &impl PageFetch,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let mut url = c.url.clone();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut values = 0usize;
    for page_no in 1.. {
        let raw = fetch.fetch(session, &c, &url).await?.ok()?;
        values += json_values(&raw.body, MAX_LIST_VALUES);
        if values > MAX_LIST_VALUES {
            return Err(OpenStackError::EndlessList {
                what: format!("{} list from {}", c.what, raw.path),
                detail: format!(
                    "{page_no} pages hold more than {MAX_LIST_VALUES} JSON values in all, the limit"
                ),
            });
        }
        let page = match read_page::<T>(&raw.body, &c) {
            Ok(page) => page,
            Err(e) => return Err(page_error::<T>(&raw, &c, page_no, e)),
        };
        let count = page.items.len();
        out.extend(page.items);
        let Some(href) = page.next.as_ref().and_then(|v| next_href(v, c.next)) else {
            break;
        };
        if count == 0 {
            // A link after an empty page leads nowhere new.
            break;
        }
        if page_no >= MAX_PAGES {
            return Err(OpenStackError::EndlessList {
                what: format!("{} list from {}", c.what, raw.path),
                detail: format!(
                    "page {page_no} ({} items so far) still links to a next page, and {MAX_PAGES} pages is the limit",
                    out.len()
                ),
            });
        }
        url = next_url(&c.url, &href, c.what, &mut seen)?;
    }
    Ok(out)
}

/// One page: its items and the value of the key that names the next page.
pub(super) struct Page<T> {
    items: Vec<T>,
    next: Option<Value>,
}

/// Reads a page in one pass straight into `T`s, skipping everything else
/// (no intermediate `Value` per item: the bulk of a run's CPU time).
pub(super) fn read_page<T: DeserializeOwned>(
    body: &[u8],
    c: &Collection<'_>,
) -> std::result::Result<Page<T>, serde_json::Error> {
    let mut found = None;
    let mut next = None;
    let mut de = serde_json::Deserializer::from_slice(body);
    Level {
        path: c.items,
        next_key: Some(next_key(c.next)),
        items: &mut found,
        next: &mut next,
    }
    .deserialize(&mut de)?;
    de.end()?;
    let items = match found {
        Some(Some(items)) => items,
        Some(None) | None if c.items_optional => Vec::new(),
        _ => {
            return Err(serde::de::Error::custom(format!(
                "no {:?} list in it",
                c.items.join(".")
            )));
        }
    };
    Ok(Page { items, next })
}

/// The top-level key holding the next page's link.
fn next_key(style: NextLink) -> &'static str {
    match style {
        NextLink::Links(key) | NextLink::Field(key) => key,
        NextLink::Keystone => "links",
    }
}

/// The error of a page [`read_page`] refused, naming what is wrong: the
/// page is read again the slow way to name the item (and its id) that does
/// not parse.
fn page_error<T: DeserializeOwned>(
    raw: &Raw,
    c: &Collection<'_>,
    page_no: usize,
    fast: serde_json::Error,
) -> OpenStackError {
    let malformed = |what: String, detail: String| OpenStackError::Malformed {
        what,
        detail: excerpt_chars(detail.as_bytes(), DETAIL_CHARS),
    };
    let list = format!("page {page_no} of {} list from {}", c.what, raw.path);
    let page: Value = match raw.json(&format!("page {page_no} of {} list", c.what)) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let mut node = &page;
    for key in c.items {
        match node.get(*key) {
            Some(v) => node = v,
            None if c.items_optional => return malformed(list, fast.to_string()),
            None => return malformed(list, format!("no {:?} in it", c.items.join("."))),
        }
    }
    let items = match node {
        Value::Array(a) => a,
        Value::Null if c.items_optional => return malformed(list, fast.to_string()),
        _ => return malformed(list, format!("{:?} is not a list", c.items.join("."))),
    };
    for (i, item) in items.iter().enumerate() {
        if let Err(e) = decode::<T>(item) {
            let id = item
                .get("id")
                .or_else(|| item.get("instance_id"))
                .and_then(Value::as_str)
                .map(|id| format!(" {:?}", excerpt_chars(id.as_bytes(), 80)))
                .unwrap_or_else(|| format!(" #{} of page {page_no}", i + 1));
            return malformed(format!("{}{id} from {}", c.what, raw.path), e.to_string());
        }
    }
    malformed(list, fast.to_string())
}

fn marker_hash(marker: &str) -> u64 {
    use std::hash::BuildHasher;
    // Keys drawn once: the same marker hashes the same within a run.
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default).hash_one(marker)
}

/// Which key of a page object this is.
enum Key {
    Items,
    Next,
    Other,
}

struct KeySeed<'a> {
    items: &'a str,
    next: Option<&'a str>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Key;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: serde::de::Error>(self, k: &str) -> std::result::Result<Key, E> {
        Ok(if k == self.items {
            Key::Items
        } else if Some(k) == self.next {
            Key::Next
        } else {
            Key::Other
        })
    }
}

/// One object on the way to the item list (`path` left to walk); at the
/// top level it also keeps the next-link key's value. `null` where an
/// object is expected counts as no list.
struct Level<'a, T> {
    path: &'static [&'static str],
    next_key: Option<&'static str>,
    items: &'a mut Option<Option<Vec<T>>>,
    next: &'a mut Option<Value>,
}

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Level<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Level<'_, T> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "an object with {:?}", self.path.join("."))
    }
    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let Some((head, rest)) = self.path.split_first() else {
            return Err(serde::de::Error::custom("empty item path"));
        };
        while let Some(key) = map.next_key_seed(KeySeed {
            items: head,
            next: self.next_key,
        })? {
            match key {
                Key::Items if rest.is_empty() => *self.items = Some(map.next_value()?),
                Key::Items => map.next_value_seed(Level::<T> {
                    path: rest,
                    next_key: None,
                    items: &mut *self.items,
                    next: &mut *self.next,
                })?,
                Key::Next => *self.next = Some(map.next_value()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The next page's link from the value of [`next_key`].
fn next_href(value: &Value, style: NextLink) -> Option<String> {
    let href = match style {
        NextLink::Links(_) => value
            .as_array()?
            .iter()
            .find(|l| l.get("rel").and_then(Value::as_str) == Some("next"))?
            .get("href")?,
        NextLink::Field(_) => value,
        NextLink::Keystone => value.get("next")?,
    };
    href.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// Our first-page URL with the link's query merged over it (the link wins
/// for keys it has).
/// `seen` holds hashes of the markers followed: a hostile server's markers
/// may be long, and there are up to [`MAX_PAGES`] of them.
fn next_url(first: &Url, href: &str, what: &str, seen: &mut HashSet<u64>) -> Result<Url> {
    // Relative links (Glance) are resolved against the first page only to
    // read their query.
    let link = first.join(href).map_err(|e| OpenStackError::Malformed {
        what: format!("next link of the {what} list"),
        detail: format!("{:?}: {e}", excerpt(href.as_bytes())),
    })?;
    let link_pairs: Vec<(String, String)> = link
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let marker = link_pairs
        .iter()
        .find(|(k, _)| k == "marker")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| link.query().unwrap_or_default().to_string());
    if !seen.insert(marker_hash(&marker)) {
        return Err(OpenStackError::RepeatingMarker {
            what: format!("{what} list"),
            marker: excerpt(marker.as_bytes()),
        });
    }
    let mut pairs: Vec<(String, String)> = first
        .query_pairs()
        .filter(|(k, _)| !link_pairs.iter().any(|(lk, _)| lk == k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.extend(link_pairs);
    let mut url = first.clone();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_url_takes_the_link_query_onto_our_endpoint() {
        let first = Url::parse("https://nova.example/v2.1/servers/detail?limit=2&changes-since=2026-01-01T00%3A00%3A00Z").unwrap();
        let mut seen = HashSet::new();
        let next = next_url(
            &first,
            "http://internal-host:8774/v2.1/servers/detail?limit=2&marker=abc",
            "server",
            &mut seen,
        )
        .unwrap();
        assert_eq!(next.host_str(), Some("nova.example"));
        assert_eq!(next.path(), "/v2.1/servers/detail");
        let q: Vec<_> = next.query_pairs().collect();
        assert!(q.iter().any(|(k, v)| k == "marker" && v == "abc"));
        assert!(
            q.iter()
                .any(|(k, v)| k == "changes-since" && v == "2026-01-01T00:00:00Z")
        );
        assert_eq!(q.iter().filter(|(k, _)| k == "limit").count(), 1);
        let again = next_url(&first, "/x?marker=abc", "server", &mut seen);
        assert!(matches!(again, Err(OpenStackError::RepeatingMarker { .. })));
    }

    #[test]
    fn glance_relative_next_keeps_our_prefix() {
        let first = Url::parse("https://cloud.example/image/v2/images?limit=2").unwrap();
        let mut seen = HashSet::new();
        let next = next_url(&first, "/v2/images?marker=i2", "image", &mut seen).unwrap();
        assert_eq!(
            next.as_str(),
            "https://cloud.example/image/v2/images?limit=2&marker=i2"
        );
    }

    fn collection(
        items: &'static [&'static str],
        optional: bool,
        next: NextLink,
    ) -> Collection<'static> {
        static SCOPE: Scope = Scope::Unscoped;
        Collection {
            service: Service::Compute,
            scope: &SCOPE,
            url: Url::parse("https://nova.example/v2.1/x").unwrap(),
            items,
            items_optional: optional,
            next,
            what: "thing",
        }
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Item {
        id: String,
    }

    /// The error names the item, its id and the field path, and says which
    /// shapes a flavor may have (no "did not match any variant").
    #[test]
    fn a_bad_server_is_named_with_its_field() {
        use crate::openstack::nova::Server;
        let c = collection(&["servers"], false, NextLink::Links("servers_links"));
        let server = |flavor: &str| {
            format!(
                r#"{{"id":"s1","name":"vm","status":"ACTIVE","tenant_id":"p","user_id":"u",
                "created":"2026-11-24T10:00:01Z","flavor":{flavor}}}"#
            )
        };
        for (flavor, expected) in [
            (
                r#"{"vcpus":"2","ram":1,"disk":1}"#,
                "flavor.vcpus: invalid type: string",
            ),
            (
                r#"{"vcpus":2,"disk":1}"#,
                "flavor: an embedded flavor without ram",
            ),
            (r#"{"links":[]}"#, "flavor: neither an embedded flavor"),
            (r#"{"id":7}"#, "flavor.id: invalid type: integer"),
        ] {
            let body = format!(r#"{{"servers":[{}]}}"#, server(flavor));
            let raw = Raw {
                status: reqwest::StatusCode::OK,
                headers: Default::default(),
                body: body.clone().into(),
                service: Service::Compute,
                method: "GET",
                path: "/compute/v2.1/servers/detail".into(),
            };
            let fast = read_page::<Server>(body.as_bytes(), &c)
                .err()
                .expect("refused");
            let e = page_error::<Server>(&raw, &c, 1, fast).to_string();
            assert!(
                e.starts_with(r#"malformed thing "s1" from /compute/v2.1/servers/detail: "#)
                    && e.contains(expected),
                "{e}"
            );
            assert!(!e.contains("untagged"), "{e}");
        }
    }

    #[test]
    fn a_page_is_read_in_one_pass_with_its_next_link() {
        let c = collection(&["servers"], false, NextLink::Links("servers_links"));
        let body = br#"{"x": {"servers": 1}, "servers": [{"id": "a", "more": [1, {"y": null}]}, {"id": "b"}],
            "servers_links": [{"rel": "next", "href": "/s?marker=b"}]}"#;
        let page = read_page::<Item>(body, &c).unwrap();
        assert_eq!(
            page.items,
            [Item { id: "a".into() }, Item { id: "b".into() }]
        );
        assert_eq!(
            next_href(page.next.as_ref().unwrap(), c.next).as_deref(),
            Some("/s?marker=b")
        );
        assert!(
            read_page::<Item>(br#"{"servers_links": []}"#, &c).is_err(),
            "no list"
        );
        assert!(
            read_page::<Item>(br#"{"servers": {}}"#, &c).is_err(),
            "not a list"
        );
        assert!(read_page::<Item>(br#"{"servers": [{"id": 1}]}"#, &c).is_err());
        assert!(
            read_page::<Item>(br#"{"servers": []} x"#, &c).is_err(),
            "trailing data"
        );

        let c = collection(
            &["tenant_usage", "server_usages"],
            true,
            NextLink::Links("tenant_usage_links"),
        );
        let page = read_page::<Item>(
            br#"{"tenant_usage": {"server_usages": [{"id": "u"}], "total_hours": 1}}"#,
            &c,
        )
        .unwrap();
        assert_eq!(page.items.len(), 1);
        assert!(page.next.is_none());
        for idle in [
            &br#"{"tenant_usage": {}}"#[..],
            br#"{"tenant_usage": null}"#,
            br#"{}"#,
        ] {
            assert!(read_page::<Item>(idle, &c).unwrap().items.is_empty());
        }

        let c = collection(&["projects"], false, NextLink::Keystone);
        let page = read_page::<Item>(
            br#"{"projects": [], "links": {"next": "https://k/v3/projects?marker=p"}}"#,
            &c,
        )
        .unwrap();
        assert_eq!(
            next_href(page.next.as_ref().unwrap(), c.next).as_deref(),
            Some("https://k/v3/projects?marker=p")
        );
    }
}
