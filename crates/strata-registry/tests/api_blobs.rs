//! Blob pull, push (monolithic, chunked, resumed), mount, delete and their errors, in process.

#![allow(clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use common::Node;
use strata_oci::Digest;

#[tokio::test]
async fn base_endpoint_announces_api_version() {
    let n = Node::in_memory();
    let r = n.get("/v2/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );
    assert!(
        r.header("x-request-id").is_some(),
        "every response carries a request id"
    );
}

#[tokio::test]
async fn monolithic_push_then_pull_with_ranges() {
    let n = Node::in_memory();
    let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let d = n.push_blob("a/b", &data).await;
    let r = n.get(&format!("/v2/a/b/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, data);
    assert_eq!(
        r.header("docker-content-digest"),
        Some(d.to_string().as_str())
    );

    let head = n
        .send("HEAD", &format!("/v2/a/b/blobs/{d}"), &[], Body::empty())
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("1000"));
    assert!(head.body.is_empty());

    let part = n
        .send(
            "GET",
            &format!("/v2/a/b/blobs/{d}"),
            &[("range", "bytes=10-19")],
            Body::empty(),
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, &data[10..20]);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/1000"));

    let ranged = |range: &'static str| {
        let (n, uri) = (&n, format!("/v2/a/b/blobs/{d}"));
        async move {
            n.send("GET", &uri, &[("range", range)], Body::empty())
                .await
        }
    };
    for bad in ["bytes=1000-", "bytes=1000-2000", "bytes=-0"] {
        let r = ranged(bad).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(r.header("content-range"), Some("bytes */1000"));
        assert_eq!(r.code(), "UNSUPPORTED", "the blob exists: not BLOB_UNKNOWN");
    }
    // RFC 9110: a Range the server does not understand or serve is ignored (200, whole blob).
    for ignored in [
        "bytes=5-1",
        "pages=1-2",
        "items=0-9",
        "bytes=0-1,4-5",
        "bytes=abc",
    ] {
        let r = ranged(ignored).await;
        assert_eq!(r.status, StatusCode::OK, "{ignored}");
        assert_eq!(r.body, data, "{ignored}");
        assert_eq!(r.header("content-range"), None, "{ignored}");
    }
    let r = ranged("bytes=990-18446744073709551615").await;
    assert_eq!(
        r.status,
        StatusCode::PARTIAL_CONTENT,
        "the largest end is clamped"
    );
    assert_eq!(r.body, &data[990..]);
    assert_eq!(r.header("content-range"), Some("bytes 990-999/1000"));
}

#[tokio::test]
async fn a_content_range_whose_length_differs_from_the_body_is_416_and_writes_nothing() {
    let n = Node::in_memory();
    let loc = n
        .send("POST", "/v2/r/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .unwrap()
        .to_string();
    for (range, len) in [("0-9", "5"), ("0-2", "5")] {
        let r = n
            .send(
                "PATCH",
                &loc,
                &[("content-range", range), ("content-length", len)],
                b"hello".to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(r.code(), "BLOB_UPLOAD_INVALID");
        assert_eq!(r.header("range"), Some("0-0"), "nothing was written");
    }
    let r = n
        .send(
            "PATCH",
            &loc,
            &[("content-range", "0-4"), ("content-length", "5")],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), Some("0-4"));
}

#[tokio::test]
async fn blobs_are_scoped_to_their_repository() {
    let n = Node::in_memory();
    let d = n.push_blob("one", b"data").await;
    let r = n.get(&format!("/v2/two/blobs/{d}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn chunked_upload_in_order_with_status_and_resume() {
    let n = Node::in_memory();
    let r = n
        .send("POST", "/v2/r/blobs/uploads/", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let loc = r.header("location").unwrap().to_string();
    assert_eq!(r.header("range"), Some("0-0"));

    let r = n
        .send(
            "PATCH",
            &loc,
            &[
                ("content-range", "0-4"),
                ("content-type", "application/octet-stream"),
            ],
            b"hello".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), Some("0-4"));

    // Out of order: 416 with where the upload really is.
    let r = n
        .send(
            "PATCH",
            &loc,
            &[("content-range", "3-7")],
            b"xxxxx".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("range"), Some("0-4"));

    // Status, then resume from the reported offset.
    let s = n.get(&loc).await;
    assert_eq!(s.status, StatusCode::NO_CONTENT);
    assert_eq!(s.header("range"), Some("0-4"));
    let r = n
        .send(
            "PATCH",
            &loc,
            &[("content-range", "5-10")],
            b" world".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);

    let d = Digest::sha256(b"hello world");
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = n
        .send(
            "PUT",
            &format!("{loc}{sep}digest={d}"),
            &[("content-length", "0")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/r/blobs/{d}").as_str())
    );
    assert_eq!(
        n.get(&format!("/v2/r/blobs/{d}")).await.body,
        b"hello world"
    );
    assert_eq!(
        n.get(&loc).await.status,
        StatusCode::NOT_FOUND,
        "session ends at commit"
    );
}

#[tokio::test]
async fn closing_put_with_an_out_of_order_chunk_is_416_and_keeps_the_session() {
    let n = Node::in_memory();
    let loc = n
        .send("POST", "/v2/r/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .unwrap()
        .to_string();
    n.send(
        "PATCH",
        &loc,
        &[("content-range", "0-4")],
        b"hello".to_vec(),
    )
    .await;
    let d = Digest::sha256(b"hello world");
    let sep = if loc.contains('?') { '&' } else { '?' };
    let put = |range: &'static str| {
        let url = format!("{loc}{sep}digest={d}");
        let n = &n;
        async move {
            n.send("PUT", &url, &[("content-range", range)], b" world".to_vec())
                .await
        }
    };
    let r = put("7-12").await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("range"), Some("0-4"));
    assert_eq!(
        n.get(&loc).await.status,
        StatusCode::NO_CONTENT,
        "session kept"
    );
    let r = put("5-10").await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        n.get(&format!("/v2/r/blobs/{d}")).await.body,
        b"hello world"
    );
}

#[tokio::test]
async fn post_then_put_with_body() {
    let n = Node::in_memory();
    let loc = n
        .send("POST", "/v2/r/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .unwrap()
        .to_string();
    let d = Digest::sha256(b"one shot");
    let r = n
        .send(
            "PUT",
            &format!("{loc}?digest={d}"),
            &[],
            b"one shot".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(n.get(&format!("/v2/r/blobs/{d}")).await.body, b"one shot");
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let n = Node::in_memory();
    let wrong = Digest::sha256(b"expected");
    let r = n
        .send(
            "POST",
            &format!("/v2/r/blobs/uploads/?digest={wrong}"),
            &[],
            b"actual".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "DIGEST_INVALID");
    assert_eq!(
        n.get(&format!("/v2/r/blobs/{wrong}")).await.status,
        StatusCode::NOT_FOUND
    );
    let actual = Digest::sha256(b"actual");
    assert_eq!(
        n.get(&format!("/v2/r/blobs/{actual}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert!(
        n.registry
            .gc(Default::default())
            .await
            .unwrap()
            .uploads_removed
            == 0,
        "no upload left behind"
    );

    let r = n
        .send(
            "POST",
            "/v2/r/blobs/uploads/?digest=sha256:nothex",
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    let loc = n
        .send("POST", "/v2/r/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .unwrap()
        .to_string();
    let r = n.send("PUT", &loc, &[], b"no digest".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "DIGEST_INVALID");
}

#[tokio::test]
async fn uploads_are_bound_to_their_repository_and_cancellable() {
    let n = Node::in_memory();
    let loc = n
        .send("POST", "/v2/r/blobs/uploads/", &[], Body::empty())
        .await
        .header("location")
        .unwrap()
        .to_string();
    let id = loc.rsplit('/').next().unwrap();
    let other = n.get(&format!("/v2/other/blobs/uploads/{id}")).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        n.send("DELETE", &loc, &[], Body::empty()).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(n.get(&loc).await.code(), "BLOB_UPLOAD_UNKNOWN");
    let r = n
        .send(
            "PATCH",
            "/v2/r/blobs/uploads/no-such-upload",
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn cross_repository_mount() {
    let n = Node::in_memory();
    let d = n.push_blob("src", b"shared layer").await;
    let r = n
        .send(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/dst/blobs/{d}").as_str())
    );
    assert_eq!(
        n.get(&format!("/v2/dst/blobs/{d}")).await.body,
        b"shared layer"
    );

    // Not in the source repository: fall back to an upload session.
    let missing = Digest::sha256(b"missing");
    let r = n
        .send(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={missing}&from=src"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r
        .header("location")
        .unwrap()
        .starts_with("/v2/dst/blobs/uploads/"));
}

#[tokio::test]
async fn delete_blob_unlinks_it() {
    let n = Node::in_memory();
    let d = n.push_blob("r", b"bye").await;
    assert_eq!(
        n.send("DELETE", &format!("/v2/r/blobs/{d}"), &[], Body::empty())
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        n.get(&format!("/v2/r/blobs/{d}")).await.code(),
        "BLOB_UNKNOWN"
    );
    assert_eq!(
        n.send("DELETE", &format!("/v2/r/blobs/{d}"), &[], Body::empty())
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn invalid_names_are_rejected() {
    let n = Node::in_memory();
    for path in [
        "/v2/UPPER/tags/list",
        "/v2/a/../b/tags/list",
        "/v2/a//b/tags/list",
        "/v2/-a/tags/list",
        "/v2/a__-b/blobs/uploads/",
    ] {
        let method = if path.ends_with("uploads/") {
            "POST"
        } else {
            "GET"
        };
        let r = n.send(method, path, &[], Body::empty()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.code(), "NAME_INVALID", "{path}");
    }
    let r = n.get("/v2/a/blobs/sha256:1234").await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = n
        .get("/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e")
        .await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = n.send("PATCH", "/v2/a/tags/list", &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.code(), "UNSUPPORTED");
}

#[tokio::test]
async fn sha512_blobs_are_accepted() {
    let n = Node::in_memory();
    let d = Digest::of(strata_oci::Algorithm::Sha512, b"long hash");
    let r = n
        .send(
            "POST",
            &format!("/v2/r/blobs/uploads/?digest={d}"),
            &[],
            b"long hash".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(n.get(&format!("/v2/r/blobs/{d}")).await.body, b"long hash");
}

#[tokio::test]
async fn metrics_count_requests_and_bytes() {
    let n = Node::in_memory();
    let d = n.push_blob("m", b"0123456789").await;
    n.get(&format!("/v2/m/blobs/{d}")).await;
    n.get("/v2/m/blobs/sha256:bad").await;
    let text = String::from_utf8(n.get("/metrics").await.body).unwrap();
    assert!(
        text.contains(r#"strata_http_requests_total{route="blob",method="GET",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"strata_http_requests_total{route="upload",method="POST",status="201"} 1"#),
        "{text}"
    );
    assert!(text.contains("strata_http_sent_bytes_total 10"), "{text}");
    assert!(
        text.contains("strata_http_received_bytes_total 10"),
        "{text}"
    );
    assert!(
        text.contains("strata_http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_show_layers_kept_whole_at_file_granularity() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::on_disk(dir.path(), strata_store::Granularity::File).await;
    // 8 KiB that is neither a tar nor compressed: converted in the background, kept whole.
    let blob: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    n.push_blob("m", &blob).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = String::from_utf8(n.get("/metrics").await.body).unwrap();
        if text.contains(r#"strata_layers{storage="kept_whole"} 1"#) {
            assert!(
                text.contains(r#"strata_layers{storage="file_level"} 0"#),
                "{text}"
            );
            assert!(text.contains("strata_layer_reconstructions 0"), "{text}");
            assert!(text.contains("strata_rebuilt_cache_bytes 0"), "{text}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never kept whole: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn anonymous_mount_links_a_stored_blob_and_falls_back_for_an_unknown_one() {
    let n = Node::in_memory();
    let d = n.push_blob("src", b"shared layer").await;
    let r = n
        .send(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        n.get(&format!("/v2/dst/blobs/{d}")).await.body,
        b"shared layer"
    );
    let missing = Digest::sha256(b"missing");
    let r = n
        .send(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={missing}"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}
