//! The OCI image archives of `docker/build-images.sh` against the Dockerfiles.
//!
//! The script reads each image's config from its Dockerfile's final stage
//! (docker/oci-image.py); this test parses the same Dockerfiles on its own and fails
//! when the archive disagrees on ENTRYPOINT, CMD, USER, ENV, EXPOSE, WORKDIR or LABEL
//! (so a parser slip, a stale archive or a Dockerfile the writer misreads is caught),
//! and checks what a Dockerfile cannot say about the archive: the binary is at the
//! entrypoint, static (docker/assert-static.sh) and runs, the service answers
//! `/health` from the unpacked layer, `/etc/passwd` and `/etc/group` are the
//! Dockerfile's lines, and the files the config names exist with the right owners.
//!
//! The archives come from [`IMAGES_DIR_ENV`], which `./test.sh` sets from the script's
//! output (cached: ~0 s when nothing changed). Without it every test here fails: it
//! never skips. Needs `tar`, `sha256sum`, `readelf` and `file` on PATH.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The directory of `images.txt` and the `*.oci.tar` archives.
const IMAGES_DIR_ENV: &str = "LATCHKEY_TEST_IMAGES_DIR";

/// What BuildKit puts in a `FROM scratch` image before the Dockerfile's own ENV.
const SCRATCH_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the workspace")
        .to_path_buf()
}

// === The Dockerfile side ===

/// The config fields of a Dockerfile's final stage, as `docker build` writes them.
#[derive(Debug, Clone, PartialEq, Default)]
struct Expected {
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    user: Option<String>,
    env: Vec<(String, String)>,
    ports: Vec<String>,
    workdir: String,
    labels: BTreeMap<String, String>,
}

/// Instructions with `\` continuations joined; comment and blank lines dropped.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let joined = std::mem::take(&mut current);
                let joined = joined.trim();
                if !joined.is_empty() {
                    let (word, rest) = joined.split_once(' ').unwrap_or((joined, ""));
                    out.push((word.to_ascii_uppercase(), rest.trim().to_string()));
                }
            }
        }
    }
    out
}

/// Shell-like words: double/single quotes group and are removed, `\"` escapes.
fn words(s: &str) -> Vec<String> {
    let (mut out, mut word, mut quote, mut in_word) = (Vec::new(), String::new(), None, false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => (quote, in_word) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// `${NAME}` and `$NAME` from `vars`; unknown names become empty, as in Docker.
fn substitute(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').expect("closed ${");
            (&inner[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        out.push_str(vars.get(name).map_or("", String::as_str));
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

fn pairs(rest: &str, vars: &BTreeMap<String, String>) -> Vec<(String, String)> {
    words(rest)
        .into_iter()
        .map(|w| {
            let (k, v) = w.split_once('=').expect("ENV/LABEL in KEY=VALUE form");
            (k.to_string(), substitute(v, vars))
        })
        .collect()
}

fn json_array(rest: &str) -> Vec<String> {
    serde_json::from_str(rest).unwrap_or_else(|e| panic!("exec form expected, got {rest}: {e}"))
}

/// The final stage of `text`, with ARG defaults overridden by `build_args`.
fn parse_dockerfile(text: &str, build_args: &[(&str, &str)]) -> Expected {
    let arg = |name: &str, default: &str| {
        build_args
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(default.to_string(), |(_, v)| v.to_string())
    };
    let mut stage: Option<(Expected, BTreeMap<String, String>)> = None;
    for (word, rest) in instructions(text) {
        if word == "FROM" {
            let base = Expected {
                workdir: "/".into(),
                env: vec![split_env(SCRATCH_PATH)],
                ..Expected::default()
            };
            stage = Some((base, BTreeMap::new()));
            continue;
        }
        let Some((cfg, args)) = stage.as_mut() else {
            continue; // global ARGs: the final stage re-declares what it uses
        };
        let mut vars = args.clone();
        vars.extend(cfg.env.iter().cloned());
        match word.as_str() {
            "ARG" => {
                let (name, default) = rest.split_once('=').unwrap_or((&rest, ""));
                let default = words(default).into_iter().next().unwrap_or_default();
                args.insert(name.to_string(), arg(name, &default));
            }
            "ENV" => {
                for (k, v) in pairs(&rest, &vars) {
                    cfg.env.retain(|(name, _)| *name != k);
                    cfg.env.push((k, v));
                }
            }
            "LABEL" => cfg.labels.extend(pairs(&rest, &vars)),
            "USER" => cfg.user = Some(substitute(&rest, &vars)),
            "EXPOSE" => cfg
                .ports
                .extend(substitute(&rest, &vars).split_whitespace().map(|p| {
                    if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    }
                })),
            "WORKDIR" => cfg.workdir = substitute(&rest, &vars),
            "ENTRYPOINT" => (cfg.entrypoint, cfg.cmd) = (Some(json_array(&rest)), None),
            "CMD" => cfg.cmd = Some(json_array(&rest)),
            _ => {}
        }
    }
    stage.expect("a FROM").0
}

fn split_env(e: &str) -> (String, String) {
    let (k, v) = e.split_once('=').expect("KEY=VALUE");
    (k.to_string(), v.to_string())
}

/// Every field where the archive's config differs from the Dockerfile's final stage.
fn disagreements(want: &Expected, config: &Value) -> Vec<String> {
    let c = &config["config"];
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or("?").to_string())
                .collect()
        })
    };
    let mut out = Vec::new();
    let mut check = |field: &str, want: String, got: String| {
        if want != got {
            out.push(format!("{field}: Dockerfile {want}, archive {got}"));
        }
    };
    check(
        "ENTRYPOINT",
        format!("{:?}", want.entrypoint),
        format!("{:?}", strings(&c["Entrypoint"])),
    );
    check(
        "CMD",
        format!("{:?}", want.cmd),
        format!("{:?}", strings(&c["Cmd"])),
    );
    check(
        "USER",
        format!("{:?}", want.user),
        format!("{:?}", c["User"].as_str()),
    );
    let env: Vec<String> = want.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    check(
        "ENV",
        format!("{env:?}"),
        format!("{:?}", strings(&c["Env"]).unwrap_or_default()),
    );
    let ports: Vec<String> = c["ExposedPorts"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let mut want_ports = want.ports.clone();
    want_ports.sort();
    check("EXPOSE", format!("{want_ports:?}"), format!("{ports:?}"));
    check(
        "WORKDIR",
        want.workdir.clone(),
        c["WorkingDir"].as_str().unwrap_or("").to_string(),
    );
    let labels: BTreeMap<String, String> = c["Labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("?").to_string()))
                .collect()
        })
        .unwrap_or_default();
    check("LABEL", format!("{:?}", want.labels), format!("{labels:?}"));
    out
}

// === The archive side ===

/// One unpacked archive: its config, its layer's listing and the layer unpacked.
struct Archive {
    name: String,
    config: Value,
    /// path (no leading `/`) -> `tar -tv` mode string and `uid/gid`.
    entries: BTreeMap<String, (String, String)>,
    rootfs: PathBuf,
    _dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    format!(
        "sha256:{}",
        out.split_whitespace().next().expect("a digest")
    )
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    let path = dir
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    assert_eq!(
        sha256(&path),
        digest,
        "blob {} has its digest",
        path.display()
    );
    path
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Unpacks the archive of `image` (e.g. "latchkey") listed in the images dir.
fn archive(image: &str) -> Archive {
    let dir = std::env::var_os(IMAGES_DIR_ENV).unwrap_or_else(|| {
        panic!(
            "{IMAGES_DIR_ENV} is not set: run ./test.sh, or export {IMAGES_DIR_ENV}=\"$(dirname \
             \"$(docker/build-images.sh | tail -1 | cut -d' ' -f3)\")\""
        )
    });
    let list = PathBuf::from(dir).join("images.txt");
    let list = std::fs::read_to_string(&list).unwrap_or_else(|e| panic!("{}: {e}", list.display()));
    let (name, digest, path) = list
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            Some((f.next()?, f.next()?, f.next()?))
        })
        .find(|(name, _, _)| {
            name.rsplit('/').next().and_then(|n| n.split(':').next()) == Some(image)
        })
        .unwrap_or_else(|| panic!("no {image} in images.txt:\n{list}"));

    let tmp = tempfile::tempdir().expect("temp dir");
    let oci = tmp.path().join("oci");
    std::fs::create_dir(&oci).expect("mkdir");
    run(Command::new("tar").arg("-xf").arg(path).arg("-C").arg(&oci));
    assert_eq!(
        read_json(&oci.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = read_json(&oci.join("index.json"));
    let [entry] = index["manifests"].as_array().expect("manifests").as_slice() else {
        panic!("one manifest in index.json: {index}");
    };
    assert_eq!(
        entry["digest"], digest,
        "images.txt names the manifest digest"
    );
    for key in [
        "io.containerd.image.name",
        "org.opencontainers.image.ref.name",
    ] {
        assert_eq!(
            entry["annotations"][key], name,
            "{key} (ctr 1.6 names the image from it)"
        );
    }
    let manifest = read_json(&blob(&oci, digest));
    let config = read_json(&blob(
        &oci,
        manifest["config"]["digest"].as_str().expect("config"),
    ));
    let [layer] = manifest["layers"].as_array().expect("layers").as_slice() else {
        panic!("one layer: {manifest}");
    };
    let layer = blob(&oci, layer["digest"].as_str().expect("layer digest"));

    let listing = run(Command::new("tar")
        .args(["-tvzf"])
        .arg(&layer)
        .arg("--numeric-owner"));
    let entries = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5].trim_end_matches('/').to_string();
            (path, (f[0].to_string(), f[1].to_string()))
        })
        .collect();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("mkdir");
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs)
        .arg("--no-same-owner"));
    Archive {
        name: name.to_string(),
        config,
        entries,
        rootfs,
        _dir: tmp,
    }
}

impl Archive {
    fn env(&self, key: &str) -> Option<String> {
        self.config["config"]["Env"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .find_map(|e| e.strip_prefix(&format!("{key}=")).map(str::to_string))
    }

    #[track_caller]
    fn entry(&self, path: &str) -> (String, String) {
        let path = path.trim_start_matches('/');
        self.entries
            .get(path)
            .cloned()
            .unwrap_or_else(|| panic!("{}: no {path} in the layer", self.name))
    }

    fn file(&self, path: &str) -> PathBuf {
        self.rootfs.join(path.trim_start_matches('/'))
    }

    fn user(&self) -> (String, String) {
        let user = self.config["config"]["User"].as_str().expect("a USER");
        let (uid, gid) = user.split_once(':').expect("USER uid:gid");
        (uid.to_string(), gid.to_string())
    }

    /// The static binary the entrypoint (or the first CMD word) names.
    fn binary(&self, path: &str) -> PathBuf {
        let (mode, owner) = self.entry(path);
        assert_eq!(
            (mode.as_str(), owner.as_str()),
            ("-rwxr-xr-x", "0/0"),
            "{path}"
        );
        let bin = self.file(path);
        run(Command::new("sh")
            .arg(repo_root().join("docker/assert-static.sh"))
            .arg(&bin));
        bin
    }
}

fn dockerfile(image: &str) -> String {
    let path = repo_root().join(format!("docker/{image}.Dockerfile"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tag of `name` is what build-images.sh passed as the VERSION build-arg.
fn expected(image: &str, archive: &Archive) -> Expected {
    let tag = archive.name.rsplit(':').next().expect("a tag");
    parse_dockerfile(&dockerfile(image), &[("VERSION", tag)])
}

/// What both Rust images hold besides their config.
fn check_rootfs(image: &str, a: &Archive) {
    let text = dockerfile(image);
    for file in ["/etc/passwd", "/etc/group"] {
        assert_eq!(a.entry(file), ("-rw-r--r--".into(), "0/0".into()), "{file}");
        let content = std::fs::read_to_string(a.file(file)).expect(file);
        for line in content.lines() {
            assert!(
                text.contains(&format!("'{line}'")),
                "{image}: {file} line {line:?} is not in the Dockerfile"
            );
        }
    }
    let (uid, gid) = a.user();
    let passwd = std::fs::read_to_string(a.file("/etc/passwd")).expect("passwd");
    assert!(
        passwd.lines().any(|l| l.split(':').nth(2) == Some(&uid)),
        "USER {uid} has a passwd entry"
    );
    let group = std::fs::read_to_string(a.file("/etc/group")).expect("group");
    assert!(
        group.lines().any(|l| l.split(':').nth(2) == Some(&gid)),
        "group {gid} exists"
    );
    assert_eq!(a.entry("/tmp").0, "drwxrwxrwt", "/tmp is 1777");
    let ca = a.env("SSL_CERT_FILE").expect("SSL_CERT_FILE");
    let bundle = std::fs::read_to_string(a.file(&ca)).expect("CA bundle");
    assert!(
        bundle.matches("BEGIN CERTIFICATE").count() > 100,
        "{ca} is a CA bundle"
    );
    if let Some(data) = a.env("LATCHKEY_DATA_DIR") {
        assert_eq!(
            a.entry(&data),
            ("drwx------".into(), format!("{uid}/{gid}")),
            "{data}"
        );
    }
}

fn assert_agrees(image: &str) -> Archive {
    let a = archive(image);
    let problems = disagreements(&expected(image, &a), &a.config);
    assert!(
        problems.is_empty(),
        "{image}: archive and Dockerfile disagree:\n{}",
        problems.join("\n")
    );
    check_rootfs(image, &a);
    a
}

fn entrypoint(a: &Archive) -> String {
    a.config["config"]["Entrypoint"][0]
        .as_str()
        .expect("an ENTRYPOINT")
        .to_string()
}

fn version_of(bin: &Path) -> String {
    run(Command::new(bin).arg("--version"))
}

// === Tests ===

#[test]
fn service_archive_agrees_with_its_dockerfile_and_serves() {
    let a = assert_agrees("latchkey");
    let bin = a.binary(&entrypoint(&a));
    assert!(version_of(&bin).contains(env!("CARGO_PKG_VERSION")));

    // The binary from the layer, on the image's env, with a free port and a fresh data
    // directory (the image's /var/lib/latchkey is in the temp rootfs).
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let data = tempfile::tempdir().expect("data dir");
    let mut cmd = Command::new(&bin);
    cmd.env_clear()
        .current_dir(&a.rootfs)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for e in a.config["config"]["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(Value::as_str)
    {
        let (k, v) = e.split_once('=').expect("KEY=VALUE");
        cmd.env(k, v);
    }
    cmd.env(
        "SSL_CERT_FILE",
        a.file("/etc/ssl/certs/ca-certificates.crt"),
    )
    .env("LATCHKEY_LISTEN", format!("127.0.0.1:{port}"))
    .env("LATCHKEY_DATA_DIR", data.path());
    let mut child = cmd.spawn().expect("the service starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            child
                .stderr
                .take()
                .expect("stderr")
                .read_to_string(&mut err)
                .ok();
            panic!("the service exited with {status}: {err}");
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .expect("write");
            let mut answer = String::new();
            s.read_to_string(&mut answer).expect("read");
            break answer;
        }
        assert!(Instant::now() < deadline, "no /health within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().ok();
    child.wait().ok();
    assert!(
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
        "{answer}"
    );
}

#[test]
fn operator_archive_agrees_with_its_dockerfile() {
    let a = assert_agrees("latchkey-operator");
    let bin = a.binary(&entrypoint(&a));
    assert!(version_of(&bin).contains(env!("CARGO_PKG_VERSION")));
}

/// The comparison is not vacuous: one changed line of the Dockerfile (each field the
/// spec names) against the real archive is a disagreement on that field.
#[test]
fn a_changed_dockerfile_line_is_a_disagreement() {
    let a = archive("latchkey");
    let text = dockerfile("latchkey");
    let tag = a.name.rsplit(':').next().expect("tag").to_string();
    let edits = [
        (
            "ENTRYPOINT",
            "ENTRYPOINT [\"/usr/local/bin/latchkey\"]",
            "ENTRYPOINT [\"/latchkey\"]",
        ),
        ("USER", "USER 65532:65532", "USER 0:0"),
        (
            "ENV",
            "LATCHKEY_LISTEN=0.0.0.0:8080",
            "LATCHKEY_LISTEN=0.0.0.0:9090",
        ),
        ("EXPOSE", "EXPOSE 8080", "EXPOSE 9090"),
    ];
    for (field, from, to) in edits {
        assert!(
            text.contains(from),
            "the Dockerfile has {from:?}: update this test"
        );
        let changed = parse_dockerfile(&text.replace(from, to), &[("VERSION", &tag)]);
        let problems = disagreements(&changed, &a.config);
        assert!(
            problems.iter().any(|p| p.starts_with(field)),
            "{field}: changing {from:?} to {to:?} went unnoticed: {problems:?}"
        );
    }
}

#[test]
fn pause_archive_runs_and_stops_on_sigterm() {
    let a = archive("latchkey-pause");
    assert_eq!(a.config["config"]["User"], "65535:65535");
    let bin = a.binary(&entrypoint(&a));
    let mut child = Command::new(&bin).spawn().expect("pause starts");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "pause keeps running"
    );
    run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let status = child.wait().expect("wait");
    assert!(status.success(), "pause exits 0 on SIGTERM: {status}");
}

#[test]
fn caller_archive_has_a_shell_and_wget_as_nonroot() {
    let a = archive("latchkey-caller");
    assert_eq!(
        a.config["config"]["User"], "65532:65532",
        "restricted Pod Security Standard"
    );
    assert_eq!(a.config["config"]["Cmd"][0], "/bin/sh");
    assert_eq!(a.env("PATH").as_deref(), Some("/bin"));
    let busybox = a.binary("/bin/busybox");
    for applet in ["sh", "wget", "cat", "sleep"] {
        assert_eq!(
            a.entry(&format!("/bin/{applet}")).0,
            "lrwxrwxrwx",
            "/bin/{applet} is a link"
        );
        let target = std::fs::read_link(a.file(&format!("/bin/{applet}"))).expect("link");
        assert_eq!(target, Path::new("busybox"), "/bin/{applet}");
    }
    let help = Command::new(&busybox)
        .args(["wget", "--help"])
        .output()
        .expect("busybox runs");
    let help = String::from_utf8_lossy(&help.stderr);
    assert!(
        help.contains("--post-data") && help.contains("--header"),
        "{help}"
    );
    let out = run(Command::new(a.file("/bin/sh")).args(["-c", "echo ok | cat"]));
    assert_eq!(out, "ok\n");
}

/// The parser follows Docker on the forms the Dockerfiles use.
#[test]
fn dockerfile_parser_reads_the_final_stage() {
    let text = "ARG V=1\nFROM alpine AS b\nENV X=build\nUSER 1\nFROM scratch\nARG V=2\n\
                # comment\nLABEL a=\"x ${V}\" \\\n    # inside\n    b=y\nENV A=1 \\\n    B=\"two words\"\n\
                USER 65532:65532\nEXPOSE 8080 53/udp\nCMD [\"c\"]\nENTRYPOINT [\"/e\", \"-x\"]\n";
    let got = parse_dockerfile(text, &[("V", "3")]);
    assert_eq!(got.entrypoint, Some(vec!["/e".into(), "-x".into()]));
    assert_eq!(got.cmd, None, "ENTRYPOINT resets CMD");
    assert_eq!(got.user.as_deref(), Some("65532:65532"));
    assert_eq!(
        got.env[1..],
        [("A".into(), "1".into()), ("B".into(), "two words".into())]
    );
    assert_eq!(got.ports, ["8080/tcp", "53/udp"]);
    assert_eq!(got.labels["a"], "x 3");
    assert_eq!(got.labels["b"], "y");
}
