//! Shares and their snapshot policies through the DittoFS API, as an admin makes them
//! (docs/dittofs-api.md#stores-and-shares): the same calls against the emulator and the real `dfs`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::dittofs_client::Api;

/// Creates the share `/name` on in-memory metadata and block stores of its own (named after it).
pub async fn create_share(admin: &Api, name: &str) -> anyhow::Result<Value> {
    let bare = name.trim_start_matches('/');
    let (meta, block) = (format!("meta-{bare}"), format!("block-{bare}"));
    admin.post("/api/v1/store/metadata", &json!({"name": meta, "type": "memory"})).await?.expect_status(201)?;
    admin.post("/api/v1/store/block/local", &json!({"name": block, "type": "memory"})).await?.expect_status(201)?;
    let body = json!({"name": name, "metadata_store_id": meta, "local_block_store": block});
    admin.post("/api/v1/shares", &body).await?.expect_status(201)?.json()
}

/// `GET /api/v1/snapshot-policies`, by share.
pub async fn policies(admin: &Api) -> anyhow::Result<BTreeMap<String, Value>> {
    let list = admin.get("/api/v1/snapshot-policies").await?.expect_status(200)?.json()?;
    let list = list.as_array().ok_or_else(|| anyhow::anyhow!("not a list: {list}"))?;
    Ok(list.iter().map(|p| (p["share"].as_str().unwrap_or_default().to_owned(), p.clone())).collect())
}

/// `PUT /api/v1/shares/{name}/snapshot-policy` with `body`, expecting 200; returns the stored policy.
pub async fn put_policy(admin: &Api, share: &str, body: &Value) -> anyhow::Result<Value> {
    let path = format!("/api/v1/shares/{}/snapshot-policy", share.trim_start_matches('/'));
    admin.put(&path, body).await?.expect_status(200)?.json()
}
