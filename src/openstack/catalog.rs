//! The service catalog that comes with a token: the endpoint of a service
//! for the configured interface and region, and building URLs on it.

use reqwest::Url;
use serde::Deserialize;

use super::session::{Session, Token};
use super::{Interface, OpenStackError, Scope, Service};
use crate::net::excerpt;

type Result<T> = std::result::Result<T, OpenStackError>;

#[derive(Debug, Deserialize)]
pub(super) struct CatalogEntry {
    #[serde(rename = "type")]
    service_type: String,
    #[serde(default)]
    endpoints: Vec<CatalogEndpoint>,
}

#[derive(Debug, Deserialize)]
struct CatalogEndpoint {
    interface: String,
    url: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
}

/// Appends path segments (percent-encoded) to a base URL.
pub(crate) fn join(base: &Url, segments: &[&str]) -> Result<Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.path_segments_mut()
        .map_err(|()| OpenStackError::Config {
            field: "endpoint",
            detail: format!("{base} cannot take a path"),
        })?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Whether the URL's path already ends with the version segment (`v3`,
/// `v2`, `v2.0`), as some catalogs register it and others do not.
pub(crate) fn ends_with_version(url: &Url, version: &str) -> bool {
    url.path()
        .trim_end_matches('/')
        .ends_with(&format!("/{version}"))
}

impl Session {
    /// The catalog URL of a service for the configured interface and region.
    pub async fn endpoint(&self, service: Service, scope: &Scope) -> Result<Url> {
        let token = self.token(scope).await?;
        self.endpoint_in(&token, service)
    }

    fn endpoint_in(&self, token: &Token, service: Service) -> Result<Url> {
        let cfg = &self.inner.cfg;
        let interface: Interface = cfg.interface;
        let region = cfg.region_name.as_deref();
        for wanted in service.catalog_types() {
            for entry in token.catalog.iter().filter(|e| e.service_type == *wanted) {
                let found = entry.endpoints.iter().find(|ep| {
                    ep.interface.trim_end_matches("URL") == interface.as_str()
                        && region.is_none_or(|r| {
                            ep.region_id.as_deref() == Some(r) || ep.region.as_deref() == Some(r)
                        })
                });
                if let Some(ep) = found {
                    let url = Url::parse(ep.url.trim_end_matches('/')).map_err(|e| {
                        OpenStackError::Malformed {
                            what: format!("{service} endpoint URL in the service catalog"),
                            detail: format!("{:?}: {e}", excerpt(ep.url.as_bytes())),
                        }
                    })?;
                    if service == Service::Identity && !ends_with_version(&url, "v3") {
                        return join(&url, &["v3"]);
                    }
                    return Ok(url);
                }
            }
        }
        if service == Service::Identity {
            // Some clouds leave Keystone out of the catalog: auth_url is it.
            return Ok(self.inner.auth_base.clone());
        }
        Err(OpenStackError::NoEndpoint {
            service,
            interface: interface.as_str(),
            region: region.map(str::to_string),
        })
    }
}
