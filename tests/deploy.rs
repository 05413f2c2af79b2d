//! What deploy/ ships is valid for hookcast itself: the ConfigMap's config passes
//! the checker (hadolint and kubernetes-validate run in `.ci/run`).

mod support;

use std::collections::HashMap;

#[derive(serde::Deserialize)]
struct ConfigMap {
    data: HashMap<String, String>,
}

#[test]
fn the_configmap_holds_a_valid_config() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/configmap.yaml"
    ))
    .unwrap();
    let cm: ConfigMap = serde_saphyr::from_str(&text).unwrap();
    let yaml = &cm.data["hookcast.yaml"];
    // The Secret is mounted in the pod; here a file stands in for it.
    let secret = support::SecretFile::new("s3cret\n");
    let yaml = yaml.replace(
        "/etc/hookcast/secrets/github-webhook-secret",
        secret.path().trim_matches('"'),
    );
    let c = hookcast::config::from_yaml("configmap.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.admin.is_some(), "the probes need the admin listener");
    // The pod's grace period leaves room for preStop (5 s) and the drain.
    let deployment = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/deployment.yaml"
    ))
    .unwrap();
    let grace: u64 = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(grace > c.shutdown_grace.as_secs() + 5, "{grace}");
}
