//! The simulated cloud: deterministic data generated from a seed and a
//! scenario, plus the ground truth (manifest) tests compare extractors with.
//!
//! Everything here is a pure function of [`Params`]: the same seed and
//! parameters give byte-identical data and manifest.

use cloud_accounting::time::Timestamp;
use serde_json::{Value, json};

/// splitmix64: tiny, fast, good enough for test data, no dependency.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// An independent stream for one purpose, so adding data of one kind does
    /// not shift every value of another kind.
    pub fn fork(&self, salt: u64) -> Self {
        let mut r = Rng(self.0 ^ salt.wrapping_mul(0xA24B_AED4_963E_E407));
        r.next_u64();
        r
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
    /// Uniform in `[lo, hi]` (returns `lo` when the range is empty).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            lo
        } else {
            lo + self.below((hi - lo + 1) as u64) as i64
        }
    }
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// A Keystone-style id: 32 lowercase hex digits.
    pub fn hex32(&mut self) -> String {
        format!("{:016x}{:016x}", self.next_u64(), self.next_u64())
    }
    /// A version-4-shaped UUID, as Nova, Cinder, Glance and Neutron use.
    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

/// What to generate. Scenario presets fill it; CLI options override fields.
#[derive(Clone, Debug)]
pub struct Params {
    pub seed: u64,
    pub scenario: String,
    /// Accounted projects (tagged `caso`, VO in a property or in voms.json).
    pub projects: usize,
    /// Extra projects without the tag (their servers must never be reported).
    pub untagged_projects: usize,
    pub servers_per_project: usize,
    pub volumes_per_10_servers: usize,
    pub fips_per_10_servers: usize,
    /// Ordinary users (besides the admin).
    pub users: usize,
    /// One more tagged project with no VO anywhere (cASO defect 5).
    pub unmapped_project: bool,
    /// One usage entry per accounted project for a server Nova cannot show.
    pub ghost_usage: bool,
    /// The instant the data describes; everything happened before it.
    pub now: Timestamp,
    /// The accounting period the manifest's expectations are computed for.
    pub period_from: Timestamp,
    pub period_to: Timestamp,
}

impl Params {
    /// `S`, `M`, `L` (the benchmark sizes), `demo`, or `custom` (= demo sizes,
    /// meant to be overridden).
    pub fn preset(scenario: &str, seed: u64) -> Option<Params> {
        let (projects, servers) = match scenario {
            "S" | "s" => (3, 20),
            "M" | "m" => (20, 100),
            "L" | "l" => (100, 200),
            "demo" | "custom" => (4, 30),
            _ => return None,
        };
        let period_from = Timestamp::from_unix(1_788_220_800); // 2026-09-01T00:00:00Z
        let period_to = Timestamp::from_unix(1_790_812_800); // 2026-10-01T00:00:00Z
        Some(Params {
            seed,
            scenario: scenario.to_string(),
            projects,
            untagged_projects: 1,
            servers_per_project: servers,
            volumes_per_10_servers: 2,
            fips_per_10_servers: if matches!(scenario, "demo" | "custom") {
                2
            } else {
                1
            },
            users: (projects * 2).clamp(6, 60),
            unmapped_project: false,
            ghost_usage: false,
            now: period_to.add_seconds(86_400),
            period_from,
            period_to,
        })
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub name: String,
    /// Deleted from Keystone: servers still carry the id, lookups 404.
    pub deleted: bool,
}

#[derive(Clone, Debug)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub tags: Vec<String>,
    /// The `VO` property on the Keystone project.
    pub vo_property: Option<String>,
    /// The VO given only by voms.json (deprecated mapping).
    pub voms_vo: Option<String>,
    /// Indexes into `Cloud::users` (admin has a role everywhere anyway).
    pub members: Vec<usize>,
}

impl Project {
    pub fn vo(&self) -> Option<&str> {
        self.vo_property.as_deref().or(self.voms_vo.as_deref())
    }
    pub fn accounted(&self) -> bool {
        self.tags.iter().any(|t| t == "caso")
    }
}

#[derive(Clone, Debug)]
pub struct Flavor {
    pub id: String,
    pub name: String,
    pub vcpus: u32,
    pub ram_mb: u32,
    pub disk_gb: u32,
    pub ephemeral_gb: u32,
    pub swap_mb: u32,
    pub is_public: bool,
    pub extra_specs: Vec<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub mpuri: Option<String>,
    pub created: Timestamp,
}

#[derive(Clone, Debug)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub project: usize,
    pub user: usize,
    /// Nova status as the API shows it (upper case).
    pub status: &'static str,
    pub vm_state: &'static str,
    pub case: &'static str,
    pub flavor: usize,
    pub resized_from: Option<usize>,
    pub image: Option<usize>,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub launched_at: Option<Timestamp>,
    pub terminated_at: Option<Timestamp>,
    pub fixed_ip: String,
    pub mac: String,
    pub floating_ips: Vec<String>,
    pub volumes: Vec<String>,
}

impl Server {
    /// cASO's rule: terminated_at, else created when never launched, else
    /// updated for a DELETED server, else still running.
    pub fn end(&self) -> Option<Timestamp> {
        if let Some(t) = self.terminated_at {
            return Some(t);
        }
        if self.launched_at.is_none() {
            return Some(self.created);
        }
        if self.status == "DELETED" {
            return Some(self.updated);
        }
        None
    }
    /// What `os-simple-tenant-usage` reports for a window (Nova:
    /// launched_at < end and terminated_at null or > start).
    pub fn in_usage_window(&self, start: Timestamp, end: Timestamp) -> bool {
        match self.launched_at {
            None => false,
            Some(l) => l < end && self.terminated_at.is_none_or(|t| t > start),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Attachment {
    pub server: usize,
    pub attachment_id: String,
    pub attached_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct Volume {
    pub id: String,
    pub name: Option<String>,
    pub project: usize,
    pub user: usize,
    pub size_gb: u32,
    pub status: &'static str,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub attachment: Option<Attachment>,
}

#[derive(Clone, Debug)]
pub struct FloatingIp {
    pub id: String,
    pub project: usize,
    pub address: String,
    pub version: u8,
    pub created: Timestamp,
    pub server: Option<usize>,
}

/// A usage entry for a server the compute API cannot show (a DB leftover).
#[derive(Clone, Debug)]
pub struct GhostUsage {
    pub instance_id: String,
    pub project: usize,
    pub flavor: usize,
    pub started_at: Timestamp,
}

pub struct Cloud {
    pub params: Params,
    pub users: Vec<User>,
    pub admin: usize,
    pub projects: Vec<Project>,
    pub flavors: Vec<Flavor>,
    pub images: Vec<Image>,
    pub servers: Vec<Server>,
    pub volumes: Vec<Volume>,
    pub fips: Vec<FloatingIp>,
    pub ghosts: Vec<GhostUsage>,
}

const USER_NAMES: &[&str] = &[
    "alice",
    "bob",
    "José García",
    "Zoë Müller",
    "Łukasz Wróbel",
    "carol",
    "Ana Peña",
    "dmitri.ivanov",
    "Jürgen Groß",
    "王芳",
    "erin",
    "Søren Kierkegård",
];
const SERVER_NAMES: &[&str] = &[
    "worker",
    "web",
    "db",
    "análisis",
    "nœud-calcul",
    "Überwachung",
    "계산",
    "jupyter 🚀",
    "batch",
    "ci-runner",
];
const VOLUME_NAMES: &[&str] = &["data", "scratch", "backup", "données", "home-ü"];
const VOS: &[&str] = &[
    "vo.access.egi.eu",
    "biomed",
    "fedcloud.egi.eu",
    "vo.notebooks.egi.eu",
];

/// One way a server can look to the API: status and shape of its history.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    status: &'static str,
    vm_state: &'static str,
    created: When,
    launched: bool,
    terminated: Option<When>,
    /// When `updated` lies (besides being after the other times).
    updated: When,
    resized: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum When {
    /// Well before the period (30-90 days).
    LongBefore,
    /// Shortly before the period (1-29 days).
    Before,
    In,
    /// Between the period end and "now".
    After,
}

const fn case(
    name: &'static str,
    status: &'static str,
    vm_state: &'static str,
    created: When,
    launched: bool,
    terminated: Option<When>,
    updated: When,
) -> Case {
    Case {
        name,
        status,
        vm_state,
        created,
        launched,
        terminated,
        updated,
        resized: false,
    }
}

use When::*;
/// Every case appears once in each project big enough; the rest of the
/// servers are drawn from `COMMON` (a realistic mix).
const CASES: &[Case] = &[
    case(
        "running-unchanged",
        "ACTIVE",
        "active",
        Before,
        true,
        None,
        Before,
    ),
    case("running-new", "ACTIVE", "active", In, true, None, In),
    case(
        "build-never-launched",
        "BUILD",
        "building",
        In,
        false,
        None,
        In,
    ),
    case("shutoff", "SHUTOFF", "stopped", Before, true, None, In),
    case("paused", "PAUSED", "paused", Before, true, None, In),
    case("suspended", "SUSPENDED", "suspended", In, true, None, In),
    case(
        "error-never-launched",
        "ERROR",
        "error",
        In,
        false,
        None,
        In,
    ),
    case("error-launched", "ERROR", "error", Before, true, None, In),
    case("deleted", "DELETED", "deleted", Before, true, Some(In), In),
    case(
        "deleted-no-terminated-at",
        "DELETED",
        "deleted",
        In,
        true,
        None,
        In,
    ),
    case(
        "deleted-before-period",
        "DELETED",
        "deleted",
        LongBefore,
        true,
        Some(Before),
        In,
    ),
    case(
        "deleted-after-period",
        "DELETED",
        "deleted",
        Before,
        true,
        Some(After),
        After,
    ),
    case(
        "deleted-long-ago",
        "DELETED",
        "deleted",
        LongBefore,
        true,
        Some(Before),
        Before,
    ),
    case("shelved", "SHELVED", "shelved", Before, true, None, In),
    case(
        "shelved-offloaded",
        "SHELVED_OFFLOADED",
        "shelved_offloaded",
        Before,
        true,
        None,
        In,
    ),
    Case {
        resized: true,
        ..case(
            "verify-resize",
            "VERIFY_RESIZE",
            "resized",
            Before,
            true,
            None,
            In,
        )
    },
    Case {
        resized: true,
        ..case("resize", "RESIZE", "active", Before, true, None, In)
    },
    Case {
        resized: true,
        ..case(
            "revert-resize",
            "REVERT_RESIZE",
            "resized",
            Before,
            true,
            None,
            In,
        )
    },
    Case {
        resized: true,
        ..case(
            "resized-unchanged",
            "ACTIVE",
            "active",
            LongBefore,
            true,
            None,
            Before,
        )
    },
    case("rescue", "RESCUE", "rescued", Before, true, None, In),
    case("migrating", "MIGRATING", "active", Before, true, None, In),
    case("hard-reboot", "HARD_REBOOT", "active", In, true, None, In),
    case("reboot", "REBOOT", "active", Before, true, None, In),
    case("rebuild", "REBUILD", "active", Before, true, None, In),
    case("password", "PASSWORD", "active", In, true, None, In),
    case(
        "soft-deleted",
        "SOFT_DELETED",
        "soft-delete",
        Before,
        true,
        None,
        In,
    ),
    case("unknown", "UNKNOWN", "active", Before, true, None, In),
    case(
        "created-after-period",
        "ACTIVE",
        "active",
        After,
        true,
        None,
        After,
    ),
    case(
        "stopped-long-ago",
        "SHUTOFF",
        "stopped",
        LongBefore,
        true,
        None,
        Before,
    ),
];

/// Index into CASES, with weights, for the bulk of the servers.
const COMMON: &[(usize, u64)] = &[
    (0, 40), // running-unchanged
    (1, 15), // running-new
    (8, 15), // deleted
    (3, 6),  // shutoff
    (12, 8), // deleted-long-ago
    (11, 4), // deleted-after-period
    (2, 2),  // build-never-launched
    (6, 2),  // error-never-launched
    (27, 3), // created-after-period
    (18, 3), // resized-unchanged
    (5, 2),  // suspended
];

fn common_case(rng: &mut Rng) -> usize {
    let total: u64 = COMMON.iter().map(|(_, w)| w).sum();
    let mut x = rng.below(total);
    for (i, w) in COMMON {
        if x < *w {
            return *i;
        }
        x -= w;
    }
    0
}

fn flavors(rng: &mut Rng) -> Vec<Flavor> {
    let mut f = |id: Option<&str>,
                 name: &str,
                 vcpus,
                 ram_mb,
                 disk_gb,
                 eph,
                 public,
                 specs: &[(&str, &str)]| Flavor {
        id: id.map(str::to_string).unwrap_or_else(|| rng.uuid()),
        name: name.to_string(),
        vcpus,
        ram_mb,
        disk_gb,
        ephemeral_gb: eph,
        swap_mb: 0,
        is_public: public,
        extra_specs: specs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let bench = |t: &'static str, v: &'static str| {
        [
            ("accounting:benchmark_type", t),
            ("accounting:benchmark_value", v),
        ]
    };
    vec![
        f(Some("1"), "m1.tiny", 1, 512, 1, 0, true, &[]),
        f(Some("2"), "m1.small", 1, 2048, 20, 0, true, &[]),
        f(
            Some("3"),
            "m1.medium",
            2,
            4096,
            40,
            0,
            true,
            &[("hw:cpu_policy", "shared")],
        ),
        f(Some("4"), "m1.large", 4, 8192, 80, 0, true, &[]),
        f(
            None,
            "hs.medium",
            2,
            4096,
            20,
            0,
            true,
            &bench("HEPSPEC", "10.5"),
        ),
        f(
            None,
            "hs.xlarge",
            8,
            16384,
            40,
            100,
            true,
            &bench("HEPscore23", "12.3"),
        ),
        f(None, "eph.large", 4, 8192, 20, 40, true, &[]),
        f(
            None,
            "g1.a100",
            8,
            65536,
            100,
            0,
            true,
            &[
                ("Accelerator:Type", "GPU"),
                ("Accelerator:Vendor", "NVIDIA"),
                ("Accelerator:Model", "A100"),
                ("Accelerator:Number", "1"),
                ("accounting:benchmark_type", "HEPSPEC"),
                ("accounting:benchmark_value", "15.2"),
                ("pci_passthrough:alias", "a100:1"),
            ],
        ),
        f(
            None,
            "g2.2xv100",
            16,
            131072,
            200,
            0,
            true,
            &[
                ("Accelerator:Type", "GPU"),
                ("Accelerator:Vendor", "NVIDIA"),
                ("Accelerator:Model", "Tesla V100"),
                ("Accelerator:Number", "2"),
            ],
        ),
        // Listed to nobody by default (is_public=False): cASO's flavor map
        // misses it and only os-simple-tenant-usage gives the sizes.
        f(
            None,
            "private.big",
            12,
            49152,
            60,
            0,
            false,
            &bench("HEPSPEC", "9.8"),
        ),
    ]
}

const FLAVOR_PRIVATE: usize = 9;
const FLAVOR_GPU: [usize; 2] = [7, 8];

fn images(rng: &mut Rng, base: Timestamp) -> Vec<Image> {
    let names = [
        ("Ubuntu 24.04", true),
        ("EGI CentOS 7", true),
        ("AlmaLinux 9", false),
        ("EGI Docker", true),
        ("Debian 12", false),
        ("custom snapshot", false),
        ("EGI Notebooks", true),
        ("Rocky 9 GPU", false),
    ];
    names
        .iter()
        .enumerate()
        .map(|(i, (name, appdb))| {
            let id = rng.uuid();
            let mpuri = appdb.then(|| {
                format!(
                    "https://appdb.egi.eu/store/vm/image/{}:{}/",
                    rng.uuid(),
                    rng.range(1000, 9999)
                )
            });
            Image {
                id,
                name: name.to_string(),
                mpuri,
                created: base.add_seconds(-(i as i64 + 1) * 86_400 * 17),
            }
        })
        .collect()
}

impl Cloud {
    pub fn generate(params: Params) -> Cloud {
        let root = Rng::new(params.seed);
        let mut rng_ids = root.fork(1);
        let (from, to, now) = (params.period_from, params.period_to, params.now);

        // Users: the admin first, then ordinary users, one deleted user.
        let mut users = vec![User {
            id: rng_ids.hex32(),
            name: "admin".into(),
            deleted: false,
        }];
        for i in 0..params.users.max(1) {
            let base = USER_NAMES[i % USER_NAMES.len()];
            let name = if i < USER_NAMES.len() {
                base.to_string()
            } else {
                format!("{base} {}", i / USER_NAMES.len() + 1)
            };
            users.push(User {
                id: rng_ids.hex32(),
                name,
                deleted: false,
            });
        }
        users.push(User {
            id: rng_ids.hex32(),
            name: "former-member".into(),
            deleted: true,
        });
        let ordinary: Vec<usize> = (1..users.len() - 1).collect();
        let deleted_user = users.len() - 1;

        // Projects: tagged with a VO property, tagged with the VO only in
        // voms.json, untagged ones, optionally one tagged without any VO.
        let mut rng_p = root.fork(2);
        let mut projects = Vec::new();
        let total =
            params.projects + params.untagged_projects + usize::from(params.unmapped_project);
        for i in 0..total {
            let id = rng_ids.hex32();
            let vo = VOS[i % VOS.len()].to_string();
            let (name, tags, vo_property, voms_vo) = if i < params.projects {
                let tags = vec!["caso".to_string()];
                if i % 3 == 1 {
                    (format!("voms-mapped-{i:03}"), tags, None, Some(vo))
                } else {
                    (format!("project-{i:03}"), tags, Some(vo), None)
                }
            } else if i < params.projects + params.untagged_projects {
                (format!("untagged-{i:03}"), vec!["dev".into()], None, None)
            } else {
                (format!("unmapped-{i:03}"), vec!["caso".into()], None, None)
            };
            let n_members = 1 + rng_p.below(3) as usize;
            let mut members = Vec::new();
            for _ in 0..n_members {
                let u = *rng_p.pick(&ordinary);
                if !members.contains(&u) {
                    members.push(u);
                }
            }
            projects.push(Project {
                id,
                name,
                tags,
                vo_property,
                voms_vo,
                members,
            });
        }

        let mut rng_f = root.fork(3);
        let flavors = flavors(&mut rng_f);
        let images = images(&mut rng_f, from);
        let public_flavors: Vec<usize> = (0..flavors.len())
            .filter(|&i| flavors[i].is_public)
            .collect();

        let mut servers = Vec::new();
        let mut volumes = Vec::new();
        let mut fips = Vec::new();
        let mut ghosts = Vec::new();
        for (p, project) in projects.iter().enumerate() {
            // Untagged projects get a few servers only: noise, never reported.
            let n = if project.accounted() {
                params.servers_per_project
            } else {
                params.servers_per_project.min(5)
            };
            let mut rng = root.fork(1000 + p as u64);
            let first = servers.len();
            for k in 0..n {
                let ci = if k < CASES.len() && n >= 10 {
                    k
                } else {
                    common_case(&mut rng)
                };
                servers.push(make_server(
                    &mut rng,
                    &CASES[ci],
                    p,
                    project,
                    k,
                    deleted_user,
                    &public_flavors,
                    &images,
                    from,
                    to,
                    now,
                ));
            }
            let mine: Vec<usize> = (first..servers.len()).collect();

            // Floating IPs: attached ones first (to servers that still run).
            let n_fips = (n * params.fips_per_10_servers).div_ceil(10);
            let mut live: Vec<usize> = mine
                .iter()
                .copied()
                .filter(|&s| servers[s].end().is_none())
                .collect();
            for k in 0..n_fips {
                let version = if k % 4 == 1 { 6 } else { 4 };
                // 198.18.0.0/15 (benchmarking range): unique over the cloud.
                let address = if version == 4 {
                    let n = 1 + fips.len() as u32;
                    format!("198.{}.{}.{}", 18 + (n >> 16), (n >> 8) & 0xff, n & 0xff)
                } else {
                    format!("2001:db8:{:x}::{:x}", p, k + 1)
                };
                let created = if rng.percent(15) {
                    at(&mut rng, After, from, to, now)
                } else {
                    let when = if rng.percent(50) { Before } else { In };
                    at(&mut rng, when, from, to, now)
                };
                let server = if k % 2 == 0 && !live.is_empty() {
                    let s = live.remove(rng.below(live.len() as u64) as usize);
                    servers[s].floating_ips.push(address.clone());
                    Some(s)
                } else {
                    None
                };
                fips.push(FloatingIp {
                    id: rng.uuid(),
                    project: p,
                    address,
                    version,
                    created,
                    server,
                });
            }

            // Volumes: in-use (attached to a running server) and available.
            let n_vols = (n * params.volumes_per_10_servers).div_ceil(10);
            let mut live: Vec<usize> = mine
                .iter()
                .copied()
                .filter(|&s| servers[s].end().is_none())
                .collect();
            for k in 0..n_vols {
                let id = rng.uuid();
                let created = if rng.percent(10) {
                    at(&mut rng, After, from, to, now)
                } else {
                    let when = *rng.pick(&[Before, In, LongBefore]);
                    at(&mut rng, when, from, to, now)
                };
                // Null names in every other project only (cASO defect 6
                // drops a whole project's storage records for one).
                let name = if k % 5 == 1 && p % 2 == 1 {
                    None
                } else {
                    Some(format!("{}-{k}", rng.pick(VOLUME_NAMES)))
                };
                let attach = k % 3 != 2 && !live.is_empty();
                let attachment = if attach {
                    let s = live.remove(rng.below(live.len() as u64) as usize);
                    let since = created.max(servers[s].launched_at.unwrap_or(servers[s].created));
                    let attached_at = since.add_seconds(rng.range(60, 7200));
                    if attached_at < now {
                        servers[s].volumes.push(id.clone());
                        Some(Attachment {
                            server: s,
                            attachment_id: rng.uuid(),
                            attached_at,
                        })
                    } else {
                        None
                    }
                } else {
                    None
                };
                let status = if attachment.is_some() {
                    "in-use"
                } else if k % 11 == 10 {
                    "error"
                } else {
                    "available"
                };
                let updated = attachment
                    .as_ref()
                    .map_or(created, |a| a.attached_at)
                    .add_seconds(5);
                let user = *rng.pick(&project.members);
                volumes.push(Volume {
                    id,
                    name,
                    project: p,
                    user,
                    size_gb: *rng.pick(&[1, 10, 20, 50, 100, 500]),
                    status,
                    created,
                    updated,
                    attachment,
                });
            }

            if params.ghost_usage && project.accounted() {
                ghosts.push(GhostUsage {
                    instance_id: rng.uuid(),
                    project: p,
                    flavor: 1,
                    started_at: at(&mut rng, Before, from, to, now),
                });
            }
        }

        Cloud {
            params,
            users,
            admin: 0,
            projects,
            flavors,
            images,
            servers,
            volumes,
            fips,
            ghosts,
        }
    }

    /// `{"<vo>": {"projects": [ids]}}` for the projects whose VO is only there.
    pub fn voms_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for p in &self.projects {
            if let Some(vo) = &p.voms_vo {
                let entry = map
                    .entry(vo.clone())
                    .or_insert_with(|| json!({"projects": []}));
                if let Some(list) = entry["projects"].as_array_mut() {
                    list.push(json!(p.id));
                }
            }
        }
        Value::Object(map)
    }

    pub fn user_name(&self, u: usize) -> Option<&str> {
        let user = &self.users[u];
        (!user.deleted).then_some(user.name.as_str())
    }

    /// The ground truth: the data as facts, plus what an extractor following
    /// cASO's semantics (defects fixed) must report for the manifest period.
    pub fn manifest(&self) -> Value {
        let (from, to) = (self.params.period_from, self.params.period_to);
        let ts = |t: Timestamp| json!(t.to_rfc3339());
        let opt_ts = |t: Option<Timestamp>| t.map_or(Value::Null, |t| json!(t.to_rfc3339()));
        let mut projects = Vec::new();
        for (p, project) in self.projects.iter().enumerate() {
            let mut servers = Vec::new();
            for s in self.servers.iter().filter(|s| s.project == p) {
                let flavor = &self.flavors[s.flavor];
                let start = s.created;
                let end = s.end();
                let in_period = !(start > to || end.is_some_and(|e| e < from));
                let open = end.is_none_or(|e| e > to);
                let wall = if open {
                    to.seconds_since(start)
                } else {
                    end.map_or(0, |e| e.seconds_since(start))
                };
                let mut status = caso_status(s.status);
                if open && status == "completed" {
                    status = "started";
                }
                let image = s.image.map(|i| &self.images[i]);
                servers.push(json!({
                    "id": s.id,
                    "name": s.name,
                    "case": s.case,
                    "status": s.status,
                    "user_id": self.users[s.user].id,
                    "user_name": self.user_name(s.user),
                    "flavor_id": flavor.id,
                    "flavor_name": flavor.name,
                    "flavor_public": flavor.is_public,
                    "resized_from": s.resized_from.map(|f| self.flavors[f].id.clone()),
                    "image_id": image.map(|i| i.id.clone()),
                    "image_mpuri": image.and_then(|i| i.mpuri.clone()),
                    "created": ts(s.created),
                    "updated": ts(s.updated),
                    "launched_at": opt_ts(s.launched_at),
                    "terminated_at": opt_ts(s.terminated_at),
                    "vcpus": flavor.vcpus,
                    "memory_mb": flavor.ram_mb,
                    "disk_gb": flavor.disk_gb + flavor.ephemeral_gb,
                    "floating_ips": s.floating_ips,
                    "volumes": s.volumes,
                    "in_usage_report": s.in_usage_window(from, to),
                    "in_changes_since_list": s.updated >= from,
                    "expected": {
                        "reported": in_period,
                        "start": start.unix_seconds(),
                        "end": if open { 0 } else { end.map_or(0, Timestamp::unix_seconds) },
                        "wall": wall.max(0),
                        "cpu": wall.max(0) * i64::from(flavor.vcpus),
                        "status": status,
                        "image": image.map(|i| i.mpuri.clone().unwrap_or_else(|| i.id.clone())),
                        "public_ip_count": s.floating_ips.len(),
                        "benchmark_type": spec(flavor, "accounting:benchmark_type"),
                        "benchmark": spec(flavor, "accounting:benchmark_value"),
                        "accelerator": accel(flavor),
                    },
                }));
            }
            let volumes: Vec<Value> = self
                .volumes
                .iter()
                .filter(|v| v.project == p)
                .map(|v| {
                    json!({
                        "id": v.id,
                        "name": v.name,
                        "status": v.status,
                        "size_gb": v.size_gb,
                        "user_id": self.users[v.user].id,
                        "created_at": ts(v.created),
                        "attached_to": v.attachment.as_ref().map(|a| self.servers[a.server].id.clone()),
                        "attached_at": opt_ts(v.attachment.as_ref().map(|a| a.attached_at)),
                        "expected": {
                            "reported": v.created <= to,
                            "start": v.created.max(from).unix_seconds(),
                            "active_duration": to.seconds_since(v.created.max(from)).max(0),
                            "capacity_bytes": u64::from(v.size_gb) << 30,
                        },
                    })
                })
                .collect();
            let fips: Vec<&FloatingIp> = self.fips.iter().filter(|f| f.project == p).collect();
            let count = |ver: u8| {
                fips.iter()
                    .filter(|f| f.version == ver && f.created <= to)
                    .count()
            };
            projects.push(json!({
                "id": project.id,
                "name": project.name,
                "tags": project.tags,
                "vo": project.vo(),
                "vo_source": if project.vo_property.is_some() { json!("property") } else if project.voms_vo.is_some() { json!("voms.json") } else { Value::Null },
                "accounted": project.accounted(),
                "members": project.members.iter().map(|&u| self.users[u].id.clone()).collect::<Vec<_>>(),
                "servers": servers,
                "volumes": volumes,
                "floating_ips": fips.iter().map(|f| json!({
                    "id": f.id,
                    "address": f.address,
                    "version": f.version,
                    "created_at": ts(f.created),
                    "server_id": f.server.map(|s| self.servers[s].id.clone()),
                    "expected_reported": f.created <= to,
                })).collect::<Vec<_>>(),
                "expected_ip_counts": {"4": count(4), "6": count(6)},
                "ghost_usages": self.ghosts.iter().filter(|g| g.project == p).map(|g| g.instance_id.clone()).collect::<Vec<_>>(),
            }));
        }
        json!({
            "seed": self.params.seed,
            "scenario": self.params.scenario,
            "now": ts(self.params.now),
            "period": {"from": ts(from), "to": ts(to)},
            "counts": {
                "projects": self.projects.len(),
                "servers": self.servers.len(),
                "volumes": self.volumes.len(),
                "floating_ips": self.fips.len(),
            },
            "admin": {"id": self.users[self.admin].id, "name": self.users[self.admin].name},
            "users": self.users.iter().map(|u| json!({"id": u.id, "name": u.name, "deleted": u.deleted})).collect::<Vec<_>>(),
            "flavors": self.flavors.iter().map(|f| json!({
                "id": f.id, "name": f.name, "vcpus": f.vcpus, "ram": f.ram_mb, "disk": f.disk_gb,
                "ephemeral": f.ephemeral_gb, "is_public": f.is_public,
                "extra_specs": f.extra_specs.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "images": self.images.iter().map(|i| json!({"id": i.id, "name": i.name, "vmcatcher_event_ad_mpuri": i.mpuri})).collect::<Vec<_>>(),
            "projects": projects,
        })
    }
}

fn spec(f: &Flavor, key: &str) -> Option<String> {
    f.extra_specs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

fn accel(f: &Flavor) -> Value {
    match (
        spec(f, "Accelerator:Type"),
        spec(f, "Accelerator:Vendor"),
        spec(f, "Accelerator:Model"),
        spec(f, "Accelerator:Number"),
    ) {
        (Some(t), Some(v), Some(m), Some(n)) => {
            json!({"type": t, "model": format!("{v} {m}"), "count": n})
        }
        _ => Value::Null,
    }
}

/// cASO's Nova status mapping (FORMATS.md section 2).
pub fn caso_status(nova: &str) -> &'static str {
    match nova.to_ascii_lowercase().as_str() {
        "active" | "build" | "confirming_resize" | "hard_reboot" | "migrating" | "reboot"
        | "rebuild" | "rescue" | "resize" | "revert_resize" | "verify_resize" | "saving"
        | "password" => "started",
        "deleted" | "shutoff" | "terminated" => "completed",
        "error" => "error",
        "paused" => "paused",
        "suspended" => "suspended",
        "stopped" => "stopped",
        _ => "unknown",
    }
}

/// A whole-second instant in the given part of the timeline.
fn at(rng: &mut Rng, when: When, from: Timestamp, to: Timestamp, now: Timestamp) -> Timestamp {
    let f = from.unix_seconds();
    let t = to.unix_seconds();
    let n = now.unix_seconds();
    let s = match when {
        LongBefore => rng.range(f - 90 * 86_400, f - 30 * 86_400),
        Before => rng.range(f - 29 * 86_400, f - 3600),
        In => rng.range(f + 3600, t - 2 * 3600),
        After => rng.range(t + 60, (n - 3600).max(t + 120)),
    };
    Timestamp::from_unix(s)
}

#[allow(clippy::too_many_arguments)]
fn make_server(
    rng: &mut Rng,
    c: &Case,
    p: usize,
    project: &Project,
    k: usize,
    deleted_user: usize,
    public_flavors: &[usize],
    images: &[Image],
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> Server {
    let id = rng.uuid();
    let base = rng.pick(SERVER_NAMES);
    let name = format!("{base}-{p:03}-{k:04}");
    let created = at(rng, c.created, from, to, now);
    let launched_at = c.launched.then(|| created.add_seconds(rng.range(20, 300)));
    let mut last = launched_at.unwrap_or(created);
    let terminated_at = c.terminated.map(|w| {
        let t = at(rng, w, from, to, now).max(last.add_seconds(60));
        last = t;
        t
    });
    let updated = at(rng, c.updated, from, to, now).max(last.add_seconds(1));
    let updated = if c.updated == When::In {
        updated.min(to.add_seconds(-60)).max(last)
    } else {
        updated
    };
    // Resized servers: Nova resets launched_at at the resize.
    let (flavor, resized_from, launched_at) = if c.resized {
        let old = *rng.pick(public_flavors);
        let mut new = *rng.pick(public_flavors);
        if new == old {
            new = public_flavors[(public_flavors.iter().position(|&f| f == old).unwrap_or(0) + 1)
                % public_flavors.len()];
        }
        let relaunch = launched_at.map(|l| l.max(updated.add_seconds(-30)));
        (new, Some(old), relaunch)
    } else {
        let f = if k % 17 == 5 {
            FLAVOR_PRIVATE
        } else if k % 13 == 7 {
            FLAVOR_GPU[k % 2]
        } else {
            *rng.pick(public_flavors)
        };
        (f, None, launched_at)
    };
    let image = if k % 12 == 11 {
        None
    } else {
        Some(rng.below(images.len() as u64) as usize)
    };
    let user = if k % 23 == 22 {
        deleted_user
    } else {
        *rng.pick(&project.members)
    };
    let r = rng.next_u64();
    Server {
        id,
        name,
        project: p,
        user,
        status: c.status,
        vm_state: c.vm_state,
        case: c.name,
        flavor,
        resized_from,
        image,
        created,
        updated,
        launched_at,
        terminated_at,
        fixed_ip: format!("10.{}.{}.{}", p % 250, (k / 250) % 250, 2 + k % 250),
        mac: format!(
            "fa:16:3e:{:02x}:{:02x}:{:02x}",
            r & 0xff,
            (r >> 8) & 0xff,
            (r >> 16) & 0xff
        ),
        floating_ips: Vec::new(),
        volumes: Vec::new(),
    }
}
