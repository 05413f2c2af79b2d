//! Reload (README, "Operate"): a valid config replaces routes and secrets with
//! streams kept open; an invalid one changes nothing; a Kubernetes-style `..data`
//! symlink swap is seen; restart-only settings keep their running value.

mod support;

use std::path::Path;
use std::time::Duration;

use http::StatusCode;
use support::{AdminApp, PATIENCE, TempDir};

/// A config with one route per name: `/hooks/NAME` publishes to `NAME.{room}`.
fn yaml(routes: &[&str]) -> String {
    let mut y = String::from("sse:\n  heartbeat: 15s\nroutes:\n");
    for r in routes {
        y.push_str(&format!(
            "  - name: {r}\n    match:\n      path: \"/hooks/{r}/{{room}}\"\n    publish:\n      topic: \"{r}.{{path:room}}\"\n"
        ));
    }
    y
}

/// Posts until the answer has `status`, within PATIENCE (the file is polled each second).
async fn until_status(app: &AdminApp, path: &str, status: StatusCode) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let r = app.app.post(path, &[], "x").await;
        if r.status == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} still answers {} ({})",
            r.status,
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn reloads(app: &AdminApp, result: &str) -> usize {
    let m = app.admin_get("/metrics").await.text();
    let line = format!("hookcast_config_reloads_total{{result=\"{result}\"}} ");
    m.lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn write(path: &Path, text: &str) {
    // Written whole and renamed, as editors and Kubernetes do, so no half file is read.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_changed_file_adds_a_route_and_open_streams_keep_receiving() {
    let dir = TempDir::new("reload-file");
    let file = dir.path("hookcast.yaml");
    write(&file, &yaml(&["a"]));
    let app = AdminApp::spawn_file(&file).await;
    let mut stream = app.app.subscribe("topic=a.x&topic=b.x", &[]).await;
    until_status(&app, "/hooks/b/x", StatusCode::NOT_FOUND).await;

    write(&file, &yaml(&["a", "b"]));
    until_status(&app, "/hooks/b/x", StatusCode::ACCEPTED).await;
    // The stream opened before the reload gets events of the old and the new route.
    app.app.publish("/hooks/a/x", "after").await;
    let got = stream.events(2).await;
    assert_eq!(got[0].data, "x");
    assert_eq!(got[1].data, "after");
    assert!(reloads(&app, "success").await >= 1);
    app.app.shutdown().await;
}

#[tokio::test]
async fn sighup_reloads_and_an_invalid_config_keeps_the_old_one() {
    let dir = TempDir::new("reload-invalid");
    let file = dir.path("hookcast.yaml");
    write(&file, &yaml(&["a"]));
    let app = AdminApp::spawn_file(&file).await;
    let mut stream = app.app.subscribe("topic=a.x", &[]).await;

    write(&file, "routes:\n  - name: a\n    bogus: 1\n");
    app.reload.notify_one();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while reloads(&app, "failure").await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no failed reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reloads(&app, "success").await, 0);
    // The old routes still publish, and the open stream still receives.
    app.app.publish("/hooks/a/x", "still").await;
    assert_eq!(stream.next_event().await.data, "still");
    assert_eq!(app.admin_get("/readyz").await.status, StatusCode::OK);
    app.app.shutdown().await;
}

#[tokio::test]
async fn a_configmap_symlink_swap_is_seen() {
    // The layout kubelet writes: config.yaml -> ..data/config.yaml, ..data -> ..v1.
    let dir = TempDir::new("reload-configmap");
    std::fs::create_dir(dir.path("..v1")).unwrap();
    std::fs::write(dir.path("..v1/config.yaml"), yaml(&["a"])).unwrap();
    std::os::unix::fs::symlink("..v1", dir.path("..data")).unwrap();
    std::os::unix::fs::symlink("..data/config.yaml", dir.path("config.yaml")).unwrap();
    let app = AdminApp::spawn_file(&dir.path("config.yaml")).await;
    let mut stream = app.app.subscribe("topic=c.x", &[]).await;
    until_status(&app, "/hooks/c/x", StatusCode::NOT_FOUND).await;

    std::fs::create_dir(dir.path("..v2")).unwrap();
    std::fs::write(dir.path("..v2/config.yaml"), yaml(&["a", "c"])).unwrap();
    std::os::unix::fs::symlink("..v2", dir.path("..data_tmp")).unwrap();
    std::fs::rename(dir.path("..data_tmp"), dir.path("..data")).unwrap();
    std::fs::remove_dir_all(dir.path("..v1")).unwrap();

    until_status(&app, "/hooks/c/x", StatusCode::ACCEPTED).await;
    assert_eq!(stream.next_event().await.data, "x");
    app.app.shutdown().await;
}

#[tokio::test]
async fn a_changed_secret_file_replaces_the_secret() {
    let dir = TempDir::new("reload-secret");
    let secret = dir.path("token");
    write(&secret, "old-token\n");
    let file = dir.path("hookcast.yaml");
    write(
        &file,
        r#"
routes:
  - name: t
    match:
      path: "/hooks/t"
    verify:
      scheme: token
      secret_file: token
    publish:
      topic: "t"
"#,
    );
    let app = AdminApp::spawn_file(&file).await;
    let send = |token: &'static str| {
        let app = &app;
        async move {
            let auth = format!("Bearer {token}");
            app.app
                .post("/hooks/t", &[("Authorization", auth.as_str())], "x")
                .await
                .status
        }
    };
    assert_eq!(send("old-token").await, StatusCode::ACCEPTED);
    write(&secret, "new-token\n");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while send("new-token").await != StatusCode::ACCEPTED {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new secret not used"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(send("old-token").await, StatusCode::UNAUTHORIZED);
    app.app.shutdown().await;
}

#[tokio::test]
async fn restart_only_settings_keep_their_running_value() {
    let dir = TempDir::new("reload-restart");
    let file = dir.path("hookcast.yaml");
    write(&file, &yaml(&["a"]));
    let app = AdminApp::spawn_file(&file).await;
    // A new listen address (needs a restart) together with a new route (applies).
    write(
        &file,
        &format!("listen: \"127.0.0.1:1\"\n{}", yaml(&["a", "b"])),
    );
    until_status(&app, "/hooks/b/x", StatusCode::ACCEPTED).await;
    // Still served where it was.
    app.app.publish("/hooks/a/x", "here").await;
    app.app.shutdown().await;
}
