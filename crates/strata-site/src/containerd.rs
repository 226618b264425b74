//! containerd's registry host configuration (`hosts.toml` under `certs.d/<host>/`), pointing
//! pulls from a registry at the local strata node first and at the registry itself as the
//! fallback. containerd then sends the node `?ns=<host>` with each request, which the node's
//! `--upstream <host>=<url>` route serves.

/// The URL containerd falls back to for registry `host` (Docker Hub's API lives at
/// `registry-1.docker.io`).
pub fn default_server(host: &str) -> String {
    match host {
        "docker.io" => "https://registry-1.docker.io".to_string(),
        other => format!("https://{other}"),
    }
}

/// The `hosts.toml` for pulls from `server` through the node at `node_url`.
pub fn hosts_toml(node_url: &str, server: &str) -> String {
    format!(
        "# Written by `strata mirror-config containerd`: pull through the local strata node,\n\
         # and from the registry itself if the node cannot answer.\n\
         server = \"{server}\"\n\
         \n\
         [host.\"{node}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        node = node_url.trim_end_matches('/'),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_comes_first_and_the_registry_is_the_fallback() {
        let t = hosts_toml("http://127.0.0.1:5000/", &default_server("docker.io"));
        assert!(
            t.contains("server = \"https://registry-1.docker.io\""),
            "{t}"
        );
        assert!(t.contains("[host.\"http://127.0.0.1:5000\"]"), "{t}");
        assert!(t.contains("capabilities = [\"pull\", \"resolve\"]"), "{t}");
        assert_eq!(default_server("quay.io"), "https://quay.io");
    }
}
