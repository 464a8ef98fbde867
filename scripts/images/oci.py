#!/usr/bin/env python3
"""Writes OCI image layouts, tarred, for `ctr images import` (scripts/images/build).

No registry can be reached from the lab, so images are built from Debian packages and
written here by hand: the format is small (a layer blob, a config, a manifest, an index).
Everything is deterministic for the same input: sorted tar entries, fixed owners and mtimes
where this script makes the entries, gzip without a timestamp or a file name.

  oci.py layer DIR OUT.tar              a layer tar of DIR's contents (owners root, mtimes clamped)
  oci.py image --name NAME --layer L.tar --config CONFIG.json --out OUT.oci.tar
                                        prints the manifest digest (sha256:...)

CONFIG.json holds the image's runtime config (Entrypoint, Cmd, User, Env, WorkingDir,
ExposedPorts); the rest (architecture, rootfs.diff_ids, history) is filled in here.
"""
import argparse
import gzip
import hashlib
import io
import json
import re
import os
import stat
import sys
import tarfile
import tempfile
import time

# Fixed times for the entries this script creates, unless the build sets its own.
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
CHUNK = 1 << 20
REGISTRY = "nublar.local"


def die(msg: str) -> None:
    print(f"oci.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def canonical_json(obj) -> bytes:
    # Sorted keys and no spaces: the same object always gives the same digest.
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def make_layer(src: str, out: str) -> None:
    """A tar of src's tree: entries sorted, owned by root (numeric only), mtimes clamped to EPOCH.
    Only regular files, directories and symlinks: enough for static binaries and small config."""
    if not os.path.isdir(src):
        die(f"layer source {src} is not a directory")
    paths = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in dirs + sorted(files):
            paths.append(os.path.join(root, name))
    paths.sort(key=lambda p: os.path.relpath(p, src))
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for p in paths:
            rel = os.path.relpath(p, src)
            st = os.lstat(p)
            info = tarfile.TarInfo(rel)
            info.mode = stat.S_IMODE(st.st_mode)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = min(int(st.st_mtime), EPOCH) if EPOCH else 0
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(p)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                with open(p, "rb") as f:
                    tar.addfile(info, f)
            else:
                die(f"{p}: only files, directories and symlinks go into a layer made here")


def hash_and_gzip(layer: str, gz_out: str) -> tuple[str, str, int, int]:
    """The layer's diff_id (sha256 of the tar) and its blob digest (sha256 of the gzip), streamed.
    mtime=0 and no file name in the gzip header, so the blob depends on the content only."""
    diff = hashlib.sha256()
    size = 0
    with open(layer, "rb") as src, open(gz_out, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            while chunk := src.read(CHUNK):
                diff.update(chunk)
                size += len(chunk)
                gz.write(chunk)
    blob = hashlib.sha256()
    with open(gz_out, "rb") as f:
        while chunk := f.read(CHUNK):
            blob.update(chunk)
    return "sha256:" + diff.hexdigest(), "sha256:" + blob.hexdigest(), size, os.path.getsize(gz_out)


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
    tar.addfile(info)


def index_names(name: str, desc: dict, tag: str = "lab") -> list:
    """The manifest's two entries in index.json: its tag, and its digest reference."""
    return [
        # The tag, for people (`ctr images ls`), and for CloudNativePG, which reads PostgreSQL's
        # major version from the tag of a `name:tag@digest` reference.
        {**desc, "annotations": {"io.containerd.image.name": f"{REGISTRY}/{name}:{tag}", "org.opencontainers.image.ref.name": tag}},
        # The digest reference pods use: the CRI resolves a reference only through an
        # image record of exactly that name, so the import creates it from here too,
        # whatever --base-name the importer gives. (index.json is outside the manifest:
        # naming the manifest's own digest here changes nothing in it.)
        {**desc, "annotations": {"io.containerd.image.name": f"{REGISTRY}/{name}@{desc['digest']}"}},
    ]


def start_layout(tar: tarfile.TarFile, index: bytes) -> None:
    """An OCI layout's fixed head: oci-layout, index.json and the blobs folders."""
    add_bytes(tar, "oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    add_bytes(tar, "index.json", index)
    add_dir(tar, "blobs")
    add_dir(tar, "blobs/sha256")


def write_image(name: str, layers: list[str], config_path: str, out: str, tag: str = "lab") -> str:
    with open(config_path) as f:
        runtime = json.load(f)
    allowed = {"Entrypoint", "Cmd", "User", "Env", "WorkingDir", "ExposedPorts", "Labels", "StopSignal", "Volumes"}
    unknown = set(runtime) - allowed
    if unknown:
        die(f"{config_path}: unknown config keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(out))) as tmp:
        blobs = []  # (digest, path)
        layer_descs, diff_ids = [], []
        for i, layer in enumerate(layers):
            gz = os.path.join(tmp, f"layer{i}.tar.gz")
            diff_id, digest, raw_size, gz_size = hash_and_gzip(layer, gz)
            diff_ids.append(diff_id)
            layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": gz_size})
            blobs.append((digest, gz))
            print(f"oci.py: {name}: layer {i}: {raw_size} bytes, {gz_size} gzipped", file=sys.stderr)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH))
        config = canonical_json({
            "architecture": "amd64",
            "os": "linux",
            "created": created,
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": created, "created_by": "nublar scripts/images/build"} for _ in layers],
        })
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest = canonical_json({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
            "layers": layer_descs,
        })
        manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": len(manifest),
                "platform": {"architecture": "amd64", "os": "linux"}}
        index = canonical_json({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": index_names(name, desc, tag),
        })
        partial = out + ".partial"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            start_layout(tar, index)
            entries = [(config_digest, None, config), (manifest_digest, None, manifest)] + [(d, p, None) for d, p in blobs]
            for digest, path, data in sorted(entries, key=lambda e: e[0]):
                blob_name = "blobs/sha256/" + digest.split(":", 1)[1]
                if data is not None:
                    add_bytes(tar, blob_name, data)
                else:
                    info = tarfile.TarInfo(blob_name)
                    info.size, info.mode, info.mtime = os.path.getsize(path), 0o644, 0
                    with open(path, "rb") as f:
                        tar.addfile(info, f)
        os.replace(partial, out)
    return manifest_digest


def relabel(src: str, out: str, label: str) -> str:
    """The same image under a new digest: `label` (key=value) added to its config's Labels, the
    layers untouched. What a rebuilt image is to Kubernetes (test/engine/kube.test.ts's rollout)."""
    key, sep, value = label.partition("=")
    if not sep or not key:
        die(f"relabel: '{label}' is not key=value")
    with tarfile.open(src) as tar:
        blobs = {m.name: m for m in tar.getmembers() if m.name.startswith("blobs/sha256/")}
        def blob(digest: str) -> bytes:
            member = blobs.get("blobs/sha256/" + digest.split(":", 1)[1])
            if member is None:
                die(f"relabel: {src} has no blob {digest}")
            return tar.extractfile(member).read()
        index = json.loads(tar.extractfile("index.json").read())
        manifest_desc = index["manifests"][0]
        name = manifest_desc["annotations"]["io.containerd.image.name"].split("/", 1)[1].split(":")[0].split("@")[0]
        manifest = json.loads(blob(manifest_desc["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        config.setdefault("config", {}).setdefault("Labels", {})[key] = value
        config_bytes = canonical_json(config)
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        manifest["config"] = {**manifest["config"], "digest": config_digest, "size": len(config_bytes)}
        manifest_bytes = canonical_json(manifest)
        manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        desc = {"mediaType": manifest_desc["mediaType"], "digest": manifest_digest, "size": len(manifest_bytes)}
        tag = manifest_desc["annotations"].get("org.opencontainers.image.ref.name", "lab")
        new_index = canonical_json({**index, "manifests": index_names(name, desc, tag)})
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        partial = out + ".partial"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as new:
            start_layout(new, new_index)
            add_bytes(new, "blobs/sha256/" + config_digest.split(":", 1)[1], config_bytes)
            add_bytes(new, "blobs/sha256/" + manifest_digest.split(":", 1)[1], manifest_bytes)
            for layer in manifest["layers"]:
                member = blobs["blobs/sha256/" + layer["digest"].split(":", 1)[1]]
                new.addfile(member, tar.extractfile(member))
        os.replace(partial, out)
    return f"{REGISTRY}/{name}@{manifest_digest}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("layer")
    lp.add_argument("src")
    lp.add_argument("out")
    ip = sub.add_parser("image")
    ip.add_argument("--name", required=True, help="the image's name under nublar.local/")
    ip.add_argument("--layer", action="append", required=True, help="an uncompressed layer tar, bottom first")
    ip.add_argument("--config", required=True, help="JSON: Entrypoint, Cmd, User, Env, WorkingDir, ExposedPorts")
    ip.add_argument("--out", required=True)
    ip.add_argument("--tag", default="lab", help="the image's tag (default lab)")
    rp = sub.add_parser("relabel", help="the same image under a new digest: a label added to its config; prints its reference")
    rp.add_argument("src")
    rp.add_argument("out")
    rp.add_argument("label", help="key=value")
    args = ap.parse_args()
    if args.cmd == "relabel":
        print(relabel(args.src, args.out, args.label))
    elif args.cmd == "layer":
        make_layer(args.src, args.out)
    else:
        for layer in args.layer:
            if not os.path.isfile(layer):
                die(f"layer {layer} does not exist")
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", args.tag):
            die(f"--tag {args.tag!r} is not a valid tag (letters, digits, _ . -; 128 at most)")
        print(write_image(args.name, args.layer, args.config, args.out, args.tag))


if __name__ == "__main__":
    main()
