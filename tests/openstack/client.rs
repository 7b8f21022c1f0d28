//! The OpenStack clients against an in-test mock that follows the API
//! reference: auth methods, scopes, catalog, token reuse and renewal,
//! retries, paging, errors and per-run caches.

use std::sync::Arc;
use std::time::Duration;

use cloud_accounting::openstack::{
    Answer, AppCredentialRef, AuthConfig, AuthMethod, DomainRef, Interface, OpenStackError, Scope,
    Service, Session, StatusCount, Target, UserRef, cinder, glance, keystone, neutron, nova,
};
use cloud_accounting::time::Timestamp;

use crate::support;
use crate::support::openstack_mock as mock;
use crate::support::openstack_mock::{APP_CRED_ID, APP_CRED_SECRET, Mock, OIDC_TOKEN, PASSWORD};

fn password_config(mock: &Mock, scope: Scope) -> AuthConfig {
    let mut cfg = AuthConfig::new(
        // With a trailing slash and no /v3, as sites write it either way.
        format!("{}/identity/", mock.base),
        AuthMethod::Password {
            user: UserRef::Name {
                name: "caso".into(),
                domain: DomainRef::Name("Default".into()),
            },
            password: PASSWORD.into(),
        },
        scope,
    );
    cfg.timeout = Duration::from_secs(5);
    cfg.retries = 2;
    cfg.backoff = Duration::from_millis(10);
    cfg
}

fn demo() -> Target {
    Target::own("p-demo")
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|i| id(i).to_string()).collect()
}

#[tokio::test]
async fn password_auth_one_token_for_every_call_of_a_project() {
    let mock = Mock::start().await;
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    let since = Timestamp::parse("2026-11-01T00:00:00Z").unwrap();
    let servers = nova::list_servers(&session, &demo(), Some(since))
        .await
        .unwrap();
    let usage = nova::simple_tenant_usage(
        &session,
        &demo(),
        since,
        Timestamp::parse("2026-11-30T00:00:00Z").unwrap(),
    )
    .await
    .unwrap();
    let volumes = cinder::list_volumes(&session, &demo()).await.unwrap();
    let fips = neutron::list_floating_ips(&session, &demo()).await.unwrap();
    let image = glance::get_image(&session, &demo().scope, "i2")
        .await
        .unwrap();
    let project = keystone::get_project(&session, &demo().scope, "p-demo")
        .await
        .unwrap();

    assert_eq!(ids(&servers, |s| &s.id), ["s1", "s2", "s3", "s4", "s5"]);
    assert_eq!(
        ids(&usage, |u| &u.instance_id),
        ["s1", "s2", "s3", "s4", "s5"]
    );
    assert_eq!(ids(&volumes, |v| &v.id), ["v1", "v2", "v3"]);
    assert_eq!(volumes[0].name, None);
    assert_eq!(volumes[0].attachments[0].server_id.as_deref(), Some("s1"));
    assert_eq!(fips.len(), 3);
    assert_eq!(
        image.property("vmcatcher_event_ad_mpuri"),
        Some("https://appdb/i2")
    );
    assert_eq!(project.property("VO"), Some("vo.demo.example"));
    assert_eq!(project.tags, ["caso"]);

    // One token for all of it, scoped by project id, password method.
    assert_eq!(mock.token_posts(), 1);
    let body = mock.with(|s| s.token_bodies[0].clone());
    assert_eq!(body["auth"]["identity"]["methods"][0], "password");
    assert_eq!(body["auth"]["scope"]["project"]["id"], "p-demo");
    let counts = session.request_counts();
    assert_eq!(counts.tokens, 1);
    assert_eq!(counts.total(), mock.seen().len() as u64);
    assert_eq!(counts.get(Service::Compute), 3 + 3);
    assert_eq!(counts.get(Service::Volume), 2);
    assert_eq!(counts.get(Service::Network), 2);
    // By answer: the same attempts, each with its status.
    let by_status: Vec<(Service, String, u64)> = counts
        .by_status
        .iter()
        .map(|c| (c.service, c.answer.to_string(), c.requests))
        .collect();
    assert_eq!(
        by_status,
        [
            (Service::Identity, "200".to_string(), counts.identity - 1),
            (Service::Identity, "201".to_string(), 1),
            (Service::Compute, "200".to_string(), 6),
            (Service::Image, "200".to_string(), counts.image),
            (Service::Volume, "200".to_string(), 2),
            (Service::Network, "200".to_string(), 2),
        ]
        .into_iter()
        .filter(|(_, _, n)| *n > 0)
        .collect::<Vec<_>>()
    );

    // changes-since went to Nova in UTC; the usage window is naive UTC.
    let first = &mock.seen_ending("/servers/detail")[0];
    assert_eq!(first.q("changes-since"), Some("2026-11-01T00:00:00Z"));
    assert_eq!(first.microversion.as_deref(), Some("compute 2.61"));
    let u = &mock.seen_ending("/os-simple-tenant-usage/p-demo")[0];
    assert_eq!(u.q("start"), Some("2026-11-01T00:00:00.000000"));
    // Neutron is always filtered by project (cASO defect 2).
    for req in mock.seen_ending("/floatingips") {
        assert_eq!(req.q("project_id"), Some("p-demo"));
    }
    // Cinder is never asked for changes-since (defect 9).
    for req in mock.seen_ending("/volumes/detail") {
        assert_eq!(req.q("changes-since"), None);
    }
}

#[tokio::test]
async fn paging_follows_next_links_onto_our_endpoint_and_covers_every_item_once() {
    let mock = Mock::start().await;
    mock.with(|s| {
        s.servers = (1..=7)
            .map(|i| mock::server(&format!("s{i}"), "p-demo"))
            .collect();
        s.servers.push(mock::server("x1", "p-other"));
    });
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    let servers = nova::list_servers(&session, &demo(), None).await.unwrap();
    assert_eq!(
        ids(&servers, |s| &s.id),
        ["s1", "s2", "s3", "s4", "s5", "s6", "s7"]
    );
    let pages = mock.seen_ending("/servers/detail");
    assert_eq!(pages.len(), 4);
    assert!(
        pages
            .iter()
            .all(|p| p.path == "/r1/compute/v2.1/servers/detail")
    );
    let markers: Vec<_> = pages
        .iter()
        .map(|p| p.q("marker").map(str::to_string))
        .collect();
    assert_eq!(
        markers,
        [
            None,
            Some("s2".into()),
            Some("s4".into()),
            Some("s6".into())
        ]
    );
    // Glance: relative `next` links.
    let images = glance::list_images(&session, &demo().scope).await.unwrap();
    assert_eq!(ids(&images, |i| &i.id), ["i1", "i2", "i3"]);
    assert_eq!(mock.seen_ending("/v2/images").len(), 2);
    assert_eq!(mock.token_posts(), 1);
}

#[tokio::test]
async fn repeating_marker_is_an_error_not_a_loop() {
    let mock = Mock::start().await;
    mock.with(|s| s.repeat_marker = true);
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    let err = nova::list_servers(&session, &demo(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, OpenStackError::RepeatingMarker { marker, .. } if marker == "s2"),
        "{err}"
    );
    assert!(err.to_string().contains("nova server list"), "{err}");
    // Page 1 points at s2, page 2 points at s2 again: stop there.
    assert_eq!(mock.seen_ending("/servers/detail").len(), 2);
}

#[tokio::test]
async fn admin_target_filters_by_project_with_one_token() {
    let mock = Mock::start().await;
    let mut cfg = password_config(
        &mock,
        Scope::ProjectName {
            name: "other".into(),
            domain: DomainRef::Id("default".into()),
        },
    );
    cfg.system_scope = true;
    let session = Session::new(cfg).unwrap();
    let admin = session.default_scope().clone();
    let target = Target::admin("p-demo", admin.clone());
    let servers = nova::list_servers(&session, &target, None).await.unwrap();
    assert_eq!(servers.len(), 5);
    let volumes = cinder::list_volumes(&session, &target).await.unwrap();
    assert_eq!(volumes.len(), 3);
    for req in mock.seen_ending("/servers/detail") {
        assert_eq!(req.q("all_tenants"), Some("1"));
        assert_eq!(req.q("project_id"), Some("p-demo"));
    }
    assert_eq!(mock.token_posts(), 1);
    let body = mock.with(|s| s.token_bodies[0].clone());
    assert_eq!(body["auth"]["scope"]["project"]["name"], "other");
    assert_eq!(body["auth"]["scope"]["project"]["domain"]["id"], "default");

    // System scope for tagged projects and users.
    assert_eq!(session.admin_scope(), Scope::System);
    let tagged = keystone::list_projects_by_tag(&session, &Scope::System, "caso")
        .await
        .unwrap();
    assert_eq!(ids(&tagged, |p| &p.id), ["p-demo"]);
    let body = mock.with(|s| s.token_bodies[1].clone());
    assert_eq!(body["auth"]["scope"]["system"]["all"], true);
    assert_eq!(mock.seen_ending("/v3/projects")[0].q("tags"), Some("caso"));
}

#[tokio::test]
async fn project_scope_falls_back_from_id_to_name() {
    let mock = Mock::start().await;
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    let project = session.project_scope("demo").await.unwrap();
    assert_eq!(
        (project.id.as_str(), project.name.as_str()),
        ("p-demo", "demo")
    );
    let bodies = mock.with(|s| s.token_bodies.clone());
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["auth"]["scope"]["project"]["id"], "demo");
    assert_eq!(bodies[1]["auth"]["scope"]["project"]["name"], "demo");
    assert_eq!(
        bodies[1]["auth"]["scope"]["project"]["domain"]["name"],
        "Default"
    );
    // The name-scoped token serves the id scope too: no third token.
    nova::list_servers(&session, &Target::own(project.id), None)
        .await
        .unwrap();
    assert_eq!(mock.token_posts(), 2);
    // An id works at once.
    let p = session.project_scope("p-other").await.unwrap();
    assert_eq!(p.name, "other");
    assert_eq!(mock.token_posts(), 3);
    // Neither id nor name: one clear error.
    let err = session.project_scope("nope").await.unwrap_err();
    assert!(matches!(err, OpenStackError::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string().contains("\"nope\" as an id and as a name"),
        "{err}"
    );
    // Keystone API lookup by id or name, too (admin listing).
    let found = keystone::lookup_project(&session, &Target::own("p-demo").scope, "other")
        .await
        .unwrap();
    assert_eq!(found.id, "p-other");
    let missing = keystone::lookup_project(&session, &Target::own("p-demo").scope, "zzz")
        .await
        .unwrap_err();
    assert!(
        matches!(missing, OpenStackError::NotFound { .. }),
        "{missing}"
    );
}

#[tokio::test]
async fn application_credential_never_sends_a_scope() {
    let mock = Mock::start().await;
    let mut cfg = password_config(&mock, Scope::Unscoped);
    cfg.method = AuthMethod::ApplicationCredential {
        credential: AppCredentialRef::Id(APP_CRED_ID.into()),
        secret: APP_CRED_SECRET.into(),
    };
    // Even if the site asks for system scope (cASO defect 10).
    cfg.system_scope = true;
    let session = Session::new(cfg).unwrap();
    assert_eq!(session.admin_scope(), Scope::Unscoped);
    let bound = session.project_scope("p-ac").await.unwrap();
    assert_eq!(bound.id, "p-ac");
    let by_name = session.project_scope("ac").await.unwrap();
    assert_eq!(by_name.id, "p-ac");
    let fips = neutron::list_floating_ips(&session, &Target::own("p-ac"))
        .await
        .unwrap();
    assert!(fips.is_empty());
    let err = session.project_scope("p-demo").await.unwrap_err();
    assert!(
        matches!(err, OpenStackError::ScopeNotAllowed { .. }),
        "{err}"
    );
    assert_eq!(mock.token_posts(), 1);
    let body = mock.with(|s| s.token_bodies[0].clone());
    assert!(body["auth"].get("scope").is_none(), "{body}");
    assert_eq!(
        body["auth"]["identity"]["application_credential"]["id"],
        APP_CRED_ID
    );
}

#[tokio::test]
async fn oidc_access_token_is_exchanged_once_and_rescoped_per_project() {
    let mock = Mock::start().await;
    let mut cfg = password_config(&mock, Scope::Unscoped);
    cfg.method = AuthMethod::OidcAccessToken {
        identity_provider: "egi.eu".into(),
        protocol: "openid".into(),
        access_token: OIDC_TOKEN.into(),
    };
    let session = Session::new(cfg).unwrap();
    nova::list_servers(&session, &demo(), None).await.unwrap();
    nova::list_servers(&session, &Target::own("p-other"), None)
        .await
        .unwrap();
    let fed = mock.seen_ending("/protocols/openid/auth");
    assert_eq!(fed.len(), 1);
    assert_eq!(fed[0].method, "POST");
    let bodies = mock.with(|s| s.token_bodies.clone());
    assert_eq!(bodies.len(), 2);
    for (body, project) in bodies.iter().zip(["p-demo", "p-other"]) {
        assert_eq!(body["auth"]["identity"]["methods"][0], "token");
        assert_eq!(body["auth"]["scope"]["project"]["id"], project);
    }
    assert_eq!(session.request_counts().tokens, 3);

    // A wrong access token is a clear Unauthorized.
    let mut bad = password_config(&mock, Scope::Unscoped);
    bad.method = AuthMethod::OidcAccessToken {
        identity_provider: "egi.eu".into(),
        protocol: "openid".into(),
        access_token: "wrong".into(),
    };
    let err = nova::list_servers(&Session::new(bad).unwrap(), &demo(), None)
        .await
        .unwrap_err();
    assert!(matches!(err, OpenStackError::Unauthorized { .. }), "{err}");
}

#[tokio::test]
async fn bad_credentials_fail_fast_without_retries() {
    let mock = Mock::start().await;
    let mut cfg = password_config(&mock, Scope::Unscoped);
    cfg.method = AuthMethod::Password {
        user: UserRef::Id("u-caso".into()),
        password: "wrong".into(),
    };
    cfg.retries = 5;
    cfg.backoff = Duration::from_secs(30);
    let session = Session::new(cfg).unwrap();
    let err = cinder::list_volumes(&session, &demo()).await.unwrap_err();
    assert!(matches!(err, OpenStackError::Unauthorized { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("keystone") && text.contains("/identity/v3/auth/tokens"),
        "{text}"
    );
    assert!(text.contains("requires authentication"), "{text}");
    assert!(!text.contains("wrong"), "the password leaked: {text}");
    assert!(!format!("{session:?}").contains("wrong"));
    assert_eq!(mock.token_posts(), 1);
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn reauthenticates_once_on_401_then_gives_up() {
    let mock = Mock::start().await;
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    neutron::list_floating_ips(&session, &demo()).await.unwrap();
    mock.revoke_tokens();
    let fips = neutron::list_floating_ips(&session, &demo()).await.unwrap();
    assert_eq!(fips.len(), 3);
    assert_eq!(mock.token_posts(), 2);

    mock.with(|s| s.refuse_all_tokens = true);
    let before = mock.seen().len();
    let err = neutron::list_floating_ips(&session, &demo())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            OpenStackError::Unauthorized {
                service: Service::Network,
                ..
            }
        ),
        "{err}"
    );
    // 401, new token, 401: stop.
    assert_eq!(mock.seen().len() - before, 3);
    assert_eq!(mock.token_posts(), 3);
}

#[tokio::test]
async fn token_near_expiry_is_renewed() {
    let mock = Mock::start().await;
    // A 2 s token is used for its first half, then renewed.
    mock.with(|s| s.token_ttl_secs = 2);
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    glance::get_image(&session, &demo().scope, "i1")
        .await
        .unwrap();
    glance::get_image(&session, &demo().scope, "i2")
        .await
        .unwrap();
    assert_eq!(mock.token_posts(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    glance::get_image(&session, &demo().scope, "i3")
        .await
        .unwrap();
    assert_eq!(mock.token_posts(), 2);
}

#[tokio::test]
async fn retries_5xx_with_backoff_then_succeeds_or_gives_up() {
    let mock = Mock::start().await;
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    mock.fault("/auth/tokens", &[503]);
    mock.fault("/volumes/detail", &[503, 502]);
    let volumes = cinder::list_volumes(&session, &demo()).await.unwrap();
    assert_eq!(volumes.len(), 3);
    assert_eq!(mock.token_posts(), 2);
    assert_eq!(session.request_counts().volume, 2 + 2);

    mock.fault("/images/i1", &[500, 500, 500, 500]);
    let before = session.request_counts().image;
    let err = glance::get_image(&session, &demo().scope, "i1")
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            OpenStackError::Http {
                status: 500,
                service: Service::Image,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("injected fault"), "{err}");
    // retries = 2: three attempts, then the error.
    assert_eq!(session.request_counts().image - before, 3);
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut cfg = AuthConfig::new(
        format!("http://127.0.0.1:{port}/v3"),
        AuthMethod::Password {
            user: UserRef::Id("u".into()),
            password: PASSWORD.into(),
        },
        Scope::Unscoped,
    );
    cfg.retries = 2;
    cfg.backoff = Duration::from_millis(1);
    let session = Session::new(cfg).unwrap();
    let err = session.project_scope("p-demo").await.unwrap_err();
    let origin = format!("http://127.0.0.1:{port}");
    assert!(
        matches!(
            &err,
            OpenStackError::Transport {
                attempts: 3,
                service: Service::Identity,
                origin: o,
                method: "POST",
                path,
                ..
            } if *o == origin && path == "/v3/auth/tokens"
        ),
        "{err}"
    );
    let want = format!("cannot reach {origin} (POST /v3/auth/tokens) after 3 attempt(s): ");
    assert!(err.to_string().contains(&want), "{err}");
    assert_eq!(session.request_counts().tokens, 1);
    assert_eq!(session.request_counts().identity, 3);
    // No answer came: counted as such (the metrics' status "error").
    assert_eq!(
        session.request_counts().by_status,
        [StatusCount {
            service: Service::Identity,
            answer: Answer::NoAnswer,
            requests: 3
        }]
    );
    assert_eq!(Answer::NoAnswer.to_string(), "error");
}

#[tokio::test]
async fn catalog_selection_by_interface_and_region() {
    let mock = Mock::start().await;
    let mut cfg = password_config(&mock, Scope::Unscoped);
    cfg.interface = Interface::Internal;
    let s = Session::new(cfg).unwrap();
    let url = s.endpoint(Service::Compute, &demo().scope).await.unwrap();
    assert_eq!(url.path(), "/r1i/compute/v2.1");

    let mut cfg = password_config(&mock, Scope::Unscoped);
    cfg.region_name = Some("RegionTwo".into());
    let s = Session::new(cfg).unwrap();
    nova::list_servers(&s, &demo(), None).await.unwrap();
    assert!(
        mock.seen_ending("/servers/detail")
            .iter()
            .any(|r| r.path.starts_with("/r2/"))
    );
    // Glance exists only in RegionOne.
    let err = glance::get_image(&s, &demo().scope, "i1")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OpenStackError::NoEndpoint { .. }), "{text}");
    assert!(
        text.contains("glance") && text.contains("RegionTwo"),
        "{text}"
    );

    mock.with(|st| st.omit_network = true);
    let s = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    let err = neutron::list_floating_ips(&s, &demo()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no neutron endpoint in the service catalog for interface public"
    );
}

#[tokio::test]
async fn old_nova_microversion_fallback_and_flavor_lookup() {
    let mock = Mock::start().await;
    mock.with(|s| s.nova_max_minor = 42);
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    let servers = nova::list_servers(&session, &demo(), None).await.unwrap();
    assert_eq!(servers.len(), 5);
    assert_eq!(nova::microversion(&session), "2.40");
    assert_eq!(
        servers[0].flavor,
        nova::ServerFlavor::Ref { id: "fl-1".into() }
    );
    let versions: Vec<_> = mock
        .seen_ending("/servers/detail")
        .iter()
        .map(|r| r.microversion.clone().unwrap())
        .collect();
    assert_eq!(
        versions,
        [
            "compute 2.61",
            "compute 2.47",
            "compute 2.40",
            "compute 2.40",
            "compute 2.40"
        ]
    );
    let flavor = nova::get_flavor(&session, &demo().scope, "fl-1")
        .await
        .unwrap();
    assert_eq!(
        (flavor.vcpus, flavor.ram, flavor.disk, flavor.ephemeral),
        (2, 2048, 20, 5)
    );
    assert_eq!(
        flavor
            .extra_specs
            .get("accounting:benchmark_type")
            .map(String::as_str),
        Some("HEPscore23")
    );
    assert_eq!(mock.seen_ending("/os-extra_specs").len(), 1);
    let missing = nova::get_flavor(&session, &demo().scope, "gone")
        .await
        .unwrap_err();
    assert_eq!(missing.to_string(), "nova flavor \"gone\" not found");
}

#[tokio::test]
async fn modern_nova_embeds_flavors_and_flavor_show_has_extra_specs() {
    let mock = Mock::start().await;
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    let servers = nova::list_servers(&session, &demo(), None).await.unwrap();
    match &servers[0].flavor {
        nova::ServerFlavor::Embedded(f) => {
            assert_eq!((f.vcpus, f.ram, f.disk, f.ephemeral), (2, 2048, 20, 5));
            assert!(
                f.extra_specs
                    .as_ref()
                    .unwrap()
                    .contains_key("accounting:benchmark_value")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(servers[0].floating_ip_count(), 1);
    assert_eq!(servers[0].image.as_deref(), Some("i1"));
    nova::get_flavor(&session, &demo().scope, "fl-1")
        .await
        .unwrap();
    assert!(mock.seen_ending("/os-extra_specs").is_empty());
    let one = nova::get_server(&session, &demo(), "s3").await.unwrap();
    assert_eq!(one.id, "s3");
}

#[tokio::test]
async fn concurrent_flavor_lookups_make_one_request() {
    let mock = Mock::start().await;
    mock.with(|s| s.flavor_delay = Duration::from_millis(50));
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    let cache = Arc::new(nova::FlavorCache::new());
    let scope = demo().scope;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (cache, session, scope) = (cache.clone(), session.clone(), scope.clone());
        tasks.push(tokio::spawn(async move {
            nova::cached_flavor(&cache, &session, &scope, "fl-1").await
        }));
    }
    for t in tasks {
        let flavor = t.await.unwrap().unwrap().unwrap();
        assert_eq!(flavor.name, "m1.small");
    }
    assert_eq!(mock.seen_ending("/flavors/fl-1").len(), 1);
    assert_eq!(mock.token_posts(), 1);
    // A missing flavor is remembered as missing.
    assert!(
        nova::cached_flavor(&cache, &session, &scope, "gone")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        nova::cached_flavor(&cache, &session, &scope, "gone")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(mock.seen_ending("/flavors/gone").len(), 1);

    let images = glance::ImageCache::new();
    for _ in 0..3 {
        glance::cached_image(&images, &session, &scope, "i1")
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(mock.seen_ending("/images/i1").len(), 1);
}

#[tokio::test]
async fn user_names_are_best_effort_and_cached() {
    let mock = Mock::start().await;
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    let users = keystone::UserNames::new(demo().scope);
    assert_eq!(
        users.name(&session, "u-alice").await.as_deref(),
        Some("alice")
    );
    assert_eq!(
        users.name(&session, "u-alice").await.as_deref(),
        Some("alice")
    );
    assert_eq!(users.name(&session, "u-gone").await, None);
    assert_eq!(users.name(&session, "u-gone").await, None);
    mock.fault("/users/u-bob", &[403]);
    assert_eq!(users.name(&session, "u-bob").await, None);
    assert_eq!(users.name(&session, "u-bob").await, None);
    assert_eq!(mock.seen_ending("/users/u-alice").len(), 1);
    assert_eq!(mock.seen_ending("/users/u-gone").len(), 1);
    assert_eq!(mock.seen_ending("/users/u-bob").len(), 1);
    let direct = keystone::get_user(&session, &demo().scope, "u-gone")
        .await
        .unwrap_err();
    assert_eq!(direct.to_string(), "keystone user \"u-gone\" not found");
}

#[tokio::test]
async fn malformed_answers_name_the_object() {
    let mock = Mock::start().await;
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    let err = glance::get_image(&session, &demo().scope, "broken")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OpenStackError::Malformed { .. }), "{text}");
    assert!(
        text.contains("glance image \"broken\"") && text.contains("/image/v2/images/broken"),
        "{text}"
    );

    mock.with(|s| s.servers[3]["created"] = serde_json::json!("yesterday"));
    let err = nova::list_servers(&session, &demo(), None)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OpenStackError::Malformed { .. }), "{text}");
    assert!(text.contains("nova server \"s4\""), "{text}");
    assert!(text.contains("yesterday"), "{text}");

    // A 404 from Glance (HTML body) is NotFound naming the image.
    let err = glance::get_image(&session, &demo().scope, "nope")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "glance image \"nope\" not found");
}

#[tokio::test]
async fn empty_usage_report_is_no_servers() {
    let mock = Mock::start().await;
    let session = Session::new(password_config(&mock, Scope::Unscoped)).unwrap();
    let t = Timestamp::parse("2026-11-01").unwrap();
    let usage =
        nova::simple_tenant_usage(&session, &Target::own("p-other"), t, t.add_seconds(86400))
            .await
            .unwrap();
    assert!(usage.is_empty());
}

#[test]
fn secrets_never_show_in_debug() {
    let cfg = AuthConfig::new(
        "https://keystone.example/v3",
        AuthMethod::Password {
            user: UserRef::Id("u".into()),
            password: "hunter2".into(),
        },
        Scope::Unscoped,
    );
    assert!(!format!("{cfg:?}").contains("hunter2"));
    let bad_ca = AuthConfig {
        tls: cloud_accounting::openstack::TlsConfig {
            cafile: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        },
        ..cfg
    };
    let err = Session::new(bad_ca).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cafile: cannot read /nonexistent/ca.pem: No such file or directory (os error 2)"
    );
}

#[test]
fn tls_files_are_loaded_and_checked() {
    // The host key file is PKCS#1 ("BEGIN RSA PRIVATE KEY"), as sites often have it.
    let pki = support::pki::Pki::new();
    let host = pki.host();
    let garbage = pki.dir().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let (cert, keyfile) = (host.cert_path, host.key_path);

    let mut cfg = AuthConfig::new(
        "https://keystone.example:5000",
        AuthMethod::Password {
            user: UserRef::Id("u".into()),
            password: "p".into(),
        },
        Scope::Unscoped,
    );
    cfg.tls.cafile = Some(pki.ca_file().to_path_buf());
    cfg.tls.client_cert = Some(cloud_accounting::openstack::ClientCert {
        certfile: cert.clone(),
        keyfile: keyfile.clone(),
    });
    Session::new(cfg.clone()).unwrap();

    let mut insecure = cfg.clone();
    insecure.tls = Default::default();
    insecure.tls.insecure = true;
    Session::new(insecure).unwrap();

    let mut bad_ca = cfg.clone();
    bad_ca.tls.cafile = Some(garbage.clone());
    let err = Session::new(bad_ca).unwrap_err();
    assert!(err.to_string().starts_with("cafile: "), "{err}");
    assert!(err.to_string().contains("garbage.pem"), "{err}");

    let mut bad_key = cfg;
    bad_key.tls.client_cert = Some(cloud_accounting::openstack::ClientCert {
        certfile: cert,
        keyfile: garbage,
    });
    let err = Session::new(bad_key).unwrap_err();
    assert!(err.to_string().starts_with("keyfile: "), "{err}");
    assert!(err.to_string().contains("not a PEM private key"), "{err}");
}
