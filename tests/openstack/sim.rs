//! The OpenStack simulator itself: determinism, auth flows, scopes,
//! pagination, microversions, every fault mode and the counters.

use serde_json::{Value, json};
use std::collections::HashSet;

use crate::support::sim::Sim;

fn ids(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

fn next_link(v: &Value, key: &str) -> Option<String> {
    v[key]
        .as_array()?
        .iter()
        .find(|l| l["rel"] == "next")
        .map(|l| l["href"].as_str().unwrap().to_string())
}

/// Follows `<key>_links` next links from `first`; returns every id seen, in order.
async fn walk(sim: &Sim, token: &str, first: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut url = first.to_string();
    for _ in 0..10_000 {
        let page = sim.get_ok(token, &url).await;
        out.extend(ids(&page, key));
        match next_link(&page, &format!("{key}_links")) {
            Some(n) => url = n,
            None => return out,
        }
    }
    panic!("pagination of {first} does not end");
}

fn project_servers(m: &Value, p: usize) -> &Vec<Value> {
    m["projects"][p]["servers"].as_array().unwrap()
}

#[tokio::test]
async fn same_seed_same_cloud_other_seed_other_cloud() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    let a = Sim::start(&[
        "--seed",
        "7",
        "--scenario",
        "S",
        "--write-manifest",
        path.to_str().unwrap(),
    ]);
    let b = Sim::start(&["--seed", "7", "--scenario", "S"]);
    let c = Sim::start(&["--seed", "8", "--scenario", "S"]);
    let (ma, mb, mc) = (a.manifest().await, b.manifest().await, c.manifest().await);
    assert_eq!(ma, mb);
    assert_ne!(ma["projects"][0]["id"], mc["projects"][0]["id"]);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written, ma);
    // S: 3 accounted projects of 20 servers plus one small untagged project.
    assert_eq!(ma["projects"].as_array().unwrap().len(), 4);
    assert_eq!(project_servers(&ma, 0).len(), 20);
    // Every Nova status of interest is present in a demo cloud.
    let d = Sim::start(&["--seed", "7"]);
    let md = d.manifest().await;
    let statuses: HashSet<&str> = project_servers(&md, 0)
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    for s in [
        "ACTIVE",
        "BUILD",
        "SHUTOFF",
        "PAUSED",
        "SUSPENDED",
        "ERROR",
        "DELETED",
        "SHELVED_OFFLOADED",
        "VERIFY_RESIZE",
        "RESIZE",
        "RESCUE",
        "MIGRATING",
        "UNKNOWN",
        "SOFT_DELETED",
    ] {
        assert!(statuses.contains(s), "missing status {s}");
    }
    let servers = project_servers(&md, 0);
    assert!(servers.iter().any(|s| s["launched_at"].is_null()));
    assert!(
        servers
            .iter()
            .any(|s| s["status"] == "DELETED" && s["terminated_at"].is_null())
    );
    assert!(servers.iter().any(|s| !s["resized_from"].is_null()));
    assert!(
        servers
            .iter()
            .any(|s| !s["name"].as_str().unwrap().is_ascii())
    );
    let vo_sources: HashSet<String> = md["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["vo_source"].to_string())
        .collect();
    assert!(
        vo_sources.contains("\"property\"")
            && vo_sources.contains("\"voms.json\"")
            && vo_sources.contains("null")
    );
}

#[tokio::test]
async fn discovery_documents_and_catalog() {
    let sim = Sim::start(&["--seed", "1"]);
    let r = sim
        .http
        .get(format!("{}/identity", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 300);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["versions"]["values"][0]["id"], "v3.14");
    let v = sim.get_json("/compute/v2.1").await;
    assert_eq!(v["version"]["version"], "2.96");
    let (status, token, body) = sim
        .auth(json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "domain": {"id": "default"}, "password": "secret"}}}, "scope": {"system": {"all": true}}}}))
        .await;
    assert_eq!(status, 201);
    assert!(token.is_some());
    let catalog = body["token"]["catalog"].as_array().unwrap();
    let types: HashSet<&str> = catalog
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    for t in ["identity", "compute", "image", "volumev3", "network"] {
        assert!(types.contains(t), "{t} missing from the catalog");
    }
    for s in catalog {
        let ifaces: HashSet<&str> = s["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["interface"].as_str().unwrap())
            .collect();
        assert_eq!(ifaces, HashSet::from(["public", "internal", "admin"]));
    }
    assert!(body["token"]["expires_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["token"]["system"]["all"], true);
}

#[tokio::test]
async fn auth_flows() {
    let sim = Sim::start(&[
        "--seed",
        "1",
        "--app-cred-id",
        "ac1",
        "--app-cred-secret",
        "s3",
        "--oidc-access-token",
        "oidc-abc",
    ]);
    let m = sim.manifest().await;
    let p0 = m["projects"][0]["id"].as_str().unwrap().to_string();
    let pw = |user: &str, pass: &str| json!({"methods": ["password"], "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": pass}}});

    // Wrong password.
    let (s, t, _) = sim
        .auth(json!({"auth": {"identity": pw("admin", "nope")}}))
        .await;
    assert_eq!((s, t), (401, None));
    // Project by id and by name + domain.
    let (s, _, b) = sim
        .auth(
            json!({"auth": {"identity": pw("admin", "secret"), "scope": {"project": {"id": p0}}}}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(b["token"]["project"]["id"], p0.as_str());
    let name = m["projects"][0]["name"].as_str().unwrap();
    let (s, _, _) = sim.auth(json!({"auth": {"identity": pw("admin", "secret"), "scope": {"project": {"name": name, "domain": {"name": "Default"}}}}})).await;
    assert_eq!(s, 201);
    // Application credential: bound to its project; any explicit scope is 401.
    let ac = json!({"methods": ["application_credential"], "application_credential": {"id": "ac1", "secret": "s3"}});
    let (s, _, b) = sim.auth(json!({"auth": {"identity": ac}})).await;
    assert_eq!(s, 201);
    assert_eq!(b["token"]["project"]["id"], p0.as_str());
    let (s, _, _) = sim
        .auth(json!({"auth": {"identity": ac, "scope": {"system": {"all": true}}}}))
        .await;
    assert_eq!(s, 401);
    let (s, _, _) = sim
        .auth(json!({"auth": {"identity": ac, "scope": {"project": {"id": p0}}}}))
        .await;
    assert_eq!(s, 401);
    // A member cannot take a system scope nor a project it is not in.
    let member_id = m["projects"][0]["members"][0].as_str().unwrap();
    let member = m["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == member_id)
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, _) = sim.auth(json!({"auth": {"identity": pw(&member, "secret"), "scope": {"system": {"all": true}}}})).await;
    assert_eq!(s, 401);
    let foreign = m["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            !p["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == member_id)
        })
        .map(|p| p["id"].clone());
    if let Some(foreign) = foreign {
        let (s, _, _) = sim.auth(json!({"auth": {"identity": pw(&member, "secret"), "scope": {"project": {"id": foreign}}}})).await;
        assert_eq!(s, 401);
    }
    // Rescoping an unscoped token with the token method.
    let (s, unscoped, b) = sim
        .auth(json!({"auth": {"identity": pw("admin", "secret")}}))
        .await;
    assert_eq!(s, 201);
    assert!(b["token"].get("catalog").is_none());
    let (s, _, b) = sim.auth(json!({"auth": {"identity": {"methods": ["token"], "token": {"id": unscoped.unwrap()}}, "scope": {"project": {"id": p0}}}})).await;
    assert_eq!(s, 201);
    assert!(b["token"]["catalog"].is_array());
    // OIDC access token through OS-FEDERATION, then rescoped.
    let fed = format!(
        "{}/OS-FEDERATION/identity_providers/egi.eu/protocols/openid/auth",
        sim.auth_url()
    );
    let r = sim
        .http
        .post(&fed)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = sim
        .http
        .post(&fed)
        .bearer_auth("oidc-abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let t = r.headers()["x-subject-token"].to_str().unwrap().to_string();
    let (s, _, _) = sim.auth(json!({"auth": {"identity": {"methods": ["token"], "token": {"id": t}}, "scope": {"project": {"id": p0}}}})).await;
    assert_eq!(s, 201);
    // No token, or a made-up one: 401 from the services.
    let r = sim
        .http
        .get(format!("{}/compute/v2.1/servers/detail", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (s, _, _) = sim.get("made-up", "/compute/v2.1/servers/detail").await;
    assert_eq!(s, 401);

    let strict = Sim::start(&["--seed", "1", "--no-system-scope"]);
    let (s, _, _) = strict.auth(json!({"auth": {"identity": pw("admin", "secret"), "scope": {"system": {"all": true}}}})).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn scopes_limit_what_a_token_sees() {
    let sim = Sim::start(&["--seed", "3"]);
    let m = sim.manifest().await;
    let p0 = &m["projects"][0];
    let member_id = p0["members"][0].as_str().unwrap();
    let member = m["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == member_id)
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let t = sim
        .password_token(&member, Some(json!({"project": {"id": p0["id"]}})))
        .await;
    let (s, _, _) = sim.get(&t, "/identity/v3/projects?tags=caso").await;
    assert_eq!(s, 403);
    let (s, _, _) = sim
        .get(&t, "/compute/v2.1/servers/detail?all_tenants=1")
        .await;
    assert_eq!(s, 403);
    let listed = walk(&sim, &t, "/compute/v2.1/servers/detail?limit=5", "servers").await;
    let live: HashSet<String> = p0["servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] != "DELETED")
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed.iter().cloned().collect::<HashSet<_>>(), live);
    let other = m["projects"][1]["servers"][0]["id"].as_str().unwrap();
    let (s, _, _) = sim.get(&t, &format!("/compute/v2.1/servers/{other}")).await;
    assert_eq!(s, 404);

    let admin = sim.admin_system_token().await;
    let tagged = sim.get_ok(&admin, "/identity/v3/projects?tags=caso").await;
    let want: HashSet<&str> = m["projects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["accounted"] == true)
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let got: HashSet<String> = ids(&tagged, "projects").into_iter().collect();
    assert_eq!(got, want.iter().map(|s| s.to_string()).collect());
    // The VO property is a top-level project attribute.
    let prop = m["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["vo_source"] == "property")
        .unwrap();
    let pj = sim
        .get_ok(
            &admin,
            &format!("/identity/v3/projects/{}", prop["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(pj["project"]["VO"], prop["vo"]);
}

#[tokio::test]
async fn pagination_covers_everything_exactly_once() {
    let sim = Sim::start(&["--seed", "4", "--scenario", "S"]);
    let m = sim.manifest().await;
    let admin = sim.admin_system_token().await;
    let all_servers: Vec<String> = m["projects"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["servers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
        })
        .collect();
    let changes = "changes-since=1970-01-01T00:00:00Z";
    let seen = walk(
        &sim,
        &admin,
        &format!("/compute/v2.1/servers/detail?all_tenants=1&{changes}&limit=7"),
        "servers",
    )
    .await;
    assert_eq!(seen.len(), all_servers.len());
    assert_eq!(
        seen.iter().collect::<HashSet<_>>(),
        all_servers.iter().collect::<HashSet<_>>()
    );

    // changes-since filters on `updated`, and includes DELETED servers.
    let from = m["period"]["from"].as_str().unwrap();
    let p0 = m["projects"][0]["id"].as_str().unwrap();
    let seen = walk(&sim, &admin, &format!("/compute/v2.1/servers/detail?all_tenants=1&project_id={p0}&changes-since={from}&limit=4"), "servers").await;
    let want: HashSet<&str> = project_servers(&m, 0)
        .iter()
        .filter(|s| s["in_changes_since_list"] == true)
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        seen.iter().map(String::as_str).collect::<HashSet<_>>(),
        want
    );

    let vols: usize = m["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["volumes"].as_array().unwrap().len())
        .sum();
    let seen = walk(
        &sim,
        &admin,
        "/volume/v3/volumes/detail?all_tenants=1&limit=3",
        "volumes",
    )
    .await;
    assert_eq!(
        (seen.len(), seen.iter().collect::<HashSet<_>>().len()),
        (vols, vols)
    );

    let fips: usize = m["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["floating_ips"].as_array().unwrap().len())
        .sum();
    let seen = walk(
        &sim,
        &admin,
        "/network/v2.0/floatingips?limit=2",
        "floatingips",
    )
    .await;
    assert_eq!(
        (seen.len(), seen.iter().collect::<HashSet<_>>().len()),
        (fips, fips)
    );
    let one = walk(
        &sim,
        &admin,
        &format!("/network/v2.0/floatingips?project_id={p0}"),
        "floatingips",
    )
    .await;
    assert_eq!(
        one.len(),
        m["projects"][0]["floating_ips"].as_array().unwrap().len()
    );

    // Glance: `next` is a path relative to the endpoint.
    let mut images = Vec::new();
    let mut url = "/image/v2/images?limit=3".to_string();
    loop {
        let page = sim.get_ok(&admin, &url).await;
        images.extend(ids(&page, "images"));
        match page["next"].as_str() {
            Some(n) => url = format!("/image{n}"),
            None => break,
        }
    }
    assert_eq!(images.len(), m["images"].as_array().unwrap().len());

    // os-simple-tenant-usage: paginated from 2.40, whole before.
    let to = m["period"]["to"].as_str().unwrap();
    let want: HashSet<&str> = project_servers(&m, 0)
        .iter()
        .filter(|s| s["in_usage_report"] == true)
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let whole = sim
        .get_ok(
            &admin,
            &format!("/compute/v2.1/os-simple-tenant-usage/{p0}?start={from}&end={to}"),
        )
        .await;
    let got: HashSet<&str> = whole["tenant_usage"]["server_usages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, want);
    let mut seen = Vec::new();
    let mut url = format!(
        "{}/compute/v2.1/os-simple-tenant-usage/{p0}?start={from}&end={to}&limit=3",
        sim.url
    );
    loop {
        let r = sim
            .http
            .get(&url)
            .header("X-Auth-Token", &admin)
            .header("OpenStack-API-Version", "compute 2.40")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["openstack-api-version"], "compute 2.40");
        let page: Value = r.json().await.unwrap();
        if let Some(u) = page["tenant_usage"]["server_usages"].as_array() {
            seen.extend(
                u.iter()
                    .map(|u| u["instance_id"].as_str().unwrap().to_string()),
            );
        }
        match next_link(&page, "tenant_usage_links") {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(seen.len(), want.len());
    assert_eq!(
        seen.iter().map(String::as_str).collect::<HashSet<_>>(),
        want
    );
}

#[tokio::test]
async fn microversions_shape_the_server() {
    let sim = Sim::start(&["--seed", "5"]);
    let m = sim.manifest().await;
    let admin = sim.admin_system_token().await;
    let gpu = project_servers(&m, 0)
        .iter()
        .chain(project_servers(&m, 1))
        .find(|s| s["flavor_name"] == "g1.a100")
        .expect("a GPU server");
    let id = gpu["id"].as_str().unwrap();
    let old = sim
        .get_ok(&admin, &format!("/compute/v2.1/servers/{id}"))
        .await;
    assert_eq!(old["server"]["flavor"]["id"], gpu["flavor_id"]);
    let r = sim
        .http
        .get(format!("{}/compute/v2.1/servers/{id}", sim.url))
        .header("X-Auth-Token", &admin)
        .header("X-OpenStack-Nova-API-Version", "2.47")
        .send()
        .await
        .unwrap();
    let new: Value = r.json().await.unwrap();
    assert_eq!(new["server"]["flavor"]["original_name"], "g1.a100");
    assert_eq!(
        new["server"]["flavor"]["extra_specs"]["Accelerator:Model"],
        "A100"
    );
    let flavor = sim
        .get_ok(
            &admin,
            &format!(
                "/compute/v2.1/flavors/{}/os-extra_specs",
                gpu["flavor_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(flavor["extra_specs"]["Accelerator:Number"], "1");
    let r = sim
        .http
        .get(format!("{}/compute/v2.1/flavors/detail", sim.url))
        .header("X-Auth-Token", &admin)
        .header("OpenStack-API-Version", "compute 9.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 406);
}

#[tokio::test]
async fn faults_are_observable() {
    let sim = Sim::start(&[
        "--seed",
        "6",
        "--scenario",
        "S",
        "--fault",
        "5xx=503:path=/compute/v2.1/flavors:every=2",
        "--fault",
        "stall=200ms:path=/network:nth=1",
        "--fault",
        "malformed-json:path=/image/v2/images:times=1",
        "--fault",
        "truncated-page:path=/volume:times=1",
        "--fault",
        "repeat-marker:path=/compute/v2.1/servers/detail",
    ]);
    let admin = sim.admin_system_token().await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(sim.get(&admin, "/compute/v2.1/flavors/detail").await.0);
        }
        v
    };
    assert_eq!(statuses, [200, 503, 200, 503]);
    // A stall delays but answers.
    let fips = sim.get_ok(&admin, "/network/v2.0/floatingips").await;
    assert!(fips["floatingips"].is_array());
    let (s, _, body) = sim.get(&admin, "/image/v2/images").await;
    assert_eq!(s, 200);
    assert!(
        serde_json::from_str::<Value>(&body).is_err(),
        "malformed JSON expected"
    );
    assert!(sim.get_ok(&admin, "/image/v2/images").await["images"].is_array());
    // Truncated page: fewer items, a next link whose marker does not exist.
    let page = sim
        .get_ok(&admin, "/volume/v3/volumes/detail?all_tenants=1&limit=4")
        .await;
    assert_eq!(page["volumes"].as_array().unwrap().len(), 2);
    let next = next_link(&page, "volumes_links").unwrap();
    assert_eq!(sim.get(&admin, &next).await.0, 400);
    // Repeat marker: the next link repeats the request's marker.
    let first = sim
        .get_ok(&admin, "/compute/v2.1/servers/detail?all_tenants=1&limit=5")
        .await;
    let n1 = next_link(&first, "servers_links").unwrap();
    let second = sim.get_ok(&admin, &n1).await;
    let n2 = next_link(&second, "servers_links").unwrap();
    assert_eq!(n1, n2);
    let stats = sim.stats().await;
    let fired: Vec<u64> = stats["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fired"].as_u64().unwrap())
        .collect();
    assert_eq!(fired, [2, 1, 1, 1, 2]);
}

#[tokio::test]
async fn tokens_revoked_mid_run_and_reauth_works() {
    let sim = Sim::start(&["--seed", "6", "--fault", "401-after=3", "--latency", "1ms"]);
    let admin = sim.admin_system_token().await; // request 1
    assert_eq!(sim.get(&admin, "/compute/v2.1/flavors").await.0, 200); // 2
    assert_eq!(sim.get(&admin, "/compute/v2.1/flavors").await.0, 200); // 3
    assert_eq!(sim.get(&admin, "/compute/v2.1/flavors").await.0, 401); // 4: revoked
    assert_eq!(sim.get(&admin, "/compute/v2.1/flavors").await.0, 401);
    let again = sim.admin_system_token().await;
    assert_eq!(sim.get(&again, "/compute/v2.1/flavors").await.0, 200);
}

#[tokio::test]
async fn counters_count_and_reset() {
    let sim = Sim::start(&["--seed", "2"]);
    let admin = sim.admin_system_token().await;
    for _ in 0..3 {
        sim.get_ok(&admin, "/compute/v2.1/flavors/detail").await;
    }
    sim.get_ok(&admin, "/identity/v3/projects?tags=caso").await;
    let s = sim.stats().await;
    assert_eq!(s["total"], 5);
    assert_eq!(s["by_endpoint"]["compute GET flavors/detail"], 3);
    assert_eq!(s["by_endpoint"]["identity POST auth/tokens"], 1);
    assert_eq!(s["by_status"]["201"], 1);
    sim.reset().await;
    let s = sim.stats().await;
    assert_eq!(s["total"], 0);
    assert!(s["by_endpoint"].as_object().unwrap().is_empty());
    // The simulator's own endpoints are not counted.
    assert_eq!(sim.stats().await["total"], 0);
}

#[tokio::test]
async fn voms_json_maps_the_projects_without_property() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("voms.json");
    let sim = Sim::start(&["--seed", "9", "--write-voms-json", path.to_str().unwrap()]);
    let m = sim.manifest().await;
    let voms: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for p in m["projects"].as_array().unwrap() {
        let mapped = voms
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, v)| v["projects"].as_array().unwrap().contains(&p["id"]));
        match p["vo_source"].as_str() {
            Some("voms.json") => assert_eq!(mapped.unwrap().0, p["vo"].as_str().unwrap()),
            _ => assert!(mapped.is_none()),
        }
    }
}
