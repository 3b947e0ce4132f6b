#!/usr/bin/env python3
"""Write one single-layer OCI image archive (what `ctr images import` reads), reproducibly.

Used by docker/build-images.sh; Python's standard library only. The archive holds
`oci-layout`, `index.json` and `blobs/sha256/` with one gzip'ed layer, the config and
the manifest. Same inputs, same bytes: tar entries sorted, every mtime SOURCE_DATE_EPOCH
(default 0), numeric owners with no user/group names, gzip without a name or time, and
the config's `created` is SOURCE_DATE_EPOCH too.

The image config comes from the final stage of a Dockerfile (--dockerfile): ENV, USER,
EXPOSE, ENTRYPOINT, CMD, WORKDIR and LABEL, with ARG defaults (or --build-arg)
substituted, on top of the base BuildKit gives `FROM scratch` (WorkingDir "/", PATH).
So the Dockerfile stays the one source of truth for the config; testkit/tests/images.rs
checks the result against its own parse of the Dockerfile. Images without a Dockerfile
(pause, caller) give the same fields as options. The layer's files are always options
(a Dockerfile's rootfs stage is shell on Alpine, which this does not run):

  --dir  PATH:MODE:UID:GID          e.g. tmp:1777:0:0
  --file SRC:PATH:MODE:UID:GID      e.g. out/latchkey:usr/local/bin/latchkey:0755:0:0
  --symlink TARGET:PATH             e.g. busybox:bin/sh

Missing parent directories are added as 0755 root:root. Prints `NAME DIGEST` (the
manifest digest, which is what `ctr images ls` shows) on stdout.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import sys
import tarfile
import time

# BuildKit's `FROM scratch` (dockerfile2llb emptyImage): WorkingDir "/" and this PATH.
SCRATCH_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def die(msg):
    print(f"oci-image.py: ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


# === Dockerfile: the final stage's config ===


def logical_lines(text):
    """Instructions with continuations joined and comment lines dropped (also inside a
    continuation, as BuildKit does)."""
    out, cur = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not cur):
            continue
        if stripped.endswith("\\"):
            cur += stripped[:-1] + " "
            continue
        cur += stripped
        if cur.strip():
            out.append(cur.strip())
        cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def substitute(value, variables):
    def repl(m):
        name = m.group(1) or m.group(2)
        return variables.get(name, "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", repl, value)


def key_values(rest, variables, what):
    """`K=V K2="V 2"` (or the legacy `K V`) of ENV/LABEL, in order."""
    words = shlex.split(rest)
    if words and "=" not in words[0]:
        return [(words[0], substitute(rest.split(None, 1)[1], variables))]
    pairs = []
    for word in words:
        if "=" not in word:
            die(f"{what}: cannot parse {word!r}")
        k, v = word.split("=", 1)
        pairs.append((k, substitute(v, variables)))
    return pairs


def exec_form(rest, what):
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        die(f"{what} {rest!r} is not exec form (a JSON array): a scratch image has no shell")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        die(f"{what} {rest!r} is not a JSON array of strings")
    return value


def dockerfile_config(path, build_args):
    """The config of the last stage: what `docker build` writes, for a FROM scratch stage."""
    global_args, stage = {}, None
    for line in logical_lines(open(path, encoding="utf-8").read()):
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            stage = {"base": rest.split()[0], "args": {}, "env": [SCRATCH_PATH], "labels": {},
                     "workdir": "/", "user": None, "ports": [], "entrypoint": None, "cmd": None}
            continue
        if word == "ARG":
            name, eq, default = rest.partition("=")
            default = shlex.split(default)[0] if eq and default else ""
            if stage is None:
                global_args[name] = build_args.get(name, default)
            else:
                stage["args"][name] = build_args.get(name, default if eq else global_args.get(name, ""))
            continue
        if stage is None:
            continue
        variables = dict(stage["args"])
        variables.update(e.split("=", 1) for e in stage["env"])
        if word == "ENV":
            for k, v in key_values(rest, variables, "ENV"):
                stage["env"] = [e for e in stage["env"] if not e.startswith(k + "=")] + [f"{k}={v}"]
        elif word == "LABEL":
            stage["labels"].update(key_values(rest, variables, "LABEL"))
        elif word == "USER":
            stage["user"] = substitute(rest, variables)
        elif word == "EXPOSE":
            for port in substitute(rest, variables).split():
                stage["ports"].append(port if "/" in port else port + "/tcp")
        elif word == "WORKDIR":
            stage["workdir"] = os.path.join(stage["workdir"], substitute(rest, variables))
        elif word == "ENTRYPOINT":
            stage["entrypoint"] = exec_form(rest, "ENTRYPOINT")
            stage["cmd"] = None  # ENTRYPOINT resets an inherited CMD
        elif word == "CMD":
            stage["cmd"] = exec_form(rest, "CMD")
        elif word in ("COPY", "ADD", "RUN"):
            pass  # files: the layer options; RUN runs in the build stages only
        else:
            # SHELL, HEALTHCHECK, STOPSIGNAL, VOLUME, ... would change the config: refuse
            # rather than write an image that differs from `docker build`.
            stage["unsupported"] = stage.get("unsupported", []) + [word]
    if stage is None or stage["base"] != "scratch":
        die(f"{path}: the final stage must be FROM scratch")
    if stage.get("unsupported"):
        die(f"{path}: the final stage has {', '.join(stage['unsupported'])}, which oci-image.py does not write")
    config = {"Env": stage["env"], "WorkingDir": stage["workdir"]}
    if stage["user"]:
        config["User"] = stage["user"]
    if stage["ports"]:
        config["ExposedPorts"] = {p: {} for p in stage["ports"]}
    if stage["entrypoint"] is not None:
        config["Entrypoint"] = stage["entrypoint"]
    if stage["cmd"] is not None:
        config["Cmd"] = stage["cmd"]
    if stage["labels"]:
        config["Labels"] = stage["labels"]
    return config


# === The layer ===


def split_spec(spec, n, what):
    parts = spec.split(":")
    if len(parts) != n:
        die(f"--{what} {spec!r}: expected {n} fields separated by ':'")
    return parts


def layer_entries(args):
    entries = {}  # path -> TarInfo (+ data)

    def add(info, data=None):
        path = info.name.strip("/")
        if path in entries:
            die(f"{path} given twice")
        info.name = path
        entries[path] = (info, data)

    for spec in args.dir:
        path, mode, uid, gid = split_spec(spec, 4, "dir")
        info = tarfile.TarInfo(path)
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, int(mode, 8), int(uid), int(gid)
        add(info)
    for spec in args.file:
        src, path, mode, uid, gid = split_spec(spec, 5, "file")
        data = open(src, "rb").read()
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.uid, info.gid = len(data), int(mode, 8), int(uid), int(gid)
        add(info, data)
    for spec in args.symlink:
        target, path = split_spec(spec, 2, "symlink")
        info = tarfile.TarInfo(path)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        add(info)
    for path in list(entries):
        parent = os.path.dirname(path)
        while parent and parent not in entries:
            info = tarfile.TarInfo(parent)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            entries[parent] = (info, None)
            parent = os.path.dirname(parent)
    return entries


def write_tar(entries, mtime):
    """Entries sorted by path (a parent sorts before its children)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in sorted(entries):
            info, data = entries[path]
            info.mtime, info.uname, info.gname = mtime, "", ""
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def blob(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the .oci.tar to write")
    p.add_argument("--name", required=True, help="fully qualified reference, e.g. docker.io/library/latchkey:dev")
    p.add_argument("--dockerfile", help="take the config from this Dockerfile's final stage")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    p.add_argument("--entrypoint", help="JSON array (without --dockerfile)")
    p.add_argument("--cmd", help="JSON array (without --dockerfile)")
    p.add_argument("--user", help="(without --dockerfile)")
    p.add_argument("--env", action="append", default=[], metavar="K=V", help="(without --dockerfile); replaces the scratch PATH if K is PATH")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="(without --dockerfile)")
    p.add_argument("--dir", action="append", default=[])
    p.add_argument("--file", action="append", default=[])
    p.add_argument("--symlink", action="append", default=[])
    args = p.parse_args()

    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    if args.dockerfile:
        if args.entrypoint or args.cmd or args.user or args.env or args.label:
            die("--dockerfile gives the config: no --entrypoint/--cmd/--user/--env/--label with it")
        config = dockerfile_config(args.dockerfile, dict(a.split("=", 1) for a in args.build_arg))
    else:
        env = [SCRATCH_PATH]
        for e in args.env:
            env = [x for x in env if x.split("=", 1)[0] != e.split("=", 1)[0]] + [e]
        config = {"Env": env, "WorkingDir": "/"}
        if args.user:
            config["User"] = args.user
        if args.entrypoint:
            config["Entrypoint"] = json.loads(args.entrypoint)
        if args.cmd:
            config["Cmd"] = json.loads(args.cmd)
        if args.label:
            config["Labels"] = dict(label.split("=", 1) for label in args.label)

    layer_tar = write_tar(layer_entries(args), mtime)
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=9) as f:
        f.write(layer_tar)
    layer_gz = gz.getvalue()

    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
    image_config = blob({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
        "history": [{"created": created, "created_by": "docker/build-images.sh"}],
    })
    manifest = blob({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": digest(image_config), "size": len(image_config)},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": digest(layer_gz), "size": len(layer_gz)}],
    })
    # containerd 1.6.20's `ctr images import` names the image after the index entry's
    # io.containerd.image.name annotation, else its org.opencontainers.image.ref.name
    # (a full reference is taken as it is): both measured. Both are set, with the same
    # fully qualified name; other OCI tools read the second.
    index = blob({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": digest(manifest),
            "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "io.containerd.image.name": args.name,
                "org.opencontainers.image.ref.name": args.name,
            },
        }],
    })

    files = {
        "oci-layout": blob({"imageLayoutVersion": "1.0.0"}),
        "index.json": index,
    }
    for data in (layer_gz, image_config, manifest):
        files["blobs/sha256/" + digest(data).split(":", 1)[1]] = data
    entries = {}
    for d in ("blobs", "blobs/sha256"):
        info = tarfile.TarInfo(d)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        entries[d] = (info, None)
    for path, data in files.items():
        info = tarfile.TarInfo(path)
        info.size, info.mode = len(data), 0o644
        entries[path] = (info, data)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(write_tar(entries, mtime))
    os.replace(tmp, args.out)
    print(args.name, digest(manifest))


if __name__ == "__main__":
    main()
