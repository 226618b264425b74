//! Manifests, tags, catalog, referrers and garbage collection, in process.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use common::{image_manifest, Node, OCI_INDEX, OCI_MANIFEST};
use strata_oci::Digest;
use strata_registry::GcOptions;

#[tokio::test]
async fn manifest_round_trip_keeps_exact_bytes() {
    let n = Node::in_memory();
    let (m, d) = n.push_image("app", "v1", b"layer-bytes").await;
    for reference in ["v1".to_string(), d.to_string()] {
        let r = n.get(&format!("/v2/app/manifests/{reference}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, m, "exact bytes served");
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            r.header("docker-content-digest"),
            Some(d.to_string().as_str())
        );
        let h = n
            .send(
                "HEAD",
                &format!("/v2/app/manifests/{reference}"),
                &[],
                Body::empty(),
            )
            .await;
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(
            h.header("content-length"),
            Some(m.len().to_string().as_str())
        );
    }
    // Whitespace-different bytes are a different manifest with its own digest.
    let mut spaced = m.clone();
    spaced.push(b'\n');
    let r = n.put_manifest("app", "v2", OCI_MANIFEST, &spaced).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(Digest::sha256(&spaced).to_string().as_str())
    );
    assert_eq!(n.get("/v2/app/manifests/v2").await.body, spaced);
}

#[tokio::test]
async fn put_by_digest_with_tag_parameters_tags_it_and_says_so() {
    let n = Node::in_memory();
    let config = n.push_blob("app", b"{}").await;
    let m = image_manifest(&config, 2, &[], None, None);
    let d = Digest::sha256(&m);
    let bad = n
        .put_manifest("app", &format!("{d}?tag=ok&tag=-bad"), OCI_MANIFEST, &m)
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.code(), "MANIFEST_INVALID");
    assert_eq!(
        n.get(&format!("/v2/app/manifests/{d}")).await.status,
        StatusCode::NOT_FOUND,
        "a refused push stores nothing"
    );
    let r = n
        .put_manifest("app", &format!("{d}?tag=v1&tag=stable"), OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let told: Vec<&str> = r.header("oci-tag").unwrap().split(", ").collect();
    assert_eq!(told, ["v1", "stable"]);
    for tag in ["v1", "stable"] {
        let got = n.get(&format!("/v2/app/manifests/{tag}")).await;
        assert_eq!(got.body, m, "{tag} points at the manifest");
    }
}

#[tokio::test]
async fn put_by_digest_verifies_it() {
    let n = Node::in_memory();
    let config = n.push_blob("app", b"{}").await;
    let m = image_manifest(&config, 2, &[], None, None);
    let d = Digest::sha256(&m);
    let r = n
        .put_manifest("app", &d.to_string(), OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/app/manifests/{d}").as_str())
    );
    let wrong = Digest::sha256(b"other");
    let r = n
        .put_manifest("app", &wrong.to_string(), OCI_MANIFEST, &m)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn bad_manifests_get_clear_errors() {
    let n = Node::in_memory();
    let r = n.put_manifest("app", "x", OCI_MANIFEST, b"{not json").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_INVALID")
    );
    let r = n
        .put_manifest("app", "x", OCI_MANIFEST, br#"{"schemaVersion":1}"#)
        .await;
    assert_eq!(r.code(), "MANIFEST_INVALID");

    let missing = Digest::sha256(b"not pushed");
    let config = n.push_blob("app", b"{}").await;
    let m = image_manifest(&config, 2, &[(&missing, 10)], None, None);
    let r = n.put_manifest("app", "x", OCI_MANIFEST, &m).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );
    assert_eq!(
        r.json()["errors"][0]["detail"]["digest"],
        missing.to_string()
    );

    let big = vec![b' '; strata_oci::manifest::MAX_MANIFEST_BYTES + 1];
    let r = n.put_manifest("app", "x", OCI_MANIFEST, &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

    let r = n.put_manifest("app", "x", OCI_INDEX, &m).await;
    assert_eq!(
        r.code(),
        "MANIFEST_INVALID",
        "content type contradicting mediaType"
    );
    let r = n.put_manifest("app", "bad:tag", OCI_MANIFEST, &m).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        n.get("/v2/app/tags/list").await.json()["tags"],
        serde_json::json!([]),
        "nothing tagged"
    );
}

#[tokio::test]
async fn unknown_manifests_and_repositories() {
    let n = Node::in_memory();
    assert_eq!(
        n.get("/v2/none/manifests/latest").await.code(),
        "MANIFEST_UNKNOWN"
    );
    let r = n.get("/v2/none/tags/list").await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );
}

#[tokio::test]
async fn index_requires_its_children() {
    let n = Node::in_memory();
    let (child, d) = n.push_image("multi", "amd64", b"amd64 layer").await;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": child.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}]
    }))
    .unwrap();
    let r = n.put_manifest("multi", "latest", OCI_INDEX, &index).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        n.get("/v2/multi/manifests/latest")
            .await
            .header("content-type"),
        Some(OCI_INDEX)
    );
    let r = n.put_manifest("other", "latest", OCI_INDEX, &index).await;
    assert_eq!(
        r.code(),
        "MANIFEST_BLOB_UNKNOWN",
        "children must be in the same repository"
    );
}

#[tokio::test]
async fn docker_media_types_are_served_as_pushed() {
    let n = Node::in_memory();
    let config = n.push_blob("d", b"{}").await;
    let layer = n.push_blob("d", b"l").await;
    let dt = "application/vnd.docker.distribution.manifest.v2+json";
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": dt,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer.to_string(), "size": 1}]
    }))
    .unwrap();
    assert_eq!(
        n.put_manifest("d", "latest", dt, &m).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        n.get("/v2/d/manifests/latest").await.header("content-type"),
        Some(dt)
    );
}

#[tokio::test]
async fn tag_and_manifest_deletion() {
    let n = Node::in_memory();
    let (_, d) = n.push_image("del", "a", b"l").await;
    n.put_manifest(
        "del",
        "b",
        OCI_MANIFEST,
        &n.get("/v2/del/manifests/a").await.body,
    )
    .await;
    assert_eq!(
        n.send("DELETE", "/v2/del/manifests/a", &[], Body::empty())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        n.get("/v2/del/manifests/a").await.code(),
        "MANIFEST_UNKNOWN"
    );
    assert_eq!(
        n.get(&format!("/v2/del/manifests/{d}")).await.status,
        StatusCode::OK,
        "tag delete keeps manifest"
    );
    assert_eq!(
        n.send(
            "DELETE",
            &format!("/v2/del/manifests/{d}"),
            &[],
            Body::empty()
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        n.get("/v2/del/manifests/b").await.code(),
        "MANIFEST_UNKNOWN",
        "manifest delete drops its tags"
    );
    assert_eq!(
        n.send(
            "DELETE",
            &format!("/v2/del/manifests/{d}"),
            &[],
            Body::empty()
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn tags_and_catalog_paginate_with_link_headers() {
    let n = Node::in_memory();
    let (m, _) = n.push_image("pg", "t0", b"l").await;
    for t in ["t1", "t2", "t3", "t4"] {
        n.put_manifest("pg", t, OCI_MANIFEST, &m).await;
    }
    let all = n.get("/v2/pg/tags/list").await;
    assert_eq!(
        all.json()["tags"],
        serde_json::json!(["t0", "t1", "t2", "t3", "t4"])
    );
    assert!(all.header("link").is_none());
    let p1 = n.get("/v2/pg/tags/list?n=2").await;
    assert_eq!(p1.json()["tags"], serde_json::json!(["t0", "t1"]));
    assert_eq!(
        p1.header("link"),
        Some(r#"</v2/pg/tags/list?n=2&last=t1>; rel="next""#)
    );
    let p2 = n.get("/v2/pg/tags/list?n=2&last=t1").await;
    assert_eq!(p2.json()["tags"], serde_json::json!(["t2", "t3"]));
    let p3 = n.get("/v2/pg/tags/list?n=2&last=t3").await;
    assert_eq!(p3.json()["tags"], serde_json::json!(["t4"]));
    assert!(p3.header("link").is_none());
    assert_eq!(
        n.get("/v2/pg/tags/list?n=0").await.json()["tags"],
        serde_json::json!([])
    );

    n.push_blob("pa/x", b"1").await;
    n.push_blob("pz", b"1").await;
    let c = n.get("/v2/_catalog?n=2").await;
    assert_eq!(c.json()["repositories"], serde_json::json!(["pa/x", "pg"]));
    assert_eq!(
        c.header("link"),
        Some(r#"</v2/_catalog?n=2&last=pg>; rel="next""#)
    );
    assert_eq!(
        n.get("/v2/_catalog?n=2&last=pg").await.json()["repositories"],
        serde_json::json!(["pz"])
    );
}

#[tokio::test]
async fn referrers_list_and_filter_by_artifact_type() {
    let n = Node::in_memory();
    let (subject, sd) = n.push_image("ref", "v1", b"l").await;
    let empty = n.get(&format!("/v2/ref/referrers/{sd}")).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.header("content-type"), Some(OCI_INDEX));
    assert_eq!(empty.json()["manifests"], serde_json::json!([]));

    let config = n.push_blob("ref", b"{}").await;
    let sig = image_manifest(
        &config,
        2,
        &[],
        Some((&sd, subject.len())),
        Some("application/x-signature"),
    );
    let r = n
        .put_manifest("ref", &Digest::sha256(&sig).to_string(), OCI_MANIFEST, &sig)
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("oci-subject"), Some(sd.to_string().as_str()));
    let sbom = image_manifest(
        &config,
        2,
        &[],
        Some((&sd, subject.len())),
        Some("application/x-sbom"),
    );
    n.put_manifest(
        "ref",
        &Digest::sha256(&sbom).to_string(),
        OCI_MANIFEST,
        &sbom,
    )
    .await;

    let all = n.get(&format!("/v2/ref/referrers/{sd}")).await.json();
    assert_eq!(all["manifests"].as_array().unwrap().len(), 2);
    let filtered = n
        .get(&format!(
            "/v2/ref/referrers/{sd}?artifactType=application/x-sbom"
        ))
        .await;
    assert_eq!(filtered.header("oci-filters-applied"), Some("artifactType"));
    let ms = filtered.json()["manifests"].clone();
    assert_eq!(ms.as_array().unwrap().len(), 1);
    assert_eq!(ms[0]["artifactType"], "application/x-sbom");
    assert_eq!(ms[0]["digest"], Digest::sha256(&sbom).to_string());
    assert_eq!(ms[0]["size"], sbom.len());
    assert_eq!(ms[0]["mediaType"], OCI_MANIFEST);
}

#[tokio::test]
async fn gc_removes_only_unreferenced_blobs_past_grace() {
    let n = Node::in_memory();
    let (_, md) = n.push_image("gc", "keep", b"kept layer").await;
    let orphan = n.push_blob("gc", b"orphan").await;
    let fresh_opts = GcOptions {
        grace: Duration::from_secs(3600),
        upload_ttl: Duration::from_secs(3600),
    };
    let report = n.registry.gc(fresh_opts).await.unwrap();
    assert_eq!(
        report.blobs_removed, 0,
        "young orphan survives the grace period"
    );
    assert_eq!(report.blobs_in_grace, 1);

    tokio::time::sleep(Duration::from_millis(30)).await;
    let now_opts = GcOptions {
        grace: Duration::from_millis(10),
        upload_ttl: Duration::from_secs(3600),
    };
    let report = n.registry.gc(now_opts).await.unwrap();
    assert_eq!(report.blobs_removed, 1);
    assert_eq!(report.bytes_freed, 6);
    assert_eq!(
        n.get(&format!("/v2/gc/blobs/{orphan}")).await.code(),
        "BLOB_UNKNOWN"
    );
    assert_eq!(n.get("/v2/gc/manifests/keep").await.status, StatusCode::OK);

    // Deleting the manifest makes its layer and config garbage too.
    n.send(
        "DELETE",
        &format!("/v2/gc/manifests/{md}"),
        &[],
        Body::empty(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let report = n.registry.gc(now_opts).await.unwrap();
    assert_eq!(report.blobs_removed, 3, "manifest, config and layer");

    // Abandoned uploads go too.
    n.send("POST", "/v2/gc/blobs/uploads/", &[], Body::empty())
        .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    let abandon = GcOptions {
        grace: Duration::from_millis(10),
        upload_ttl: Duration::from_millis(10),
    };
    assert_eq!(n.registry.gc(abandon).await.unwrap().uploads_removed, 1);
}

#[tokio::test]
async fn admin_gc_endpoint_reports() {
    let n = Node::in_memory();
    n.push_blob("g", b"x").await;
    let r = n
        .send("POST", "/strata/v1/gc?grace_s=3600", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["blobs_in_grace"], 1);
}

#[tokio::test]
async fn a_descriptor_size_that_differs_from_the_stored_content_is_refused() {
    let n = Node::in_memory();
    let config = n.push_blob("sz", b"{}").await;
    let layer = n.push_blob("sz", b"twelve bytes").await;
    for (config_size, layer_size) in [(2, 13), (3, 12), (2, 0)] {
        let m = image_manifest(&config, config_size, &[(&layer, layer_size)], None, None);
        let r = n.put_manifest("sz", "v1", OCI_MANIFEST, &m).await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            "config {config_size}, layer {layer_size}"
        );
    }
    assert_eq!(
        n.get("/v2/sz/manifests/v1").await.status,
        StatusCode::NOT_FOUND
    );

    let (child, d) = n.push_image("sz", "amd64", b"amd64 layer").await;
    let index = |size: usize| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": size}]
        }))
        .unwrap()
    };
    let r = n
        .put_manifest("sz", "multi", OCI_INDEX, &index(child.len() + 1))
        .await;
    assert_eq!(
        r.code(),
        "MANIFEST_INVALID",
        "child manifest of the wrong size"
    );
    let r = n
        .put_manifest("sz", "multi", OCI_INDEX, &index(child.len()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn admin_gc_refuses_a_grace_that_could_collect_pushes_in_flight_unless_forced() {
    let n = Node::in_memory();
    let d = n.push_blob("g", b"x").await;
    for q in ["grace_s=0", "upload_ttl_s=0", "grace_s=599"] {
        let r = n
            .send("POST", &format!("/strata/v1/gc?{q}"), &[], Body::empty())
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.code(), "UNSUPPORTED", "{q}");
    }
    let blob = format!("/v2/g/blobs/{d}");
    assert_eq!(
        n.get(&blob).await.status,
        StatusCode::OK,
        "refused: nothing removed"
    );
    let r = n
        .send(
            "POST",
            "/strata/v1/gc?grace_s=0&force=true",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["blobs_removed"],
        1,
        "forced: the young orphan goes"
    );
    assert_eq!(n.get(&blob).await.status, StatusCode::NOT_FOUND);
}
