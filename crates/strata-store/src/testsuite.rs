//! The conformance suite every [`BlobStore`], [`BlobSource`] and [`MetaStore`] implementation
//! runs.
//!
//! Call [`blob_store`], [`blob_source`] and [`meta_store`] from an implementation's tests with a fresh, empty
//! store. Each check panics with a message naming the broken contract.

#![allow(clippy::unwrap_used)]

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use strata_oci::{Algorithm, Digest, RepoName, Tag};

use crate::{
    BlobSource, BlobStore, ByteStream, CachedBlob, ManifestRecord, MetaStore, StoreError,
    UploadRecord,
};

fn body(parts: &[&'static [u8]]) -> ByteStream {
    let items: Vec<io::Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures_util::stream::iter(items))
}

fn broken_body(first: &'static [u8]) -> ByteStream {
    pieces(&Bytes::from_static(first), first.len(), true)
}

/// `data` in `chunk`-byte pieces, the stream failing after them if `fails`.
fn pieces(data: &Bytes, chunk: usize, fails: bool) -> ByteStream {
    let mut items: Vec<io::Result<Bytes>> = (0..data.len())
        .step_by(chunk)
        .map(|i| Ok(data.slice(i..(i + chunk).min(data.len()))))
        .collect();
    if fails {
        items.push(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )));
    }
    Box::pin(futures_util::stream::iter(items))
}

/// Bytes that differ from position to position (so a misplaced piece changes the digest).
fn patterned(len: usize, seed: u32) -> Bytes {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn read_all(store: &dyn BlobStore, d: &Digest, start: u64, end: u64) -> Vec<u8> {
    let mut s = store.read(d, start, end).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// Run every blob store check against an empty store.
pub async fn blob_store(store: Arc<dyn BlobStore>) {
    let s = store.as_ref();
    let hello = Digest::sha256(b"hello world");

    // Absent blobs.
    assert!(
        s.stat(&hello).await.unwrap().is_none(),
        "empty store has no blob"
    );
    assert!(matches!(
        s.read(&hello, 0, 1).await,
        Err(StoreError::BlobNotFound(_))
    ));
    assert!(
        !s.delete(&hello).await.unwrap(),
        "deleting an absent blob reports false"
    );

    // Chunked upload, then commit.
    s.upload_start("u1").await.unwrap();
    assert_eq!(s.upload_size("u1").await.unwrap(), Some(0));
    assert_eq!(s.upload_append("u1", body(&[b"hello"])).await.unwrap(), 5);
    assert_eq!(
        s.upload_append("u1", body(&[b" ", b"world"]))
            .await
            .unwrap(),
        11
    );
    assert!(
        s.stat(&hello).await.unwrap().is_none(),
        "upload is invisible before commit"
    );
    assert_eq!(s.upload_commit("u1", &hello).await.unwrap(), 11);
    assert_eq!(
        s.upload_size("u1").await.unwrap(),
        None,
        "commit ends the upload"
    );
    assert_eq!(s.stat(&hello).await.unwrap().unwrap().size, 11);
    assert_eq!(read_all(s, &hello, 0, 11).await, b"hello world");
    assert_eq!(read_all(s, &hello, 6, 11).await, b"world", "ranged read");
    assert_eq!(read_all(s, &hello, 3, 5).await, b"lo");

    // Digest mismatch: nothing becomes visible and the upload is discarded.
    let wrong = Digest::sha256(b"something else");
    s.upload_start("u2").await.unwrap();
    s.upload_append("u2", body(&[b"tampered"])).await.unwrap();
    let err = s.upload_commit("u2", &wrong).await.unwrap_err();
    assert!(
        matches!(err, StoreError::DigestMismatch { .. }),
        "got {err:?}"
    );
    assert!(s.stat(&wrong).await.unwrap().is_none());
    assert!(s
        .stat(&Digest::sha256(b"tampered"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(s.upload_size("u2").await.unwrap(), None);

    // An interrupted body keeps what arrived, so the client can resume.
    s.upload_start("u3").await.unwrap();
    let err = s
        .upload_append("u3", broken_body(b"part-"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BodyInterrupted(_)), "got {err:?}");
    assert_eq!(s.upload_size("u3").await.unwrap(), Some(5));
    assert_eq!(
        s.upload_append("u3", body(&[b"", b""])).await.unwrap(),
        5,
        "empty chunks append nothing"
    );
    s.upload_append("u3", body(&[b"two"])).await.unwrap();
    let d3 = Digest::sha256(b"part-two");
    s.upload_commit("u3", &d3).await.unwrap();
    assert_eq!(read_all(s, &d3, 0, 8).await, b"part-two");

    // Many small pieces over several MiB, interrupted, resumed in other sizes: every byte in
    // place (a durable store hands large bodies to a writer in batches).
    let first = patterned(9 * 1024 * 1024 + 123, 1);
    let rest = patterned(3 * 1024 * 1024 + 7, 2);
    s.upload_start("u5").await.unwrap();
    let err = s
        .upload_append("u5", pieces(&first, 4093, true))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BodyInterrupted(_)), "got {err:?}");
    let kept = first.len() as u64;
    assert_eq!(s.upload_size("u5").await.unwrap(), Some(kept));
    let total = kept + rest.len() as u64;
    assert_eq!(
        s.upload_append("u5", pieces(&rest, 65536, false))
            .await
            .unwrap(),
        total
    );
    let whole = [first.as_ref(), rest.as_ref()].concat();
    let d5 = Digest::sha256(&whole);
    assert_eq!(s.upload_commit("u5", &d5).await.unwrap(), total);
    assert_eq!(
        read_all(s, &d5, 0, total).await,
        whole,
        "large upload intact"
    );

    // A client that goes away mid-body: what the store received stays, and the next
    // request on the upload sees all of it (a durable store's writer finishes first).
    let head = patterned(2 * 1024 * 1024, 3);
    let tail = patterned(1000, 4);
    s.upload_start("u6").await.unwrap();
    let stalled =
        futures_util::stream::iter([Ok(head.clone())]).chain(futures_util::stream::pending());
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        s.upload_append("u6", Box::pin(stalled)),
    )
    .await;
    assert!(cancelled.is_err(), "a stalled body does not end the append");
    let empty: ByteStream = Box::pin(futures_util::stream::empty());
    assert_eq!(
        s.upload_append("u6", empty).await.unwrap(),
        head.len() as u64,
        "the bytes before the client went away are kept"
    );
    let total = (head.len() + tail.len()) as u64;
    assert_eq!(
        s.upload_append("u6", pieces(&tail, 100, false))
            .await
            .unwrap(),
        total
    );
    let d6 = Digest::sha256(&[head.as_ref(), tail.as_ref()].concat());
    assert_eq!(s.upload_commit("u6", &d6).await.unwrap(), total);

    // sha512 uploads verify with their own algorithm.
    let d512 = Digest::of(Algorithm::Sha512, b"five twelve");
    s.upload_start("u4").await.unwrap();
    s.upload_append("u4", body(&[b"five ", b"twelve"]))
        .await
        .unwrap();
    s.upload_commit("u4", &d512).await.unwrap();
    assert_eq!(s.stat(&d512).await.unwrap().unwrap().size, 11);

    // Unknown uploads.
    assert!(matches!(
        s.upload_append("nope", body(&[b"x"])).await,
        Err(StoreError::UploadNotFound(_))
    ));
    assert!(matches!(
        s.upload_commit("nope", &hello).await,
        Err(StoreError::UploadNotFound(_))
    ));
    assert_eq!(s.upload_size("nope").await.unwrap(), None);

    // Abort and listing.
    s.upload_start("u5").await.unwrap();
    assert_eq!(s.list_uploads().await.unwrap().len(), 1);
    assert!(s.upload_abort("u5").await.unwrap());
    assert!(!s.upload_abort("u5").await.unwrap());
    assert!(s.list_uploads().await.unwrap().is_empty());

    // put verifies, touch refreshes, list and delete.
    let m = Digest::sha256(b"{}");
    assert!(matches!(
        s.put(&m, Bytes::from_static(b"{ }")).await,
        Err(StoreError::DigestMismatch { .. })
    ));
    s.put(&m, Bytes::from_static(b"{}")).await.unwrap();
    let before = s.stat(&m).await.unwrap().unwrap().modified;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.touch(&m).await.unwrap();
    assert!(
        s.stat(&m).await.unwrap().unwrap().modified > before,
        "touch refreshes age"
    );
    assert!(matches!(
        s.touch(&wrong).await,
        Err(StoreError::BlobNotFound(_))
    ));
    let mut listed: Vec<String> = s
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.digest.to_string())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = [&hello, &d3, &d5, &d6, &d512, &m]
        .iter()
        .map(|d| d.to_string())
        .collect();
    expected.sort();
    assert_eq!(listed, expected);
    assert!(s.delete(&hello).await.unwrap());
    assert!(s.stat(&hello).await.unwrap().is_none());

    // A large blob: ranges at any offset and across chunk boundaries read exactly.
    let big: Vec<u8> = (0..9 * 1024 * 1024 + 3)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let bd = Digest::sha256(&big);
    s.put(&bd, Bytes::from(big.clone())).await.unwrap();
    let n = big.len() as u64;
    let mib = 1024 * 1024;
    for (a, b) in [
        (0, n),
        (1, 5 * mib + 7),
        (4097, n - 5),
        (4 * mib - 1, 4 * mib + 1),
        (n - 300_000, n),
        (0, 300_000),
    ] {
        assert_eq!(
            read_all(s, &bd, a, b).await,
            &big[a as usize..b as usize],
            "range {a}..{b} of a large blob"
        );
    }
}

fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}

fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}

fn record(content: &[u8], subject: Option<&Digest>, blobs: &[&Digest]) -> ManifestRecord {
    ManifestRecord {
        digest: Digest::sha256(content),
        media_type: strata_oci::manifest::OCI_MANIFEST.to_string(),
        size: content.len() as u64,
        artifact_type: Some("application/x-test".into()),
        subject: subject.cloned(),
        annotations: None,
        blobs: blobs.iter().map(|d| (*d).clone()).collect(),
        manifests: Vec::new(),
    }
}

/// Run every metadata store check against an empty store.
pub fn meta_store(s: &dyn MetaStore) {
    let (a, ab, b) = (repo("a"), repo("a/b"), repo("b"));
    let blob = Digest::sha256(b"layer");

    // Mirrored blobs: recorded, listed, removed once.
    assert!(s.list_cached().unwrap().is_empty());
    let cached = |n: u64| CachedBlob {
        digest: Digest::sha256(&n.to_le_bytes()),
        size: n * 100,
        stored_ms: 1_700_000_000 + n,
    };
    s.put_cached(&cached(1)).unwrap();
    s.put_cached(&cached(2)).unwrap();
    s.put_cached(&cached(2)).unwrap();
    let mut listed = s.list_cached().unwrap();
    listed.sort_by_key(|c| c.size);
    assert_eq!(listed, vec![cached(1), cached(2)]);
    assert!(s.remove_cached(&cached(1).digest).unwrap());
    assert!(!s.remove_cached(&cached(1).digest).unwrap());
    assert_eq!(s.list_cached().unwrap(), vec![cached(2)]);
    assert!(s.remove_cached(&cached(2).digest).unwrap());

    // Blob links are per repository.
    assert!(!s.repo_exists(&a).unwrap());
    s.link_blob(&a, &blob).unwrap();
    assert!(s.repo_exists(&a).unwrap());
    assert!(s.blob_linked(&a, &blob).unwrap());
    assert!(
        !s.blob_linked(&ab, &blob).unwrap(),
        "links do not leak to a/b"
    );
    s.link_blob(&ab, &blob).unwrap();
    assert!(s.unlink_blob(&a, &blob).unwrap());
    assert!(!s.unlink_blob(&a, &blob).unwrap());
    assert!(s.blob_linked(&ab, &blob).unwrap());
    s.unlink_blob_everywhere(&blob).unwrap();
    assert!(!s.blob_linked(&ab, &blob).unwrap());

    // Manifests and tags.
    let m1 = record(b"m1", None, &[&blob]);
    let m2 = record(b"m2", None, &[]);
    s.put_manifest(&a, &m1, &[tag("v1")]).unwrap();
    s.put_manifest(&a, &m2, &[tag("v2")]).unwrap();
    s.put_manifest(&a, &m2, &[tag("latest")]).unwrap();
    assert_eq!(s.get_manifest(&a, &m1.digest).unwrap().as_ref(), Some(&m1));
    assert_eq!(
        s.get_manifest(&b, &m1.digest).unwrap(),
        None,
        "manifests are per repository"
    );
    assert_eq!(
        s.resolve_tag(&a, &tag("v1")).unwrap(),
        Some(m1.digest.clone())
    );
    s.put_manifest(&a, &m1, &[tag("latest")]).unwrap();
    assert_eq!(
        s.resolve_tag(&a, &tag("latest")).unwrap(),
        Some(m1.digest.clone()),
        "retag moves"
    );

    // Tag pagination in lexical order.
    assert_eq!(
        s.list_tags(&a, None, 100).unwrap(),
        vec!["latest", "v1", "v2"]
    );
    assert_eq!(s.list_tags(&a, None, 2).unwrap(), vec!["latest", "v1"]);
    assert_eq!(s.list_tags(&a, Some("v1"), 2).unwrap(), vec!["v2"]);
    assert!(s.list_tags(&a, Some("v2"), 2).unwrap().is_empty());
    assert!(s.list_tags(&b, None, 10).unwrap().is_empty());

    // Deleting a tag keeps the manifest; deleting a manifest drops its tags.
    assert!(s.delete_tag(&a, &tag("v2")).unwrap());
    assert!(!s.delete_tag(&a, &tag("v2")).unwrap());
    assert!(s.get_manifest(&a, &m2.digest).unwrap().is_some());
    assert!(s.delete_manifest(&a, &m1.digest).unwrap());
    assert!(!s.delete_manifest(&a, &m1.digest).unwrap());
    assert_eq!(s.resolve_tag(&a, &tag("latest")).unwrap(), None);
    assert_eq!(s.resolve_tag(&a, &tag("v1")).unwrap(), None);
    assert!(s.list_tags(&a, None, 10).unwrap().is_empty());

    // Referrers.
    let subject = m2.digest.clone();
    let r1 = record(b"sig", Some(&subject), &[]);
    let r2 = record(b"sbom", Some(&subject), &[]);
    s.put_manifest(&a, &r1, &[]).unwrap();
    s.put_manifest(&a, &r2, &[]).unwrap();
    s.put_manifest(&b, &record(b"other", Some(&subject), &[]), &[])
        .unwrap();
    let mut got: Vec<Digest> = s
        .referrers(&a, &subject)
        .unwrap()
        .into_iter()
        .map(|m| m.digest)
        .collect();
    got.sort();
    let mut want = vec![r1.digest.clone(), r2.digest.clone()];
    want.sort();
    assert_eq!(got, want, "referrers are per repository and subject");
    s.delete_manifest(&a, &r1.digest).unwrap();
    assert_eq!(
        s.referrers(&a, &subject).unwrap().len(),
        1,
        "deleted referrer disappears"
    );

    // Live set for garbage collection.
    let live = s.referenced_blobs().unwrap();
    assert!(live.contains(&m2.digest) && live.contains(&r2.digest));
    assert!(!live.contains(&m1.digest), "deleted manifest is not live");
    assert!(
        !live.contains(&blob),
        "blob of a deleted manifest is not live"
    );

    // Catalog pagination.
    assert_eq!(s.list_repos(None, 10).unwrap(), vec!["a", "a/b", "b"]);
    assert_eq!(s.list_repos(None, 1).unwrap(), vec!["a"]);
    assert_eq!(s.list_repos(Some("a"), 1).unwrap(), vec!["a/b"]);
    assert_eq!(s.list_repos(Some("a/b"), 5).unwrap(), vec!["b"]);

    // Upload sessions.
    let up = UploadRecord {
        id: "u1".into(),
        repo: a.clone(),
        started_unix: 42,
    };
    s.put_upload(&up).unwrap();
    assert_eq!(s.get_upload("u1").unwrap(), Some(up.clone()));
    assert_eq!(s.list_uploads().unwrap(), vec![up]);
    assert!(s.delete_upload("u1").unwrap());
    assert!(!s.delete_upload("u1").unwrap());
    assert_eq!(s.get_upload("u1").unwrap(), None);

    // Finishing an upload ends its session and links its blob.
    let up2 = UploadRecord {
        id: "u2".into(),
        repo: b.clone(),
        started_unix: 43,
    };
    s.put_upload(&up2).unwrap();
    let pushed = Digest::sha256(b"finished upload");
    assert!(!s.blob_linked(&b, &pushed).unwrap());
    s.finish_upload("u2", &b, &pushed).unwrap();
    assert_eq!(s.get_upload("u2").unwrap(), None, "session ended");
    assert!(s.blob_linked(&b, &pushed).unwrap(), "blob linked");
    s.finish_upload("u2", &b, &pushed).unwrap();
    assert!(
        s.blob_linked(&b, &pushed).unwrap(),
        "finishing twice is harmless"
    );
}

async fn read_source(
    source: &dyn BlobSource,
    repo: &RepoName,
    d: &Digest,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, StoreError> {
    let mut s = source.read(repo, d, start, end).await?;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Run every blob source check against `source`, which holds the blobs `held` (each in its
/// repository) and no blob whose content is `b"absent from every source"`.
pub async fn blob_source(source: &dyn BlobSource, held: &[(RepoName, Bytes)]) {
    assert!(!held.is_empty(), "the suite needs at least one blob");
    let absent = Digest::sha256(b"absent from every source");
    let repo = &held[0].0;
    assert!(
        source.stat(repo, &absent).await.unwrap().is_none(),
        "an absent blob has no size"
    );
    assert!(
        matches!(
            read_source(source, repo, &absent, 0, 1).await,
            Err(StoreError::BlobNotFound(_))
        ),
        "reading an absent blob is BlobNotFound"
    );
    for (repo, data) in held {
        let d = Digest::sha256(data);
        let len = data.len() as u64;
        assert_eq!(
            source.stat(repo, &d).await.unwrap(),
            Some(len),
            "size of {d}"
        );
        let whole = read_source(source, repo, &d, 0, len).await.unwrap();
        assert!(whole == data[..], "whole blob {d} reads back exactly");
        for (start, end) in [(0, 1), (len / 3, len / 2), (len - 1, len), (len, len)] {
            let part = read_source(source, repo, &d, start, end).await.unwrap();
            assert!(
                part == data[start as usize..end as usize],
                "range {start}..{end} of {d}"
            );
        }
        assert!(
            read_source(source, repo, &d, 0, len + 1).await.is_err(),
            "a range past the end of {d} is an error, not a short read"
        );
    }
}

/// Blobs for [`blob_source`]: a small one, one of several read chunks, in two repositories.
pub fn source_blobs() -> Vec<(RepoName, Bytes)> {
    vec![
        (
            "suite/small".parse().unwrap(),
            Bytes::from_static(b"a small blob"),
        ),
        (
            "suite/large".parse().unwrap(),
            patterned(3 * 1024 * 1024 + 17, 9),
        ),
    ]
}
