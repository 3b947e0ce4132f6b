//! The harness itself: a real API server comes up, answers, and goes away with its test.

use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;
use latchkey_testkit::ControlPlane;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_starts_serves_and_stops() {
    let started = Instant::now();
    let plane = ControlPlane::start().await.expect("control plane starts");
    eprintln!(
        "control plane ready in {:?} (measured inside start: {:?})",
        started.elapsed(),
        plane.startup_time()
    );

    let client = plane.client().await.expect("client");
    let version = client.apiserver_version().await.expect("version");
    assert_eq!(version.git_version, "v1.34.12");
    let namespaces = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .expect("list namespaces");
    assert!(
        namespaces
            .iter()
            .any(|ns| ns.metadata.name.as_deref() == Some("default")),
        "the default namespace exists"
    );

    // kubectl talks to it as the admin (system:masters) user.
    let whoami = plane
        .kubectl(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"])
        .await
        .expect("kubectl runs")
        .ok();
    assert!(whoami.contains("system:masters"), "{whoami}");
    let can = plane
        .kubectl(&["auth", "can-i", "create", "secrets", "--all-namespaces"])
        .await
        .expect("kubectl runs")
        .ok();
    assert_eq!(can.trim(), "yes");

    let pids = [
        ("kube-apiserver", pid_of(&plane, "kube-apiserver.log")),
        ("etcd", pid_of(&plane, "etcd.log")),
    ];
    let kubeconfig = plane.kubeconfig().to_owned();
    drop(plane);
    for (name, pid) in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid),
            "{name} (pid {pid}) still runs after drop"
        );
    }
    assert!(
        !kubeconfig.exists(),
        "the control plane's directory is removed"
    );
}

/// The pid of the process whose stdout is the given log file.
fn pid_of(plane: &ControlPlane, log: &str) -> u32 {
    let dir = plane.kubeconfig().parent().expect("dir").join(log);
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/fd/1")).is_ok_and(|target| target == dir) {
            return pid;
        }
    }
    panic!("no process writes {log}");
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2) == Some("Z"))
}
