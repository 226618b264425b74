"""Write a small OCI image layout for `strata plan inventory` tests.

Images "one" (layers l1, l3) and "two" (layers l2, l3, l4). l1 and l2 are different gzip
layers sharing the file shared.bin; l3 is an uncompressed tar; l4 is gzip of bytes that are
not a tar, so it cannot be held at file level. Usage: make_layout.py DIR
"""
import gzip, hashlib, io, json, os, random, sys, tarfile

out = sys.argv[1]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)
rng = random.Random(7)
shared = bytes(rng.getrandbits(8) for _ in range(50000))


def tar(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1700000000
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}


gz = "application/vnd.oci.image.layer.v1.tar+gzip"
l1 = dict(put(gzip.compress(tar([("shared.bin", shared), ("a.txt", b"a" * 3000)]), mtime=0)), mediaType=gz)
l2 = dict(put(gzip.compress(tar([("shared.bin", shared), ("b.txt", b"b" * 5000)]), mtime=0)), mediaType=gz)
l3 = dict(put(tar([("c.txt", b"c" * 7000)])), mediaType="application/vnd.oci.image.layer.v1.tar")
l4 = dict(put(gzip.compress(b"not a tar archive " * 100, mtime=0)), mediaType=gz)
config = dict(put(b"{}"), mediaType="application/vnd.oci.image.config.v1+json")
index = {"schemaVersion": 2, "manifests": []}
for name, layers in [("one", [l1, l3]), ("two", [l2, l3, l4])]:
    m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config, "layers": layers}).encode()
    index["manifests"].append(dict(put(m), mediaType="application/vnd.oci.image.manifest.v1+json",
                                   annotations={"org.opencontainers.image.ref.name": name}))
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion": "1.0.0"}')
print(json.dumps({"shared_sha256": hashlib.sha256(shared).hexdigest(),
                  "layers": [l["digest"] for l in (l1, l2, l3, l4)]}))
