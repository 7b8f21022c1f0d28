//! JSON views of the cloud, rendered once at start-up (the L scenario has
//! 20,000 servers: list requests only concatenate precomputed strings).

use crate::model::{Cloud, Server};
use cloud_accounting::time::Timestamp;
use serde_json::{Value, json};

/// Nova: `2026-09-01T10:00:00Z`.
pub fn z(t: Timestamp) -> String {
    t.truncate_to_second().to_rfc3339()
}

/// Nova `OS-SRV-USG:*`, Cinder and usage times: `2026-09-01T10:00:00.000000`
/// (no zone: readers treat it as UTC, and cASO compares it with naive times).
pub fn naive_micro(t: Timestamp) -> String {
    let c = t.civil();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.micro
    )
}

pub struct Views {
    /// Per server: the microversion < 2.47 shape and the >= 2.47 one.
    pub server_v20: Vec<String>,
    pub server_v247: Vec<String>,
    /// Per project: server indexes in Nova's default order (created desc, id desc).
    pub servers_by_project: Vec<Vec<usize>>,
    pub servers_all: Vec<usize>,
    pub flavors: Vec<String>,
    pub flavor_order: Vec<usize>,
    pub extra_specs: Vec<String>,
    pub images: Vec<String>,
    pub image_order: Vec<usize>,
    pub volumes: Vec<String>,
    pub volumes_by_project: Vec<Vec<usize>>,
    pub volumes_all: Vec<usize>,
    pub fips: Vec<String>,
    /// Neutron sorts by id.
    pub fip_order: Vec<usize>,
    pub projects: Vec<Value>,
    pub users: Vec<Value>,
}

impl Views {
    pub fn render(cloud: &Cloud, base: &str) -> Views {
        let compute = format!("{base}/compute/v2.1");
        let server_v20: Vec<String> = cloud
            .servers
            .iter()
            .map(|s| server_json(cloud, s, &compute, false).to_string())
            .collect();
        let server_v247: Vec<String> = cloud
            .servers
            .iter()
            .map(|s| server_json(cloud, s, &compute, true).to_string())
            .collect();
        let order = |idx: &mut Vec<usize>| {
            idx.sort_by(|&a, &b| {
                let (a, b) = (&cloud.servers[a], &cloud.servers[b]);
                b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id))
            })
        };
        let mut servers_by_project = vec![Vec::new(); cloud.projects.len()];
        for (i, s) in cloud.servers.iter().enumerate() {
            servers_by_project[s.project].push(i);
        }
        servers_by_project.iter_mut().for_each(order);
        let mut servers_all: Vec<usize> = (0..cloud.servers.len()).collect();
        order(&mut servers_all);

        let flavors = cloud
            .flavors
            .iter()
            .map(|f| {
                json!({
                    "id": f.id,
                    "name": f.name,
                    "ram": f.ram_mb,
                    "disk": f.disk_gb,
                    "vcpus": f.vcpus,
                    "swap": if f.swap_mb == 0 { json!("") } else { json!(f.swap_mb) },
                    "OS-FLV-EXT-DATA:ephemeral": f.ephemeral_gb,
                    "OS-FLV-DISABLED:disabled": false,
                    "os-flavor-access:is_public": f.is_public,
                    "rxtx_factor": 1.0,
                    "links": [
                        {"rel": "self", "href": format!("{compute}/flavors/{}", f.id)},
                        {"rel": "bookmark", "href": format!("{base}/compute/flavors/{}", f.id)},
                    ],
                })
                .to_string()
            })
            .collect();
        let mut flavor_order: Vec<usize> = (0..cloud.flavors.len()).collect();
        flavor_order.sort_by(|&a, &b| cloud.flavors[a].id.cmp(&cloud.flavors[b].id));
        let extra_specs = cloud
            .flavors
            .iter()
            .map(|f| {
                let m: serde_json::Map<String, Value> = f
                    .extra_specs
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                json!({ "extra_specs": m }).to_string()
            })
            .collect();

        let images = cloud
            .images
            .iter()
            .map(|i| {
                let mut v = json!({
                    "id": i.id,
                    "name": i.name,
                    "status": "active",
                    "visibility": "public",
                    "protected": false,
                    "os_hidden": false,
                    "disk_format": "qcow2",
                    "container_format": "bare",
                    "size": 2_361_393_152u64,
                    "virtual_size": null,
                    "min_disk": 0,
                    "min_ram": 0,
                    "checksum": format!("{:032x}", i.created.unix_seconds()),
                    "owner": cloud.projects.first().map(|p| p.id.clone()),
                    "tags": [],
                    "created_at": z(i.created),
                    "updated_at": z(i.created),
                    "self": format!("/v2/images/{}", i.id),
                    "file": format!("/v2/images/{}/file", i.id),
                    "schema": "/v2/schemas/image",
                    "os_distro": "linux",
                });
                if let Some(m) = &i.mpuri {
                    v["vmcatcher_event_ad_mpuri"] = json!(m);
                    v["vmcatcher_event_dc_title"] = json!(i.name);
                }
                v.to_string()
            })
            .collect();
        let mut image_order: Vec<usize> = (0..cloud.images.len()).collect();
        image_order.sort_by(|&a, &b| {
            let (a, b) = (&cloud.images[a], &cloud.images[b]);
            b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id))
        });

        let volume_base = format!("{base}/volume/v3");
        let volumes = cloud
            .volumes
            .iter()
            .map(|v| {
                let project = &cloud.projects[v.project].id;
                let attachments: Vec<Value> = v
                    .attachment
                    .iter()
                    .map(|a| {
                        json!({
                            "id": v.id,
                            "attachment_id": a.attachment_id,
                            "volume_id": v.id,
                            "server_id": cloud.servers[a.server].id,
                            "host_name": null,
                            "device": "/dev/vdb",
                            "attached_at": naive_micro(a.attached_at),
                        })
                    })
                    .collect();
                json!({
                    "id": v.id,
                    "name": v.name,
                    "description": null,
                    "status": v.status,
                    "size": v.size_gb,
                    "availability_zone": "nova",
                    "bootable": "false",
                    "encrypted": false,
                    "multiattach": false,
                    "replication_status": null,
                    "consistencygroup_id": null,
                    "snapshot_id": null,
                    "source_volid": null,
                    "volume_type": "__DEFAULT__",
                    "metadata": {},
                    "user_id": cloud.users[v.user].id,
                    "os-vol-tenant-attr:tenant_id": project,
                    "created_at": naive_micro(v.created),
                    "updated_at": naive_micro(v.updated),
                    "attachments": attachments,
                    "links": [
                        {"rel": "self", "href": format!("{volume_base}/{project}/volumes/{}", v.id)},
                        {"rel": "bookmark", "href": format!("{base}/volume/{project}/volumes/{}", v.id)},
                    ],
                })
                .to_string()
            })
            .collect();
        let vorder = |idx: &mut Vec<usize>| {
            idx.sort_by(|&a, &b| {
                let (a, b) = (&cloud.volumes[a], &cloud.volumes[b]);
                b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id))
            })
        };
        let mut volumes_by_project = vec![Vec::new(); cloud.projects.len()];
        for (i, v) in cloud.volumes.iter().enumerate() {
            volumes_by_project[v.project].push(i);
        }
        volumes_by_project.iter_mut().for_each(vorder);
        let mut volumes_all: Vec<usize> = (0..cloud.volumes.len()).collect();
        vorder(&mut volumes_all);

        let fips = cloud
            .fips
            .iter()
            .map(|f| {
                let project = &cloud.projects[f.project].id;
                let server = f.server.map(|s| &cloud.servers[s]);
                json!({
                    "id": f.id,
                    "floating_ip_address": f.address,
                    "floating_network_id": "6d0f1a3c5b5e4d1a9f1c2b3a4d5e6f70",
                    "router_id": server.map(|_| "0f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"),
                    "port_id": server.map(|s| format!("{}-port", s.id)),
                    "fixed_ip_address": server.map(|s| s.fixed_ip.clone()),
                    "status": if server.is_some() { "ACTIVE" } else { "DOWN" },
                    "project_id": project,
                    "tenant_id": project,
                    "description": "",
                    "dns_domain": "",
                    "dns_name": "",
                    "port_details": null,
                    "qos_policy_id": null,
                    "tags": [],
                    "revision_number": 1,
                    "created_at": z(f.created),
                    "updated_at": z(f.created),
                })
                .to_string()
            })
            .collect();
        let mut fip_order: Vec<usize> = (0..cloud.fips.len()).collect();
        fip_order.sort_by(|&a, &b| cloud.fips[a].id.cmp(&cloud.fips[b].id));

        let identity = format!("{base}/identity/v3");
        let projects = cloud
            .projects
            .iter()
            .map(|p| {
                let mut v = json!({
                    "id": p.id,
                    "name": p.name,
                    "description": format!("Simulated project {}", p.name),
                    "domain_id": "default",
                    "parent_id": "default",
                    "enabled": true,
                    "is_domain": false,
                    "tags": p.tags,
                    "options": {},
                    "links": {"self": format!("{identity}/projects/{}", p.id)},
                });
                if let Some(vo) = &p.vo_property {
                    v["VO"] = json!(vo);
                }
                v
            })
            .collect();
        let users = cloud
            .users
            .iter()
            .map(|u| {
                json!({
                    "id": u.id,
                    "name": u.name,
                    "domain_id": "default",
                    "enabled": true,
                    "password_expires_at": null,
                    "options": {},
                    "links": {"self": format!("{identity}/users/{}", u.id)},
                })
            })
            .collect();

        Views {
            server_v20,
            server_v247,
            servers_by_project,
            servers_all,
            flavors,
            flavor_order,
            extra_specs,
            images,
            image_order,
            volumes,
            volumes_by_project,
            volumes_all,
            fips,
            fip_order,
            projects,
            users,
        }
    }
}

fn server_json(cloud: &Cloud, s: &Server, compute: &str, embed_flavor: bool) -> Value {
    let project = &cloud.projects[s.project];
    let flavor = &cloud.flavors[s.flavor];
    let mut private = vec![json!({
        "version": 4,
        "addr": s.fixed_ip,
        "OS-EXT-IPS:type": "fixed",
        "OS-EXT-IPS-MAC:mac_addr": s.mac,
    })];
    for ip in &s.floating_ips {
        private.push(json!({
            "version": if ip.contains(':') { 6 } else { 4 },
            "addr": ip,
            "OS-EXT-IPS:type": "floating",
            "OS-EXT-IPS-MAC:mac_addr": s.mac,
        }));
    }
    let flavor_v = if embed_flavor {
        let specs: serde_json::Map<String, Value> = flavor
            .extra_specs
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        json!({
            "vcpus": flavor.vcpus,
            "ram": flavor.ram_mb,
            "disk": flavor.disk_gb,
            "ephemeral": flavor.ephemeral_gb,
            "swap": flavor.swap_mb,
            "original_name": flavor.name,
            "extra_specs": specs,
        })
    } else {
        json!({
            "id": flavor.id,
            "links": [{"rel": "bookmark", "href": format!("{compute}/flavors/{}", flavor.id)}],
        })
    };
    let image = match s.image {
        None => json!(""),
        Some(i) => json!({
            "id": cloud.images[i].id,
            "links": [{"rel": "bookmark", "href": format!("{compute}/images/{}", cloud.images[i].id)}],
        }),
    };
    let power_state = match s.vm_state {
        "active" | "rescued" | "resized" => 1,
        "paused" => 3,
        "suspended" | "stopped" | "shelved" | "shelved_offloaded" | "deleted" | "soft-delete" => 4,
        _ => 0,
    };
    let task_state = match s.status {
        "RESIZE" => json!("resize_migrating"),
        "MIGRATING" => json!("migrating"),
        "REBOOT" => json!("rebooting"),
        "HARD_REBOOT" => json!("rebooting_hard"),
        "REBUILD" => json!("rebuilding"),
        "BUILD" => json!("spawning"),
        _ => Value::Null,
    };
    let mut addresses = serde_json::Map::new();
    addresses.insert("private".into(), Value::Array(private));
    json!({
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "tenant_id": project.id,
        "user_id": cloud.users[s.user].id,
        "metadata": {},
        "hostId": format!("{:056x}", s.created.unix_seconds()),
        "image": image,
        "flavor": flavor_v,
        "created": z(s.created),
        "updated": z(s.updated),
        "addresses": addresses,
        "accessIPv4": "",
        "accessIPv6": "",
        "links": [
            {"rel": "self", "href": format!("{compute}/servers/{}", s.id)},
            {"rel": "bookmark", "href": format!("{compute}/servers/{}", s.id)},
        ],
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 0,
        "OS-EXT-AZ:availability_zone": "nova",
        "config_drive": "",
        "key_name": null,
        "OS-SRV-USG:launched_at": s.launched_at.map(naive_micro),
        "OS-SRV-USG:terminated_at": s.terminated_at.map(naive_micro),
        "OS-EXT-STS:task_state": task_state,
        "OS-EXT-STS:vm_state": s.vm_state,
        "OS-EXT-STS:power_state": power_state,
        "os-extended-volumes:volumes_attached": s.volumes.iter().map(|v| json!({"id": v})).collect::<Vec<_>>(),
        "security_groups": [{"name": "default"}],
    })
}
