//! A provider run as its own `peyvand serve` process (or a cluster node), licensed and
//! enrolled by the demo's registry.

use peyvand_client::Client;
use reqwest::Method;
use serde_json::json;

use super::cluster::Cluster;
use super::demo::Demo;
use super::{Server, temp_dir};

/// A provider run as its own `peyvand serve` process, licensed by the demo's registry.
pub struct External {
    pub id: &'static str,
    pub server: Server,
}

impl External {
    pub async fn start(demo: &Demo, id: &'static str, number: &str) -> Self {
        Self::start_with(demo, id, number, &[]).await
    }

    /// Starts a licensed provider with extra configuration.
    pub async fn start_with(demo: &Demo, id: &'static str, number: &str, extra: &[(&'static str, &str)]) -> Self {
        let mut env = Self::licence(demo, id, number).await;
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let external = Self { id, server: Server::start_with(&temp_dir(id), &env) };
        external.publish_endpoint(demo).await;
        external
    }

    /// Starts a licensed provider as one node on PostgreSQL and NATS; the cluster (its schema)
    /// must outlive it.
    pub async fn start_on_cluster(demo: &Demo, id: &'static str, number: &str) -> (Self, Cluster) {
        let env = Self::licence(demo, id, number).await;
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut cluster = Cluster::start(id, 1, &env);
        let external = Self { id, server: cluster.nodes.remove(0) };
        external.publish_endpoint(demo).await;
        (external, cluster)
    }

    /// The endpoint peers call (the client API's port, over HTTPS).
    pub fn endpoint(&self) -> String {
        self.server.url.replace("http://", "https://")
    }

    /// Licenses provider `id` at the demo's registry; the configuration that enrols it.
    pub async fn licence(demo: &Demo, id: &'static str, number: &str) -> Vec<(&'static str, String)> {
        let (status, body) = demo
            .admin(
                Method::POST,
                "/v1/admin/licences",
                json!({
                    "provider_id": id, "name": id, "domain": format!("{id}.example"),
                    "endpoint": "https://127.0.0.1:1", "contact": format!("ops@{id}.example"),
                    "licence_number": number, "valid_until": peyvand_service::now_millis() + 86_400_000,
                    "capabilities": ["discovery", "chat"], "reason": "test",
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, token) =
            demo.admin(Method::POST, &format!("/v1/admin/licences/{id}/enrolment-tokens"), json!({})).await;
        assert_eq!(status, 201, "{token}");
        let key: serde_json::Value =
            reqwest::get(format!("{}/v1/registry-key", demo.registry)).await.expect("key").json().await.expect("json");
        let env = [
            ("PEYVAND_INTERCONNECT__PROVIDER_ID", id.to_owned()),
            ("PEYVAND_INTERCONNECT__REGISTRY", demo.registry.clone()),
            ("PEYVAND_INTERCONNECT__REGISTRY_KEY", key["public_key"].as_str().expect("key").to_owned()),
            ("PEYVAND_INTERCONNECT__ENROLMENT_TOKEN", token["token"].as_str().expect("token").to_owned()),
            ("PEYVAND_INTERCONNECT__DIRECTORY_REFRESH_SECS", "1".to_owned()),
            ("PEYVAND_INTERCONNECT__RETRY_MAX_SECS", "1".to_owned()),
        ];
        env.to_vec()
    }

    /// Points the licence at the server's current port (it changes with every start).
    pub async fn publish_endpoint(&self, demo: &Demo) {
        let endpoint = self.server.url.replace("http://", "https://");
        let (status, body) = demo
            .admin(
                Method::PATCH,
                &format!("/v1/admin/licences/{}", self.id),
                json!({"endpoint": endpoint, "reason": "test: new port"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn restart(&mut self, demo: &Demo) {
        self.server.restart();
        self.publish_endpoint(demo).await;
    }

    pub async fn sign_in(&self, phone: &str) -> Client {
        super::sign_in(&self.server, phone, "test").await
    }
}
