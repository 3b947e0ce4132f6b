//! The Helm chart (`charts/latchkey`) against the real `helm` CLI (tests/helm/build.sh)
//! and a real kube-apiserver + etcd: lint, server-side dry runs under the `restricted`
//! Pod Security Standard (also with the real ServiceMonitor CRD), a real `helm install`
//! checked object by object (RBAC also through the API server's SubjectAccessReview), bad
//! values rejected with the message a user reads, and the real operator binary doing its
//! job with the installed Deployment's settings and nothing but the chart's RBAC (this one
//! needs PostgreSQL: LATCHKEY_TEST_DATABASE_URL, as the other operator tests).
//!
//! No Pod ever runs (the control plane has no kubelet, scheduler or controller-manager), so
//! out of reach here: images starting, probes answering inside a pod, the migration init
//! container running, the signing-key Secret reaching the service through the kubelet,
//! NetworkPolicy enforcement (needs a CNI), HPA scaling and PDB-guarded evictions.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::Api;
use kube::api::{ListParams, PostParams};
use latchkey_crds::SigningKey;
use latchkey_testkit::{ControlPlane, helm_bin_dir, helm_path};
use serde_json::{Value, json};

const RELEASE: &str = "latchkey";
const NS: &str = "latchkey";
/// The operator's Deployment, ServiceAccount, ClusterRole(Binding) and Lease.
const OPERATOR: &str = "latchkey-operator";
/// The service's Deployment, Service, ServiceAccount, HPA and PDB.
const SERVICE: &str = "latchkey";

fn chart_dir() -> PathBuf {
    common::repo_root().join("charts/latchkey")
}

fn chart() -> String {
    chart_dir().display().to_string()
}

/// Every `ci/*.yaml` values file of the chart, sorted; there must be at least the
/// production one.
fn ci_values() -> Vec<PathBuf> {
    let dir = chart_dir().join("ci");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|p| p.ends_with("production-values.yaml")),
        "{} has no production-values.yaml: {files:?}",
        dir.display()
    );
    files
}

/// What a command printed and how it exited.
#[derive(Debug)]
struct Ran {
    command: String,
    success: bool,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Panics with the command and both streams unless it succeeded; returns stdout.
    #[track_caller]
    fn ok(self) -> String {
        assert!(
            self.success,
            "`{}` failed:\n--- stderr ---\n{}\n--- stdout (tail) ---\n{}",
            self.command,
            self.stderr,
            tail(&self.stdout, 40)
        );
        self.stdout
    }

    /// Panics unless the command failed; returns stderr.
    #[track_caller]
    fn fails(self) -> String {
        assert!(
            !self.success,
            "`{}` succeeded but should have failed:\n--- stderr ---\n{}\n--- stdout (tail) ---\n{}",
            self.command,
            self.stderr,
            tail(&self.stdout, 40)
        );
        self.stderr
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

async fn run(mut cmd: tokio::process::Command, shown: String) -> Ran {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running `{shown}`: {e}"));
    Ran {
        command: shown,
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A scratch directory for one test: Helm's homes, rendered manifests. Kept (and its
/// path printed) when the test fails, so the rendered manifests can be read.
struct Work {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    kubeconfig: Option<PathBuf>,
}

impl Drop for Work {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!(
                "chart test files (rendered manifests, helm homes) kept: {}",
                dir.keep().display()
            );
        }
    }
}

impl Work {
    fn new(plane: Option<&ControlPlane>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("latchkey-chart-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().to_owned();
        Self {
            dir: Some(dir),
            path,
            kubeconfig: plane.map(|p| p.kubeconfig().to_owned()),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `helm ARGS` with nothing from the caller's environment: Helm's cache, config and
    /// data homes in this directory, and the control plane's kubeconfig (or none).
    async fn helm(&self, args: &[&str]) -> Ran {
        let helm = helm_path().unwrap_or_else(|e| panic!("{e}"));
        let mut cmd = tokio::process::Command::new(&helm);
        cmd.args(args)
            .env_clear()
            .env("HOME", self.file("home"))
            .env("HELM_CACHE_HOME", self.file("helm/cache"))
            .env("HELM_CONFIG_HOME", self.file("helm/config"))
            .env("HELM_DATA_HOME", self.file("helm/data"))
            .env(
                "KUBECONFIG",
                self.kubeconfig
                    .clone()
                    .unwrap_or_else(|| self.file("no-cluster-kubeconfig")),
            );
        run(cmd, format!("helm {}", args.join(" "))).await
    }

    /// `helm template RELEASE charts/latchkey -n NS EXTRA`, written to `name`.
    async fn render(&self, name: &str, extra: &[&str]) -> PathBuf {
        let chart = chart();
        let mut args = vec!["template", RELEASE, &chart, "-n", NS];
        args.extend_from_slice(extra);
        let yaml = self.helm(&args).await.ok();
        assert!(
            yaml.contains("kind: Deployment"),
            "helm {} rendered no Deployment:\n{}",
            args.join(" "),
            tail(&yaml, 40)
        );
        let path = self.file(name);
        std::fs::write(&path, yaml).expect("write rendered manifest");
        path
    }
}

async fn kubectl(plane: &ControlPlane, args: &[&str]) -> Ran {
    let cmd = plane.kubectl_command().unwrap_or_else(|e| panic!("{e}"));
    let mut cmd = cmd;
    cmd.args(args);
    run(cmd, format!("kubectl {}", args.join(" "))).await
}

/// The failure message for a step on a rendered manifest: its path and last lines.
fn manifest_context(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    format!(
        "rendered manifest {} ({} lines), last lines:\n{}",
        path.display(),
        text.lines().count(),
        tail(&text, 30)
    )
}

async fn start_plane() -> (ControlPlane, kube::Client) {
    let plane = ControlPlane::start().await.expect("control plane starts");
    let client = plane.client().await.expect("client");
    (plane, client)
}

/// Namespace `latchkey` enforcing (and warning about) the `restricted` Pod Security
/// Standard.
async fn restricted_namespace(client: &kube::Client) {
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {
            "name": NS,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/warn-version": "latest",
            }
        }
    }))
    .expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace latchkey");
}

// ---------------------------------------------------------------------------------------
// 1. lint

/// `helm lint --strict` passes for the default values and every `ci/*.yaml`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lint_is_strict_clean() {
    let started = Instant::now();
    let work = Work::new(None);
    let chart = chart();
    let out = work.helm(&["lint", "--strict", &chart]).await.ok();
    assert!(out.contains("0 chart(s) failed"), "{out}");
    for values in ci_values() {
        let values = values.display().to_string();
        let out = work
            .helm(&["lint", "--strict", &chart, "-f", &values])
            .await
            .ok();
        assert!(out.contains("0 chart(s) failed"), "with {values}: {out}");
    }
    eprintln!("lint_is_strict_clean: {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 2. server-side dry run, restricted Pod Security

/// The rendered chart — default values and every `ci/*.yaml` — is accepted by a real API
/// server (`kubectl apply --dry-run=server`: OpenAPI schema, the CRDs' CEL rules on the
/// SigningKey, admission) in a namespace enforcing the `restricted` Pod Security
/// Standard, without a PodSecurity warning for the Deployments; and a bare Pod made from
/// each Deployment's template is admitted by PodSecurity's enforce mode, which rejects
/// violating Pods (it only warns for Deployments).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_pass_server_side_dry_run() {
    let started = Instant::now();
    let (plane, client) = start_plane().await;
    let work = Work::new(Some(&plane));
    plane
        .apply_crds(&chart_dir().join("crds"))
        .await
        .expect("the chart's CRDs install");
    restricted_namespace(&client).await;

    // PodSecurity admission is on (kube-apiserver enables it by default; testkit only
    // disables the ServiceAccount plugin): a root, privileged Pod is rejected here.
    let bad_pod = work.file("privileged-pod.json");
    std::fs::write(
        &bad_pod,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "privileged"},
            "spec": {"containers": [{
                "name": "c", "image": "busybox",
                "securityContext": {"privileged": true}
            }]}
        })
        .to_string(),
    )
    .expect("write pod");
    let rejected = kubectl(
        &plane,
        &[
            "create",
            "--dry-run=server",
            "-n",
            NS,
            "-f",
            &bad_pod.display().to_string(),
        ],
    )
    .await
    .fails();
    assert!(
        rejected.contains("violates PodSecurity \"restricted:latest\""),
        "a privileged Pod must be rejected by PodSecurity, got: {rejected}"
    );

    let mut cases: Vec<(String, Vec<String>)> = vec![("default values".into(), vec![])];
    for values in ci_values() {
        cases.push((
            values.display().to_string(),
            vec!["-f".into(), values.display().to_string()],
        ));
    }
    for (i, (case, extra)) in cases.iter().enumerate() {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let rendered = work.render(&format!("rendered-{i}.yaml"), &extra).await;
        let shown = rendered.display().to_string();
        let applied = kubectl(
            &plane,
            &[
                "apply",
                "--dry-run=server",
                "-n",
                NS,
                "-o",
                "json",
                "-f",
                &shown,
            ],
        )
        .await;
        assert!(
            applied.success,
            "{case}: server-side dry run rejected the chart:\n{}\n{}",
            applied.stderr,
            manifest_context(&rendered)
        );
        assert!(
            !applied.stderr.contains("would violate PodSecurity"),
            "{case}: a Deployment's pod template violates the restricted standard:\n{}\n{}",
            applied.stderr,
            manifest_context(&rendered)
        );
        let objects = items(&applied.stdout);
        let kinds: BTreeSet<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        for kind in [
            "Deployment",
            "Service",
            "ServiceAccount",
            "RoleBinding",
            "SigningKey",
            "NetworkPolicy",
            "PodDisruptionBudget",
        ] {
            assert!(
                kinds.contains(kind),
                "{case}: no {kind} rendered: {kinds:?}"
            );
        }

        // The real proof: Pods from the Deployments' templates under `enforce`.
        let deployments: Vec<&Value> = objects
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .collect();
        assert!(
            deployments.len() >= 2,
            "{case}: {} Deployments",
            deployments.len()
        );
        for deployment in deployments {
            let name = deployment["metadata"]["name"].as_str().expect("name");
            let template = &deployment["spec"]["template"];
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": format!("{name}-psa-check"),
                    "labels": template["metadata"]["labels"],
                },
                "spec": template["spec"],
            });
            let path = work.file(&format!("pod-{i}-{name}.json"));
            std::fs::write(&path, serde_json::to_string_pretty(&pod).expect("json"))
                .expect("write pod");
            let created = kubectl(
                &plane,
                &[
                    "create",
                    "--dry-run=server",
                    "-n",
                    NS,
                    "-f",
                    &path.display().to_string(),
                ],
            )
            .await;
            assert!(
                created.success,
                "{case}: a Pod from Deployment {name}'s template is rejected in a \
                 restricted namespace:\n{}\npod: {}",
                created.stderr,
                path.display()
            );
        }
    }
    eprintln!(
        "templates_pass_server_side_dry_run: {:?} ({} value sets)",
        started.elapsed(),
        cases.len()
    );
}

/// The objects of `kubectl ... -o json` output: a List's items, or the one object.
fn items(json_text: &str) -> Vec<Value> {
    let value: Value = serde_json::from_str(json_text)
        .unwrap_or_else(|e| panic!("kubectl printed no JSON ({e}):\n{}", tail(json_text, 20)));
    match value["items"].as_array() {
        Some(items) if value["kind"] == "List" => items.clone(),
        _ => vec![value],
    }
}

// ---------------------------------------------------------------------------------------
// 3. a real install

const OPERATOR_USER: &str = "system:serviceaccount:latchkey:latchkey-operator";
const SERVICE_USER: &str = "system:serviceaccount:latchkey:latchkey";

/// One API request, as the authorizer sees it.
#[derive(Debug, Clone, Copy)]
struct Access {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    namespace: &'static str,
    name: &'static str,
}

const fn access(verb: &'static str, group: &'static str, resource: &'static str) -> Access {
    Access {
        verb,
        group,
        resource,
        subresource: "",
        namespace: "",
        name: "",
    }
}

impl Access {
    const fn ns(mut self, namespace: &'static str) -> Self {
        self.namespace = namespace;
        self
    }
    const fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }
    const fn sub(mut self, subresource: &'static str) -> Self {
        self.subresource = subresource;
        self
    }
}

/// Whether the API server's authorizer (RBAC) allows `user`, a ServiceAccount with its
/// usual groups, to do `access`: a SubjectAccessReview created as admin.
async fn allowed(client: &kube::Client, user: &str, access: Access) -> bool {
    let namespace = user.split(':').nth(2).expect("a ServiceAccount user");
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: Some(vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_owned(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: opt(access.verb),
                group: Some(access.group.to_owned()),
                resource: opt(access.resource),
                subresource: opt(access.subresource),
                namespace: opt(access.namespace),
                name: opt(access.name),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SubjectAccessReview for {user} {access:?}: {e}"));
    answer.status.expect("SubjectAccessReview status").allowed
}

/// Every (apiGroup, resource, verb, resourceName) a set of rules grants, failing on
/// wildcards and non-resource URLs.
fn grants(rules: &[PolicyRule], owner: &str) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        assert!(
            rule.non_resource_urls.is_none(),
            "{owner} grants non-resource URLs: {rule:?}"
        );
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        let names = match rule.resource_names.clone() {
            Some(names) if !names.is_empty() => names,
            _ => vec![String::new()],
        };
        for word in groups
            .iter()
            .chain(&resources)
            .chain(&rule.verbs)
            .chain(&names)
        {
            assert!(!word.contains('*'), "{owner} has a wildcard: {rule:?}");
        }
        for group in &groups {
            for resource in &resources {
                for verb in &rule.verbs {
                    for name in &names {
                        out.insert((group.clone(), resource.clone(), verb.clone(), name.clone()));
                    }
                }
            }
        }
    }
    out
}

fn grant_set(list: &[(&str, &str, &str, &str)]) -> BTreeSet<(String, String, String, String)> {
    list.iter()
        .map(|(g, r, v, n)| {
            (
                (*g).to_owned(),
                (*r).to_owned(),
                (*v).to_owned(),
                (*n).to_owned(),
            )
        })
        .collect()
}

/// What every pod of the chart must satisfy: the restricted Pod Security Standard spelled
/// out field by field (stricter than PodSecurity, which accepts runAsNonRoot at pod level
/// only), requests and limits, and probes pointing at declared ports.
fn check_pod(deployment: &str, spec: &PodSpec) {
    let pod = spec
        .security_context
        .as_ref()
        .unwrap_or_else(|| panic!("{deployment}: no pod securityContext"));
    assert_eq!(
        pod.run_as_non_root,
        Some(true),
        "{deployment}: pod runAsNonRoot"
    );
    assert_eq!(
        pod.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault"),
        "{deployment}: pod seccompProfile"
    );
    assert_ne!(pod.run_as_user, Some(0), "{deployment}: pod runs as root");
    assert_ne!(spec.host_network, Some(true), "{deployment}: hostNetwork");
    assert_ne!(spec.host_pid, Some(true), "{deployment}: hostPID");
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    for c in containers {
        let name = format!("{deployment}/{}", c.name);
        let sc = c
            .security_context
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no securityContext"));
        assert_eq!(sc.run_as_non_root, Some(true), "{name}: runAsNonRoot");
        assert_ne!(sc.run_as_user, Some(0), "{name}: runs as root");
        assert_eq!(
            sc.read_only_root_filesystem,
            Some(true),
            "{name}: readOnlyRootFilesystem"
        );
        assert_eq!(
            sc.allow_privilege_escalation,
            Some(false),
            "{name}: allowPrivilegeEscalation"
        );
        assert_ne!(sc.privileged, Some(true), "{name}: privileged");
        let caps = sc.capabilities.as_ref();
        assert!(
            caps.and_then(|c| c.drop.as_ref())
                .is_some_and(|d| d.iter().any(|d| d == "ALL")),
            "{name}: capabilities.drop lacks ALL: {caps:?}"
        );
        assert!(
            caps.and_then(|c| c.add.as_ref()).is_none_or(Vec::is_empty),
            "{name}: adds capabilities: {caps:?}"
        );
        assert_eq!(
            sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault"),
            "{name}: seccompProfile"
        );
        let resources = c
            .resources
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no resources"));
        for (kind, map) in [
            ("requests", &resources.requests),
            ("limits", &resources.limits),
        ] {
            let map = map.as_ref().unwrap_or_else(|| panic!("{name}: no {kind}"));
            for res in ["cpu", "memory"] {
                assert!(map.contains_key(res), "{name}: no {kind}.{res}: {map:?}");
            }
        }
        // Writable paths are emptyDirs or Secrets, never the image's root filesystem.
        for mount in c.volume_mounts.iter().flatten() {
            let volume = spec
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == mount.name)
                .unwrap_or_else(|| panic!("{name}: mount of undeclared volume {}", mount.name));
            assert!(
                volume.empty_dir.is_some() || volume.secret.is_some(),
                "{name}: volume {} is neither emptyDir nor Secret: {volume:?}",
                volume.name
            );
            assert!(volume.host_path.is_none(), "{name}: hostPath volume");
        }
    }
}

/// The HTTP GET path of a probe, after checking that its port is one the container
/// declares.
fn probe_path(
    deployment: &str,
    c: &Container,
    which: &str,
    probe: Option<&k8s_openapi::api::core::v1::Probe>,
) -> String {
    let get = probe
        .and_then(|p| p.http_get.as_ref())
        .unwrap_or_else(|| panic!("{deployment}/{}: no httpGet {which}", c.name));
    let ports = c.ports.iter().flatten();
    let declared = match &get.port {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(n) => {
            ports.clone().any(|p| p.name.as_deref() == Some(n))
        }
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n) => {
            ports.clone().any(|p| p.container_port == *n)
        }
    };
    assert!(
        declared,
        "{deployment}/{}: {which} port {:?} is not a container port",
        c.name, get.port
    );
    get.path.clone().unwrap_or_default()
}

fn selects(selector: Option<&BTreeMap<String, String>>, labels: &BTreeMap<String, String>) -> bool {
    selector.is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// A real `helm install` (no `--wait`: no Pod ever runs here) creates every object with
/// the promised names and least privilege: restricted pods with resources and probes; an
/// operator ClusterRole granting exactly what the operator's code uses, checked both as
/// rules and through the API server's authorizer (SubjectAccessReview) for the operator's
/// and the service's ServiceAccounts; Services, PDBs and NetworkPolicies selecting the
/// right pods; the default SigningKey whose Secret the service mounts. An upgrade turning
/// on autoscaling adds the HPA; `helm uninstall` removes the workloads but keeps the CRDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_creates_every_object_with_least_privilege() {
    let started = Instant::now();
    let (plane, client) = start_plane().await;
    let work = Work::new(Some(&plane));
    let chart = chart();
    let installed = Instant::now();
    let out = work
        .helm(&[
            "install",
            RELEASE,
            &chart,
            "-n",
            NS,
            "--create-namespace",
            "--timeout",
            "60s",
        ])
        .await
        .ok();
    let install_took = installed.elapsed();
    assert!(out.contains("STATUS: deployed"), "{out}");

    let status: Value = serde_json::from_str(
        &work
            .helm(&["status", RELEASE, "-n", NS, "-o", "json"])
            .await
            .ok(),
    )
    .expect("helm status JSON");
    assert_eq!(status["info"]["status"], "deployed", "{status:#}");
    assert_eq!(status["version"], 1, "{status:#}");

    // --- workloads
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let service_deploy = deployments.get(SERVICE).await.expect("Deployment latchkey");
    let operator_deploy = deployments
        .get(OPERATOR)
        .await
        .expect("Deployment latchkey-operator");
    let spec_of = |d: &Deployment| d.spec.clone().expect("deployment spec");
    assert_eq!(
        spec_of(&service_deploy).replicas,
        Some(1),
        "service replicas"
    );
    assert_eq!(
        spec_of(&operator_deploy).replicas,
        Some(2),
        "operator replicas"
    );
    let service_pod = spec_of(&service_deploy).template.spec.expect("pod spec");
    let operator_pod = spec_of(&operator_deploy).template.spec.expect("pod spec");
    let service_labels = spec_of(&service_deploy)
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    let operator_labels = spec_of(&operator_deploy)
        .template
        .metadata
        .and_then(|m| m.labels)
        .unwrap_or_default();
    for (name, deploy, labels) in [
        (SERVICE, &service_deploy, &service_labels),
        (OPERATOR, &operator_deploy, &operator_labels),
    ] {
        let selector = spec_of(deploy).selector.match_labels;
        assert!(
            selects(selector.as_ref(), labels),
            "{name}: selector {selector:?} vs {labels:?}"
        );
    }
    assert!(
        !selects(Some(&service_labels), &operator_labels)
            && !selects(Some(&operator_labels), &service_labels),
        "service and operator pods must be told apart by labels"
    );
    check_pod(SERVICE, &service_pod);
    check_pod(OPERATOR, &operator_pod);

    let server = &service_pod.containers[0];
    assert_eq!(service_pod.containers.len(), 1, "one service container");
    assert_eq!(
        probe_path(
            SERVICE,
            server,
            "livenessProbe",
            server.liveness_probe.as_ref()
        ),
        "/health"
    );
    assert_eq!(
        probe_path(
            SERVICE,
            server,
            "readinessProbe",
            server.readiness_probe.as_ref()
        ),
        "/ready"
    );
    let op = &operator_pod.containers[0];
    assert_eq!(
        probe_path(OPERATOR, op, "livenessProbe", op.liveness_probe.as_ref()),
        "/healthz"
    );
    assert_eq!(
        probe_path(OPERATOR, op, "readinessProbe", op.readiness_probe.as_ref()),
        "/readyz"
    );
    // Migrations run as an init container of the service with the service's image.
    let init = service_pod.init_containers.clone().unwrap_or_default();
    assert!(
        init.iter().any(|c| c
            .command
            .as_ref()
            .is_some_and(|cmd| cmd.iter().any(|a| a == "migrate"))
            && c.image == server.image),
        "no migrate init container with the service image: {init:?}"
    );
    // The database URL comes from the existing Secret, never a literal.
    for (name, c) in [(SERVICE, server), (OPERATOR, op)] {
        let db = c
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "DATABASE_URL")
            .unwrap_or_else(|| panic!("{name}: no DATABASE_URL"));
        let from = db
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref());
        assert!(db.value.is_none(), "{name}: DATABASE_URL is a literal");
        assert_eq!(
            from.map(|s| (s.name.as_str(), s.key.as_str())),
            Some(("latchkey-database", "url")),
            "{name}: DATABASE_URL source"
        );
    }

    // --- the service's identity: no token, no RBAC
    assert_eq!(service_pod.service_account_name.as_deref(), Some(SERVICE));
    assert_eq!(service_pod.automount_service_account_token, Some(false));
    assert_eq!(operator_pod.service_account_name.as_deref(), Some(OPERATOR));
    let service_sa = Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .get(SERVICE)
        .await
        .expect("ServiceAccount latchkey");
    assert_eq!(service_sa.automount_service_account_token, Some(false));
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .get(OPERATOR)
        .await
        .expect("ServiceAccount latchkey-operator");
    let binds_service_sa = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
        subjects.iter().flatten().any(|s| {
            s.kind == "ServiceAccount" && s.name == SERVICE && s.namespace.as_deref() == Some(NS)
        })
    };
    for rb in Api::<RoleBinding>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list RoleBindings")
    {
        assert!(
            !binds_service_sa(&rb.subjects),
            "RoleBinding binds the service: {rb:?}"
        );
    }
    for crb in Api::<ClusterRoleBinding>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list ClusterRoleBindings")
    {
        assert!(
            !binds_service_sa(&crb.subjects),
            "ClusterRoleBinding binds the service: {crb:?}"
        );
    }

    // --- the operator's RBAC, as rules
    let cluster_role = Api::<ClusterRole>::all(client.clone())
        .get(OPERATOR)
        .await
        .expect("ClusterRole latchkey-operator");
    let expected = grant_set(&[
        ("latchkey.dev", "oauthclients", "list", ""),
        ("latchkey.dev", "oauthclients", "watch", ""),
        ("latchkey.dev", "oauthclients", "patch", ""),
        ("latchkey.dev", "signingkeys", "list", ""),
        ("latchkey.dev", "signingkeys", "watch", ""),
        ("latchkey.dev", "signingkeys", "patch", ""),
        ("latchkey.dev", "oauthclients/status", "patch", ""),
        ("latchkey.dev", "signingkeys/status", "patch", ""),
        ("", "secrets", "get", ""),
        ("", "secrets", "list", ""),
        ("", "secrets", "watch", ""),
        ("", "secrets", "create", ""),
        ("", "secrets", "patch", ""),
        ("", "secrets", "delete", ""),
        ("events.k8s.io", "events", "create", ""),
        ("events.k8s.io", "events", "patch", ""),
        // Workload identity: the uid of a client's ServiceAccount, and a metadata watch.
        ("", "serviceaccounts", "get", ""),
        ("", "serviceaccounts", "list", ""),
        ("", "serviceaccounts", "watch", ""),
    ]);
    let got = grants(
        cluster_role.rules.as_deref().unwrap_or_default(),
        "ClusterRole",
    );
    assert_eq!(
        got,
        expected,
        "the operator's ClusterRole differs from the least-privilege set:\n+ {:?}\n- {:?}",
        got.difference(&expected).collect::<Vec<_>>(),
        expected.difference(&got).collect::<Vec<_>>()
    );
    assert!(
        cluster_role.aggregation_rule.is_none(),
        "an aggregated ClusterRole can grow"
    );
    let crb = Api::<ClusterRoleBinding>::all(client.clone())
        .get(OPERATOR)
        .await
        .expect("ClusterRoleBinding latchkey-operator");
    assert_eq!(
        (crb.role_ref.kind.as_str(), crb.role_ref.name.as_str()),
        ("ClusterRole", OPERATOR)
    );
    // Workload identity: the two discovery documents of the API server, nothing more.
    let discovery = Api::<ClusterRole>::all(client.clone())
        .get(&format!("{OPERATOR}-issuer-discovery"))
        .await
        .expect("ClusterRole latchkey-operator-issuer-discovery");
    let rules = discovery.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), 1, "{discovery:?}");
    assert_eq!(
        rules[0].non_resource_urls.as_deref(),
        Some(
            &[
                "/.well-known/openid-configuration".to_owned(),
                "/openid/v1/jwks".to_owned()
            ][..]
        ),
        "{discovery:?}"
    );
    assert_eq!(rules[0].verbs, ["get"], "{discovery:?}");
    assert!(rules[0].resources.is_none(), "{discovery:?}");
    // Tenancy: reading the cluster-scoped policies and the namespaces' labels, nothing more.
    let tenancy = format!("{OPERATOR}-tenancy");
    let tenancy_role = Api::<ClusterRole>::all(client.clone())
        .get(&tenancy)
        .await
        .expect("ClusterRole latchkey-operator-tenancy");
    assert_eq!(
        grants(
            tenancy_role.rules.as_deref().unwrap_or_default(),
            "ClusterRole"
        ),
        grant_set(&[
            ("latchkey.dev", "oauthclientpolicies", "list", ""),
            ("latchkey.dev", "oauthclientpolicies", "watch", ""),
            ("", "namespaces", "get", ""),
            ("", "namespaces", "list", ""),
            ("", "namespaces", "watch", ""),
        ]),
        "{tenancy_role:?}"
    );
    let lease_roles: Vec<Role> = Api::<Role>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("list Roles")
        .items;
    let lease_grants: BTreeSet<_> = lease_roles
        .iter()
        .flat_map(|r| grants(r.rules.as_deref().unwrap_or_default(), "Role"))
        .collect();
    assert_eq!(
        lease_grants,
        grant_set(&[
            ("coordination.k8s.io", "leases", "get", OPERATOR),
            ("coordination.k8s.io", "leases", "update", OPERATOR),
            ("coordination.k8s.io", "leases", "create", ""),
        ]),
        "Roles in {NS}: {lease_roles:?}"
    );
    // The Lease the Role names is the one the operator is configured to use.
    let lease_env = op
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "LATCHKEY_OPERATOR_LEASE_NAME")
        .and_then(|e| e.value.clone());
    assert_eq!(
        lease_env.as_deref(),
        Some(OPERATOR),
        "operator's Lease name"
    );

    // --- the same, through the authorizer
    let can = [
        access("list", "latchkey.dev", "oauthclients"),
        access("watch", "latchkey.dev", "oauthclients"),
        access("list", "latchkey.dev", "signingkeys"),
        access("patch", "latchkey.dev", "oauthclients")
            .ns("shop")
            .named("reports"),
        access("patch", "latchkey.dev", "oauthclients")
            .ns("shop")
            .named("reports")
            .sub("status"),
        access("patch", "latchkey.dev", "signingkeys")
            .ns(NS)
            .named("latchkey")
            .sub("status"),
        access("list", "", "secrets"),
        access("create", "", "secrets").ns("shop"),
        access("patch", "", "secrets")
            .ns("shop")
            .named("reports-oauth"),
        access("delete", "", "secrets")
            .ns("shop")
            .named("reports-oauth"),
        access("create", "events.k8s.io", "events").ns("shop"),
        access("get", "coordination.k8s.io", "leases")
            .ns(NS)
            .named(OPERATOR),
        access("update", "coordination.k8s.io", "leases")
            .ns(NS)
            .named(OPERATOR),
        access("create", "coordination.k8s.io", "leases").ns(NS),
        access("list", "latchkey.dev", "oauthclientpolicies"),
        access("watch", "latchkey.dev", "oauthclientpolicies"),
        access("get", "", "namespaces").named("shop"),
        access("watch", "", "namespaces"),
    ];
    let cannot = [
        access("delete", "", "namespaces").named("shop"),
        access("update", "", "namespaces").named("shop"),
        access("create", "latchkey.dev", "oauthclientpolicies"),
        access("patch", "latchkey.dev", "oauthclientpolicies").named("x"),
        access("get", "", "configmaps").ns("shop").named("x"),
        access("list", "", "configmaps"),
        access("create", "", "pods").ns(NS),
        access("create", "", "pods").sub("exec").ns(NS).named("x"),
        access("update", "", "secrets")
            .ns("shop")
            .named("reports-oauth"),
        access("create", "", "events").ns("shop"),
        access("create", "latchkey.dev", "oauthclients").ns("shop"),
        access("delete", "latchkey.dev", "oauthclients")
            .ns("shop")
            .named("reports"),
        access("update", "latchkey.dev", "oauthclients")
            .ns("shop")
            .named("reports")
            .sub("status"),
        access("update", "coordination.k8s.io", "leases")
            .ns("kube-system")
            .named(OPERATOR),
        access("create", "coordination.k8s.io", "leases").ns("kube-system"),
        access("update", "coordination.k8s.io", "leases")
            .ns(NS)
            .named("someone-else"),
        access("delete", "coordination.k8s.io", "leases")
            .ns(NS)
            .named(OPERATOR),
        access("escalate", "rbac.authorization.k8s.io", "clusterroles").named(OPERATOR),
        access("bind", "rbac.authorization.k8s.io", "clusterroles").named("cluster-admin"),
        access("update", "rbac.authorization.k8s.io", "clusterroles").named(OPERATOR),
        access("create", "rbac.authorization.k8s.io", "rolebindings").ns(NS),
        access("impersonate", "", "serviceaccounts")
            .ns(NS)
            .named(SERVICE),
        access("create", "", "serviceaccounts")
            .sub("token")
            .ns(NS)
            .named(SERVICE),
        access(
            "update",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
        ),
        access("patch", "apps", "deployments")
            .ns(NS)
            .named(OPERATOR),
    ];
    for a in can {
        assert!(
            allowed(&client, OPERATOR_USER, a).await,
            "the operator cannot {a:?}"
        );
    }
    for a in cannot {
        assert!(
            !allowed(&client, OPERATOR_USER, a).await,
            "the operator can {a:?}"
        );
    }
    let service_cannot = [
        access("get", "", "secrets")
            .ns(NS)
            .named("latchkey-signing-keys"),
        access("get", "", "secrets")
            .ns(NS)
            .named("latchkey-database"),
        access("list", "", "secrets").ns(NS),
        access("list", "", "pods").ns(NS),
        access("list", "", "configmaps").ns(NS),
        access("list", "", "services"),
        access("list", "latchkey.dev", "oauthclients"),
        access("get", "latchkey.dev", "signingkeys")
            .ns(NS)
            .named("latchkey"),
        access("get", "coordination.k8s.io", "leases")
            .ns(NS)
            .named(OPERATOR),
        access("create", "events.k8s.io", "events").ns(NS),
    ];
    for a in service_cannot {
        assert!(
            !allowed(&client, SERVICE_USER, a).await,
            "the service can {a:?}"
        );
    }

    // --- the SigningKey and the Secret the service mounts
    let key = Api::<SigningKey>::namespaced(client.clone(), NS)
        .get("latchkey")
        .await
        .expect("SigningKey latchkey");
    assert_eq!(key.spec.key_size, 2048);
    assert_eq!(key.spec.rotation_interval, "30d");
    assert_eq!(key.spec.pre_publish, "1h");
    assert_eq!(key.spec.retain_after_retire, "24h");
    assert_eq!(
        key.spec.secret_name.as_deref(),
        Some("latchkey-signing-keys")
    );
    let keys_volume = service_pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| {
            v.secret
                .as_ref()
                .filter(|s| s.secret_name.as_deref() == Some("latchkey-signing-keys"))
        })
        .unwrap_or_else(|| {
            panic!(
                "the service does not mount the SigningKey's Secret: {:?}",
                service_pod.volumes
            )
        });
    assert_eq!(
        keys_volume.optional,
        Some(true),
        "pods must start before the first key"
    );
    let keys_dir = server
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "LATCHKEY_KEYS_DIR")
        .and_then(|e| e.value.clone())
        .expect("LATCHKEY_KEYS_DIR");
    assert!(
        server
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == keys_dir && m.read_only == Some(true)),
        "LATCHKEY_KEYS_DIR={keys_dir} is not a read-only mount"
    );
    let manage = server
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "LATCHKEY_MANAGE_KEYS");
    assert_eq!(manage.and_then(|e| e.value.as_deref()), Some("false"));

    // --- Services, PDBs, NetworkPolicies select the right pods
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    for (name, labels, port) in [
        (SERVICE, &service_labels, "http"),
        (OPERATOR, &operator_labels, "metrics"),
    ] {
        let svc = services
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("Service {name}: {e}"));
        let spec = svc.spec.expect("service spec");
        assert!(
            selects(spec.selector.as_ref(), labels),
            "Service {name} selects {:?}",
            spec.selector
        );
        let target = &spec.ports.expect("ports")[0].target_port;
        assert_eq!(
            target,
            &Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(port.into())),
            "Service {name} targetPort"
        );
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
    for (name, labels) in [(SERVICE, &service_labels), (OPERATOR, &operator_labels)] {
        let pdb = pdbs
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("PDB {name}: {e}"));
        let spec = pdb.spec.expect("pdb spec");
        assert!(
            selects(spec.selector.and_then(|s| s.match_labels).as_ref(), labels),
            "PDB {name} selects other pods"
        );
    }
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NS);
    for (name, labels) in [(SERVICE, &service_labels), (OPERATOR, &operator_labels)] {
        let np = policies
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("NetworkPolicy {name}: {e}"));
        let spec = np.spec.expect("networkpolicy spec");
        assert!(
            selects(
                spec.pod_selector.and_then(|s| s.match_labels).as_ref(),
                labels
            ),
            "NetworkPolicy {name} selects other pods"
        );
        assert!(
            spec.policy_types.iter().flatten().any(|t| t == "Ingress"),
            "NetworkPolicy {name} does not restrict ingress"
        );
    }
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), NS);
    assert!(
        hpas.get_opt(SERVICE).await.expect("get HPA").is_none(),
        "no HPA with autoscaling off (the default)"
    );

    // --- upgrade: autoscaling on (with Redis) adds the HPA for the service Deployment
    let db_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "latchkey-redis"},
        "stringData": {"url": "redis://redis:6379/0"}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &db_secret)
        .await
        .expect("create the Redis Secret");
    work.helm(&[
        "upgrade",
        RELEASE,
        &chart,
        "-n",
        NS,
        "--reuse-values",
        "--timeout",
        "60s",
        "--set",
        "redis.enabled=true",
        "--set",
        "service.autoscaling.enabled=true",
    ])
    .await
    .ok();
    let hpa = hpas
        .get(SERVICE)
        .await
        .expect("HPA latchkey after the upgrade");
    let spec = hpa.spec.expect("hpa spec");
    assert_eq!(
        (
            spec.scale_target_ref.kind.as_str(),
            spec.scale_target_ref.name.as_str()
        ),
        ("Deployment", SERVICE)
    );
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 10));
    let status: Value = serde_json::from_str(
        &work
            .helm(&["status", RELEASE, "-n", NS, "-o", "json"])
            .await
            .ok(),
    )
    .expect("helm status JSON");
    assert_eq!(
        (&status["info"]["status"], &status["version"]),
        (&json!("deployed"), &json!(2)),
        "{status:#}"
    );

    // --- uninstall: the workloads go, the CRDs (and so every OAuthClient) stay. This API
    // server has no node to run the pre-delete hook's Job (operator/tests/node.rs runs it).
    work.helm(&[
        "uninstall",
        RELEASE,
        "-n",
        NS,
        "--no-hooks",
        "--timeout",
        "60s",
    ])
    .await
    .ok();
    for name in [SERVICE, OPERATOR] {
        let left = deployments.get_opt(name).await.expect("get Deployment");
        assert!(
            left.as_ref()
                .is_none_or(|d| d.metadata.deletion_timestamp.is_some()),
            "Deployment {name} survived helm uninstall"
        );
    }
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(OPERATOR)
            .await
            .expect("get ClusterRole")
            .is_none(),
        "the ClusterRole survived helm uninstall"
    );
    let crds = kubectl(&plane, &["get", "crd", "-o", "name"]).await.ok();
    for crd in ["oauthclients.latchkey.dev", "signingkeys.latchkey.dev"] {
        assert!(
            crds.contains(crd),
            "helm uninstall removed CRD {crd}: {crds}"
        );
    }
    eprintln!(
        "install_creates_every_object_with_least_privilege: {:?} (helm install {install_took:?})",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 4. bad values

/// Values a user could get wrong, each rejected by `helm template` with the message they
/// would read: values.schema.json errors name the field path; cross-value checks
/// (templates/_validate.tpl) name the values to change. Then the same through a real
/// `helm install`: a schema error creates nothing, and a SigningKey the CRD's CEL rules
/// reject fails the install with the API server's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_values_are_rejected_with_a_clear_message() {
    const SCHEMA: &str = "values don't meet the specifications of the schema";
    let started = Instant::now();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["operator.replicas=-1"],
            &[SCHEMA, "at '/operator/replicas'", "minimum"],
        ),
        (
            &["serviceReplicaz=3"],
            &[
                SCHEMA,
                "additional properties 'serviceReplicaz' not allowed",
            ],
        ),
        (
            &["service.replicaz=3"],
            &[SCHEMA, "at '/service'", "'replicaz' not allowed"],
        ),
        (
            &["image.service.pullPolicy=Sometimes"],
            &[SCHEMA, "at '/image/service/pullPolicy'", "'IfNotPresent'"],
        ),
        (
            &["issuer=ftp://x"],
            &[SCHEMA, "at '/issuer'", "does not match pattern"],
        ),
        (
            &["signingKey.keySize=1024"],
            &[SCHEMA, "at '/signingKey/keySize'", "2048, 3072, 4096"],
        ),
        (
            &["signingKey.rotationInterval=1w"],
            &[SCHEMA, "at '/signingKey/rotationInterval'"],
        ),
        (
            &["service.port=70000"],
            &[SCHEMA, "at '/service/port'", "maximum"],
        ),
        (
            &["database.existingSecret="],
            &[SCHEMA, "at '/database/existingSecret'", "minLength"],
        ),
        (
            &["service.replicas=3"],
            &["redis.enabled=true", "service.replicas > 1"],
        ),
        (
            &["service.autoscaling.enabled=true"],
            &["redis.enabled=true", "service.autoscaling.enabled=true"],
        ),
        (
            &[
                "redis.enabled=true",
                "service.autoscaling.enabled=true",
                "service.autoscaling.minReplicas=5",
                "service.autoscaling.maxReplicas=2",
            ],
            &[
                "service.autoscaling.minReplicas (5) must not exceed service.autoscaling.maxReplicas (2)",
            ],
        ),
        (
            &["operator.leaderElection.enabled=false"],
            &["operator.leaderElection.enabled=false needs operator.replicas=1"],
        ),
        (
            &["service.env.DATABASE_URL=postgres://u:p@db/x"],
            &["service.env.DATABASE_URL is not allowed"],
        ),
        (
            &["operator.env.DATABASE_URL=postgres://u:p@db/x"],
            &["operator.env.DATABASE_URL is not allowed"],
        ),
        (
            &["networkPolicy.egress.restrict=true"],
            &["networkPolicy.egress.postgres.cidrs"],
        ),
        (
            &["operator.watchNamespace=other"],
            &[
                "operator.watchNamespace=\"other\"",
                "release namespace \"latchkey\"",
            ],
        ),
        (
            &["signingKey.retainAfterRetire=10m"],
            &["signingKey.retainAfterRetire (10m = 600s) must be at least service.accessTokenTTL"],
        ),
        (
            &["service.jwksMaxAge=2h"],
            &["service.jwksMaxAge (2h) must be shorter than signingKey.prePublish (1h)"],
        ),
        (
            &["signingKey.create=false"],
            &["signingKey.create=false needs signingKey.secretName"],
        ),
    ];
    let work = Work::new(None);
    let chart = chart();
    for (sets, expected) in cases {
        let mut args = vec!["template", RELEASE, &chart, "-n", NS];
        for set in *sets {
            args.extend(["--set", set]);
        }
        let stderr = work.helm(&args).await.fails();
        for want in *expected {
            assert!(
                stderr.contains(want),
                "helm {}: the message lacks {want:?}:\n{stderr}",
                args.join(" ")
            );
        }
        assert!(
            !stderr.contains("nil pointer") && !stderr.contains("<no value>"),
            "helm {}: a template crashed instead of a clear message:\n{stderr}",
            args.join(" ")
        );
    }

    // A real install: a schema error fails before anything is created.
    let (plane, client) = start_plane().await;
    let work = Work::new(Some(&plane));
    let stderr = work
        .helm(&[
            "install",
            RELEASE,
            &chart,
            "-n",
            NS,
            "--create-namespace",
            "--timeout",
            "60s",
            "--set",
            "operator.replicas=-1",
        ])
        .await
        .fails();
    assert!(
        stderr.contains("INSTALLATION FAILED")
            && stderr.contains(SCHEMA)
            && stderr.contains("at '/operator/replicas'"),
        "{stderr}"
    );
    let releases = work.helm(&["list", "-A", "-a", "-q"]).await.ok();
    assert!(
        releases.trim().is_empty(),
        "a release was recorded: {releases}"
    );
    let deployments: Api<Deployment> = Api::all(client.clone());
    let any = deployments
        .list(&ListParams::default())
        .await
        .expect("list Deployments");
    assert!(
        any.items.is_empty(),
        "a schema error still created Deployments"
    );

    // prePublish must be shorter than rotationInterval. The CRD's CEL rule says so too,
    // but only when the SigningKey reaches the API server, after helm has created the
    // Deployments; the chart refuses it at render, so nothing is created.
    let stderr = work
        .helm(&[
            "install",
            RELEASE,
            &chart,
            "-n",
            NS,
            "--create-namespace",
            "--timeout",
            "60s",
            "--set",
            "signingKey.rotationInterval=1h",
            "--set",
            "signingKey.prePublish=2h",
            "--set",
            "service.jwksMaxAge=5m",
        ])
        .await
        .fails();
    assert!(
        stderr.contains("INSTALLATION FAILED")
            && stderr.contains("prePublish")
            && stderr.contains("rotationInterval"),
        "{stderr}"
    );
    let left: Vec<String> = deployments
        .list(&ListParams::default())
        .await
        .expect("list Deployments")
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect();
    assert!(
        stderr.contains("execution error")
            && stderr.contains(
                "signingKey.prePublish (2h) must be shorter than signingKey.rotationInterval (1h)"
            ),
        "{stderr}"
    );
    assert!(left.is_empty(), "a refused install created {left:?}");
    eprintln!(
        "bad_values_are_rejected_with_a_clear_message: {:?} ({} template cases)",
        started.elapsed(),
        cases.len()
    );
}

// ---------------------------------------------------------------------------------------
// 5. ServiceMonitors

/// With `metrics.serviceMonitor.enabled=true` the production values render
/// ServiceMonitors that the real Prometheus Operator CRD (fetched by tests/helm/build.sh
/// from the prometheus-operator module) accepts on a server-side dry run, and each one
/// selects exactly one of the chart's Services by labels and scrapes a port that Service
/// names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_monitors_match_the_real_crd_and_the_services() {
    let started = Instant::now();
    let crd = helm_bin_dir()
        .unwrap_or_else(|e| panic!("{e}"))
        .join("monitoring.coreos.com_servicemonitors.yaml");
    assert!(
        crd.is_file(),
        "no ServiceMonitor CRD at {}: rerun tests/helm/build.sh",
        crd.display()
    );
    let (plane, client) = start_plane().await;
    let work = Work::new(Some(&plane));
    plane
        .apply_crds(&chart_dir().join("crds"))
        .await
        .expect("the chart's CRDs install");
    plane
        .apply_crds(&crd)
        .await
        .expect("the ServiceMonitor CRD installs");
    restricted_namespace(&client).await;
    let production = chart_dir().join("ci/production-values.yaml");
    let production = production.display().to_string();
    let rendered = work
        .render(
            "rendered-servicemonitor.yaml",
            &[
                "-f",
                &production,
                "--set",
                "metrics.serviceMonitor.enabled=true",
                "--set",
                "metrics.serviceMonitor.labels.release=prometheus",
            ],
        )
        .await;
    let applied = kubectl(
        &plane,
        &[
            "apply",
            "--dry-run=server",
            "-n",
            NS,
            "-o",
            "json",
            "-f",
            &rendered.display().to_string(),
        ],
    )
    .await;
    assert!(
        applied.success,
        "server-side dry run rejected the chart with ServiceMonitors:\n{}\n{}",
        applied.stderr,
        manifest_context(&rendered)
    );
    let objects = items(&applied.stdout);
    let services: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Service").collect();
    let monitors: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ServiceMonitor")
        .collect();
    assert_eq!(
        monitors.len(),
        2,
        "a ServiceMonitor each for service and operator"
    );
    let labels_of = |o: &Value| -> BTreeMap<String, String> {
        serde_json::from_value(o["metadata"]["labels"].clone()).unwrap_or_default()
    };
    for monitor in monitors {
        let name = monitor["metadata"]["name"].as_str().expect("name");
        assert_eq!(
            labels_of(monitor).get("release").map(String::as_str),
            Some("prometheus"),
            "ServiceMonitor {name}: metrics.serviceMonitor.labels not applied"
        );
        assert_eq!(
            monitor["spec"]["namespaceSelector"]["matchNames"],
            json!([NS]),
            "ServiceMonitor {name}"
        );
        let selector: BTreeMap<String, String> =
            serde_json::from_value(monitor["spec"]["selector"]["matchLabels"].clone())
                .expect("matchLabels");
        let matched: Vec<&&Value> = services
            .iter()
            .filter(|s| selects(Some(&selector), &labels_of(s)))
            .collect();
        assert_eq!(
            matched.len(),
            1,
            "ServiceMonitor {name} selects {} Services",
            matched.len()
        );
        let service = matched[0];
        let port_names: Vec<&str> = service["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        for endpoint in monitor["spec"]["endpoints"].as_array().expect("endpoints") {
            let port = endpoint["port"].as_str().expect("endpoint port");
            assert!(
                port_names.contains(&port),
                "ServiceMonitor {name} scrapes port {port}, Service {} has {port_names:?}",
                service["metadata"]["name"]
            );
            assert_eq!(endpoint["path"], "/metrics", "ServiceMonitor {name}");
        }
    }
    eprintln!(
        "service_monitors_match_the_real_crd_and_the_services: {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// 6. the chart's RBAC and settings are enough for the real operator

/// The default install: a ClusterRole; the OAuthClient lives in another namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_works_with_only_the_charts_rbac() {
    operator_under_the_charts_rbac(&[], "shop").await;
}

/// `ci/watchnamespace-values.yaml`: only a Role in the release namespace, where the
/// OAuthClient then lives too (LATCHKEY_OPERATOR_NAMESPACE set from the chart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_works_with_only_the_charts_namespaced_rbac() {
    let values = chart_dir().join("ci/watchnamespace-values.yaml");
    let values = values.display().to_string();
    operator_under_the_charts_rbac(&["-f", &values], NS).await;
}

/// The real `latchkey-operator` binary, configured with exactly the plain environment of
/// the installed operator Deployment and authenticated as the chart's ServiceAccount (a
/// bound token from the TokenRequest API, as a kubelet would mount), does its whole job
/// with nothing but the chart's RBAC: wins the chart's Lease, reconciles an OAuthClient in
/// another namespace to Ready with its Secret and Events, writes the chart's SigningKey
/// Secret, and cleans up a deleted OAuthClient; its log shows no Forbidden answer. This
/// is what the SubjectAccessReviews above cannot show: that nothing is missing.
async fn operator_under_the_charts_rbac(values: &[&str], clients_ns: &str) {
    use k8s_openapi::api::coordination::v1::Lease;
    use latchkey_crds::OAuthClient;
    use latchkey_testkit::process::ChildProcess;

    let started = Instant::now();
    let (plane, client) = start_plane().await;
    let work = Work::new(Some(&plane));
    let chart = chart();
    let mut install = vec![
        "install",
        RELEASE,
        &chart,
        "-n",
        NS,
        "--create-namespace",
        "--timeout",
        "60s",
    ];
    install.extend_from_slice(values);
    work.helm(&install).await.ok();
    if clients_ns != NS {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": clients_ns}})).expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create the clients' namespace");
    }

    // The operator's identity: a token for the chart's ServiceAccount.
    let token = kubectl(
        &plane,
        &["create", "token", OPERATOR, "-n", NS, "--duration", "1h"],
    )
    .await
    .ok();
    let kubeconfig = work.file("operator-kubeconfig");
    std::fs::write(
        &kubeconfig,
        plane.token_kubeconfig("operator", token.trim()),
    )
    .expect("write kubeconfig");

    // Its configuration: the Deployment's plain env, with the listener on loopback and
    // what the kubelet would fill in (fieldRefs, the database Secret).
    let deployment = Api::<Deployment>::namespaced(client.clone(), NS)
        .get(OPERATOR)
        .await
        .expect("Deployment latchkey-operator");
    let container = deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].clone())
        .expect("operator container");
    if clients_ns == NS {
        // Namespaced mode: no cluster-wide access, but for the tenancy reads (the
        // cluster-scoped policies, its own namespace's labels).
        let watch = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "LATCHKEY_OPERATOR_NAMESPACE")
            .and_then(|e| e.value.clone());
        assert_eq!(watch.as_deref(), Some(NS), "LATCHKEY_OPERATOR_NAMESPACE");
        assert!(
            Api::<ClusterRole>::all(client.clone())
                .get_opt(OPERATOR)
                .await
                .expect("get ClusterRole")
                .is_none(),
            "a ClusterRole although operator.watchNamespace is set"
        );
        for a in [
            access("list", "", "secrets"),
            access("get", "", "secrets").ns("default").named("x"),
            access("list", "latchkey.dev", "oauthclients"),
            access("list", "latchkey.dev", "oauthclients").ns("default"),
            // Tenancy reads only its own namespace's labels.
            access("get", "", "namespaces").named("default"),
            access("list", "", "namespaces"),
        ] {
            assert!(
                !allowed(&client, OPERATOR_USER, a).await,
                "the namespaced operator can {a:?}"
            );
        }
        for a in [
            access("get", "", "namespaces").named(NS),
            access("watch", "", "namespaces").named(NS),
            access("list", "latchkey.dev", "oauthclientpolicies"),
        ] {
            assert!(
                allowed(&client, OPERATOR_USER, a).await,
                "the namespaced operator cannot {a:?}"
            );
        }
    }
    let [port] = latchkey_testkit::free_ports().expect("port");
    let listen = format!("127.0.0.1:{port}");
    let database_url = latchkey_testkit::postgres::fresh_database()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let pod_name = "latchkey-operator-5d9c7b7f4-x2x7q";
    let mut env: Vec<(String, String)> = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(v), None) => v.clone(),
            (None, Some(from)) => {
                let field = from.field_ref.as_ref().map(|f| f.field_path.as_str());
                let secret = from.secret_key_ref.as_ref().map(|s| s.name.as_str());
                match (var.name.as_str(), field, secret) {
                    ("POD_NAME", Some("metadata.name"), _) => pod_name.to_owned(),
                    ("POD_NAMESPACE", Some("metadata.namespace"), _) => NS.to_owned(),
                    ("DATABASE_URL", _, Some("latchkey-database")) => database_url.clone(),
                    _ => panic!("unexpected valueFrom in the operator's env: {var:?}"),
                }
            }
            _ => panic!("odd env var {var:?}"),
        };
        env.push((var.name.clone(), value));
    }
    let names: BTreeSet<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    for name in [
        "DATABASE_URL",
        "POD_NAME",
        "POD_NAMESPACE",
        "LATCHKEY_ISSUER",
        "LATCHKEY_OPERATOR_LISTEN",
        "LATCHKEY_OPERATOR_LEASE_NAME",
    ] {
        assert!(
            names.contains(name),
            "the operator's env lacks {name}: {names:?}"
        );
    }
    for (name, value) in &mut env {
        match name.as_str() {
            "LATCHKEY_OPERATOR_LISTEN" => value.clone_from(&listen),
            // Readable in a failure's log tail.
            "LATCHKEY_LOG_FORMAT" => *value = "text".to_owned(),
            "LATCHKEY_LOG" => *value = "info,latchkey_operator=debug,kube=warn".to_owned(),
            _ => {}
        }
    }
    env.push(("KUBECONFIG".to_owned(), kubeconfig.display().to_string()));
    env.push(("NO_COLOR".to_owned(), "1".to_owned()));
    let env_refs: Vec<(&str, &std::ffi::OsStr)> = env
        .iter()
        .map(|(n, v)| (n.as_str(), std::ffi::OsStr::new(v.as_str())))
        .collect();
    let mut operator = ChildProcess::spawn(
        "latchkey-operator",
        Path::new(env!("CARGO_BIN_EXE_latchkey-operator")),
        &[],
        &env_refs,
        work.file("operator.log"),
    )
    .expect("operator starts");
    let log_tail = |op: &ChildProcess| op.log_tail(60);
    // The operator's log explains a failure (a timeout, above all) better than the
    // assertion itself.
    struct LogOnPanic(PathBuf);
    impl Drop for LogOnPanic {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let log = std::fs::read_to_string(&self.0).unwrap_or_default();
                eprintln!("--- the operator's log ---\n{}", tail(&log, 80));
            }
        }
    }
    let _log_on_panic = LogOnPanic(operator.log_path().to_owned());

    let http = reqwest::Client::new();
    let deadline = Instant::now() + common::TIMEOUT;
    loop {
        if let Some(status) = operator.exited() {
            panic!(
                "the operator exited with {status} under the chart's RBAC and env:\n{}",
                log_tail(&operator)
            );
        }
        if let Ok(r) = http.get(format!("http://{listen}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "operator /healthz never answered:\n{}",
            log_tail(&operator)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let clients: Api<OAuthClient> = Api::namespaced(client.clone(), clients_ns);
    let shop_secrets: Api<Secret> = Api::namespaced(client.clone(), clients_ns);
    let ns_secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let keys: Api<SigningKey> = Api::namespaced(client.clone(), NS);
    let check = async {
        common::eventually("the operator to hold the chart's Lease", || async {
            let lease = leases.get_opt(OPERATOR).await.ok()??;
            // The identity is POD_NAME plus a per-process suffix.
            (lease.spec?.holder_identity?.starts_with(pod_name)).then_some(())
        })
        .await;
        kubectl(
            &plane,
            &[
                "apply",
                "-n",
                clients_ns,
                "-f",
                &common::example("oauthclient-service.yaml"),
            ],
        )
        .await
        .ok();
        common::eventually("OAuthClient shop/reports Ready with its Secret", || async {
            let oac = clients.get_opt("reports").await.ok()??;
            let secret = shop_secrets.get_opt("reports-oauth").await.ok()??;
            (common::is_ready(&oac) && common::secret_value(&secret, "client_secret").is_some())
                .then_some(())
        })
        .await;
        common::eventually("Events about the OAuthClient", || async {
            let events: Api<k8s_openapi::api::events::v1::Event> =
                Api::namespaced(client.clone(), clients_ns);
            let list = events.list(&ListParams::default()).await.ok()?;
            (!list.items.is_empty()).then_some(())
        })
        .await;
        common::eventually("the chart's SigningKey to get a signing key", || async {
            let key = keys.get_opt("latchkey").await.ok()??;
            let kid = key.status?.active_kid?;
            let secret = ns_secrets.get_opt("latchkey-signing-keys").await.ok()??;
            secret
                .data?
                .contains_key(&format!("{kid}.pem"))
                .then_some(())
        })
        .await;
        clients
            .delete("reports", &Default::default())
            .await
            .expect("delete OAuthClient");
        common::eventually("the deleted OAuthClient and its Secret to go", || async {
            let gone = clients.get_opt("reports").await.ok()?.is_none()
                && shop_secrets.get_opt("reports-oauth").await.ok()?.is_none();
            gone.then_some(())
        })
        .await;
    };
    check.await;
    let log = std::fs::read_to_string(operator.log_path()).unwrap_or_default();
    // A refusal is always reported as "... is forbidden: User ... cannot ..." (reason
    // Forbidden). Not a bare "403": the Lease identity carries random digits.
    for word in ["forbidden", "Forbidden"] {
        assert!(
            !log.contains(word),
            "the operator was refused something ({word}):\n{}",
            tail(&log, 60)
        );
    }
    operator.kill();
    eprintln!(
        "the operator under the chart's RBAC ({values:?}): {:?}",
        started.elapsed()
    );
}
