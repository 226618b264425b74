//! Requests to a running node's administrative API (`/strata/v1/...`), for commands whose
//! data directory that node holds open.

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;

/// `POST <node><path>?<query>`; the JSON answer, or why there is none.
pub async fn post<T: DeserializeOwned>(
    node: &str,
    path: &str,
    query: &[(&str, String)],
) -> Result<T> {
    let url = format!("{}{path}", node.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .query(query)
        .send()
        .await
        .with_context(|| {
            format!(
                "data directory is in use, and the node at {node} did not answer (give \
                 --node its --admin-listen address)"
            )
        })?;
    if !resp.status().is_success() {
        bail!(
            "node answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(serde_json::from_str(&resp.text().await?)?)
}
