//! Test harness for the OpenStack simulator: start it as a child process,
//! read its ready line, talk to it.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub struct Sim {
    child: Child,
    pub url: String,
    pub http: reqwest::Client,
}

/// The `openstack-sim` example, built on first use.
pub fn binary() -> PathBuf {
    super::examples::built("openstack-sim")
}

impl Sim {
    pub fn start(args: &[&str]) -> Sim {
        let mut child = Command::new(binary())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn openstack-sim");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("ready line {line:?}: {e}"));
        let url = ready["url"].as_str().expect("url").to_string();
        Sim {
            child,
            url,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
        }
    }

    pub fn auth_url(&self) -> String {
        format!("{}/identity/v3", self.url)
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    pub async fn manifest(&self) -> Value {
        self.get_json("/_sim/manifest").await
    }
}

/// The ids of the projects a run extracts (`accounted` in the manifest), in
/// the manifest's order.
pub fn accounted_project_ids(manifest: &Value) -> Vec<String> {
    manifest["projects"]
        .as_array()
        .expect("the manifest lists projects")
        .iter()
        .filter(|p| p["accounted"] == true)
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect()
}

impl Sim {
    pub async fn stats(&self) -> Value {
        self.get_json("/_sim/stats").await
    }

    pub async fn reset(&self) {
        let r = self
            .http
            .post(format!("{}/_sim/reset", self.url))
            .send()
            .await
            .expect("reset");
        assert!(r.status().is_success());
    }

    /// POST /v3/auth/tokens; returns (status, token id, body).
    pub async fn auth(&self, body: Value) -> (u16, Option<String>, Value) {
        let r = self
            .http
            .post(format!("{}/auth/tokens", self.auth_url()))
            .json(&body)
            .send()
            .await
            .expect("auth");
        let status = r.status().as_u16();
        let token = r
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = r.json().await.unwrap_or(Value::Null);
        (status, token, body)
    }

    /// A token for `user` (password `secret`) with the given scope JSON.
    pub async fn password_token(&self, user: &str, scope: Option<Value>) -> String {
        let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": "Default"}, "password": "secret"}}}});
        if let Some(s) = scope {
            auth["scope"] = s;
        }
        let (status, token, body) = self.auth(json!({ "auth": auth })).await;
        assert_eq!(status, 201, "auth as {user}: {body}");
        token.expect("X-Subject-Token")
    }

    pub async fn admin_system_token(&self) -> String {
        self.password_token("admin", Some(json!({"system": {"all": true}})))
            .await
    }

    /// GET with a token; returns (status, headers, body text).
    pub async fn get(
        &self,
        token: &str,
        path_or_url: &str,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.url)
        };
        let r = self
            .http
            .get(url)
            .header("X-Auth-Token", token)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.expect("body"))
    }

    pub async fn get_ok(&self, token: &str, path_or_url: &str) -> Value {
        let (status, _, body) = self.get(token, path_or_url).await;
        assert_eq!(status, 200, "GET {path_or_url}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path_or_url}: {e}: {body}"))
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
