//! Glance (image v2): images by id, or all of them.

use std::sync::Arc;

use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::catalog::{ends_with_version, join};
use super::decode::{required, take};
use super::paging::{Collection, NextLink, PlainGet, collect};
use super::{Cache, OpenStackError, Scope, Service, Session};

type Result<T> = std::result::Result<T, OpenStackError>;

/// One image per id per run.
pub type ImageCache = Cache<Image>;

/// An image. Glance v2 puts custom properties (e.g. `vmcatcher_event_ad_mpuri`)
/// at the top level beside the standard fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub status: Option<String>,
    /// Every other key.
    pub properties: Map<String, Value>,
}

/// By hand rather than with `#[serde(flatten)]`, whose errors do not name
/// the field.
impl<'de> Deserialize<'de> for Image {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut m = Map::<String, Value>::deserialize(d)?;
        Ok(Image {
            id: required(take(&mut m, "id")?, "id")?,
            name: take::<Option<String>, _>(&mut m, "name")?.flatten(),
            status: take::<Option<String>, _>(&mut m, "status")?.flatten(),
            properties: m,
        })
    }
}

impl Image {
    /// A string property (`None` if absent, null or not a string).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(Value::as_str)
    }
}

async fn images_url(session: &Session, scope: &Scope, rest: &[&str]) -> Result<Url> {
    let endpoint = session.endpoint(Service::Image, scope).await?;
    let mut segments = Vec::with_capacity(rest.len() + 2);
    if !ends_with_version(&endpoint, "v2") {
        segments.push("v2");
    }
    segments.push("images");
    segments.extend_from_slice(rest);
    join(&endpoint, &segments)
}

/// `GET /v2/images/{id}`. Images are visible across projects when public or
/// shared; any scope with an image endpoint will do.
pub async fn get_image(session: &Session, scope: &Scope, id: &str) -> Result<Image> {
    let url = images_url(session, scope, &[id]).await?;
    let raw = session
        .get(Service::Image, scope, &url, &[])
        .await?
        .found("glance image", id)?;
    raw.json(&format!("glance image {id:?}"))
}

/// [`get_image`] through the run's cache: `Ok(None)` for a deleted image.
pub async fn cached_image(
    cache: &ImageCache,
    session: &Session,
    scope: &Scope,
    id: &str,
) -> Result<Option<Arc<Image>>> {
    cache
        .get_or_fetch(id, || get_image(session, scope, id))
        .await
}

/// Every image the scope can see, all pages (`next` links).
pub async fn list_images(session: &Session, scope: &Scope) -> Result<Vec<Image>> {
    let mut url = images_url(session, scope, &[]).await?;
    url.query_pairs_mut().append_pair("limit", "1000");
    collect(
        session,
        Collection {
            service: Service::Image,
            scope,
            url,
            items: &["images"],
            items_optional: false,
            next: NextLink::Field("next"),
            what: "glance image",
        },
        &PlainGet,
    )
    .await
}
