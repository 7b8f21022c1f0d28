//! Reading every page of a collection.
//!
//! OpenStack APIs page with `limit`/`marker`; they announce the next page as
//! a link (`servers_links`, `volumes_links`, `floatingips_links`,
//! `tenant_usage_links`: `[{"rel": "next", "href": ...}]`; Glance: `next`;
//! Keystone: `links.next`). Link hosts and path prefixes are often wrong
//! behind proxies, so only the link's query is taken and applied to our own
//! endpoint URL. A marker seen twice is an error, never an endless loop.

use std::collections::HashSet;

use reqwest::Url;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::http::Raw;
use super::{OpenStackError, Scope, Service, Session};

type Result<T> = std::result::Result<T, OpenStackError>;

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
pub(crate) trait PageFetch {
    async fn fetch(
        &self,
        session: &Session,
        service: Service,
        scope: &Scope,
        url: &Url,
    ) -> Result<Raw>;
}

/// Plain authenticated GET.
pub(crate) struct PlainGet;

impl PageFetch for PlainGet {
    async fn fetch(
        &self,
        session: &Session,
        service: Service,
        scope: &Scope,
        url: &Url,
    ) -> Result<Raw> {
        session.get(service, scope, url, &[]).await
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
    let mut seen: HashSet<String> = HashSet::new();
    for page_no in 1.. {
        let raw = fetch.fetch(session, c.service, c.scope, &url).await?.ok()?;
        let page: Value = raw.json(&format!("page {page_no} of {} list", c.what))?;
        let mut node = &page;
        let mut missing = false;
        for key in c.items {
            match node.get(*key) {
                Some(v) => node = v,
                None => {
                    missing = true;
                    break;
                }
            }
        }
        if missing && !c.items_optional {
            return Err(OpenStackError::Malformed {
                what: format!("page {page_no} of {} list from {}", c.what, raw.path),
                detail: format!("no {:?} in it", c.items.join(".")),
            });
        }
        let items: &[Value] = match node {
            _ if missing => &[],
            Value::Array(a) => a,
            Value::Null if c.items_optional => &[],
            _ => {
                return Err(OpenStackError::Malformed {
                    what: format!("page {page_no} of {} list from {}", c.what, raw.path),
                    detail: format!("{:?} is not a list", c.items.join(".")),
                });
            }
        };
        let count = items.len();
        for (i, item) in items.iter().enumerate() {
            let parsed = T::deserialize(item).map_err(|e| {
                let id = item
                    .get("id")
                    .or_else(|| item.get("instance_id"))
                    .and_then(Value::as_str)
                    .map(|id| format!(" {id:?}"))
                    .unwrap_or_else(|| format!(" #{} of page {page_no}", i + 1));
                OpenStackError::Malformed {
                    what: format!("{}{id} from {}", c.what, raw.path),
                    detail: e.to_string(),
                }
            })?;
            out.push(parsed);
        }
        let Some(href) = next_href(&page, c.next) else {
            break;
        };
        if count == 0 {
            // A link after an empty page leads nowhere new.
            break;
        }
        url = next_url(&c.url, &href, c.what, &mut seen)?;
    }
    Ok(out)
}

fn next_href(page: &Value, style: NextLink) -> Option<String> {
    let href = match style {
        NextLink::Links(key) => page
            .get(key)?
            .as_array()?
            .iter()
            .find(|l| l.get("rel").and_then(Value::as_str) == Some("next"))?
            .get("href")?,
        NextLink::Field(key) => page.get(key)?,
        NextLink::Keystone => page.get("links")?.get("next")?,
    };
    href.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// Our first-page URL with the link's query merged over it (the link wins
/// for keys it has).
fn next_url(first: &Url, href: &str, what: &str, seen: &mut HashSet<String>) -> Result<Url> {
    // Relative links (Glance) are resolved against the first page only to
    // read their query.
    let link = first.join(href).map_err(|e| OpenStackError::Malformed {
        what: format!("next link of the {what} list"),
        detail: format!("{href:?}: {e}"),
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
    if !seen.insert(marker.clone()) {
        return Err(OpenStackError::RepeatingMarker {
            what: format!("{what} list"),
            marker,
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
}
