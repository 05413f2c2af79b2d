//! What deploy/ ships works as copied: the Kubernetes example, rendered by kustomize
//! (`kubectl kustomize`), delivers every event to every subscriber at its replica
//! count, keeps the admin port off the public path, confines its security settings
//! to hookcast, and states the oldest Kubernetes its fields need; its config passes
//! hookcast's own checker. (hadolint and kubernetes-validate run in `.ci/run`; the
//! image is built and run by `scripts/image-test`.)

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every object of the kustomization, as `kubectl kustomize` renders it.
fn render() -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", "deploy/kubernetes"])
        .current_dir(ROOT)
        .output()
        .unwrap_or_else(|e| panic!("cannot run kubectl ({e}); it renders the kustomization"));
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0]
}

fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer}"))
}

/// Whether a label selector (a Service's, or a `matchLabels`) selects the pod's labels.
fn selects(selector: &Value, labels: &Value) -> bool {
    let m = selector.as_object().expect("a label map");
    !m.is_empty() && m.iter().all(|(k, v)| &labels[k] == v)
}

struct Example {
    objects: Vec<Value>,
}

impl Example {
    fn deployment(&self) -> &Value {
        one(&self.objects, "Deployment")
    }

    fn pod(&self) -> &Value {
        &self.deployment()["spec"]["template"]
    }

    fn hookcast(&self) -> &Value {
        let init = self.pod()["spec"]["initContainers"].as_array().unwrap();
        init.iter()
            .find(|c| c["name"] == "hookcast")
            .expect("hookcast as an init container")
    }

    /// The ConfigMap's config, checked by hookcast with the pod's environment and
    /// mounts: variables from the container's `env` (read from the Secret), files
    /// of the mounted Secret written to a temporary directory.
    fn config(&self) -> hookcast::config::Config {
        let cm = one(&self.objects, "ConfigMap");
        let mut yaml = cm["data"]["hookcast.yaml"].as_str().unwrap().to_owned();
        let secret = one(&self.objects, "Secret");
        let data = secret["stringData"].as_object().expect("stringData");
        let mount = self.hookcast()["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "hookcast-secrets")
            .expect("the Secret is mounted");
        let mut files = Vec::new();
        for (key, value) in data {
            let in_pod = format!("{}/{key}", mount["mountPath"].as_str().unwrap());
            if yaml.contains(&in_pod) {
                let f = support::SecretFile::new(value.as_str().unwrap());
                yaml = yaml.replace(&in_pod, f.path().trim_matches('"'));
                files.push(f);
            }
        }
        let env: Vec<(String, String)> = self.hookcast()["env"]
            .as_array()
            .map(|e| e.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|e| {
                let r = &e["valueFrom"]["secretKeyRef"];
                assert_eq!(r["name"], secret["metadata"]["name"], "{e}");
                let key = r["key"].as_str().unwrap();
                let value = data
                    .get(key)
                    .unwrap_or_else(|| panic!("no {key} in the Secret"));
                (
                    e["name"].as_str().unwrap().to_owned(),
                    value.as_str().unwrap().to_owned(),
                )
            })
            .collect();
        hookcast::config::from_yaml_with_env("configmap.yaml", &yaml, &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.into())
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn example() -> Example {
    Example { objects: render() }
}

#[test]
fn every_replica_sees_every_event() {
    let ex = example();
    let replicas = u64_at(ex.deployment(), "/spec/replicas");
    let config = ex.config();
    if replicas > 1 {
        let hookcast::config::Broker::Redis(redis) = &config.broker else {
            panic!(
                "{replicas} replicas with the in-memory broker: each sees only its own webhooks"
            );
        };
        // The URL holds a password: it comes from the Secret, not the ConfigMap.
        let cm = one(&ex.objects, "ConfigMap")["data"]["hookcast.yaml"]
            .as_str()
            .unwrap();
        assert!(
            !cm.contains(&redis.url),
            "the Redis URL is in the ConfigMap"
        );
        assert!(cm.contains("url_env:"), "{cm}");
    }
}

#[test]
fn the_service_reaches_hookcast_by_port_number_and_never_the_admin_port() {
    let ex = example();
    let config = ex.config();
    let admin = config.admin.expect("the probes need the admin listener");
    let service = one(&ex.objects, "Service");
    assert!(selects(
        &service["spec"]["selector"],
        &ex.pod()["metadata"]["labels"]
    ));
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(
        ports[0]["targetPort"].as_u64(),
        Some(u64::from(config.listen.port())),
        "targetPort must be hookcast's listen port, as a number"
    );
    let declared: Vec<u64> = ex.hookcast()["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    assert!(declared.contains(&u64::from(config.listen.port())));
    assert!(declared.contains(&u64::from(admin.port())));
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(
            ex.hookcast()[probe]["httpGet"]["port"].as_u64(),
            Some(u64::from(admin.port())),
            "{probe} on the admin port, by number"
        );
    }
    assert_eq!(
        ex.hookcast()["readinessProbe"]["httpGet"]["path"],
        "/readyz"
    );
}

#[test]
fn the_network_policy_opens_the_admin_port_to_no_one_but_prometheus() {
    let ex = example();
    let admin = u64::from(ex.config().admin.unwrap().port());
    let listen = u64::from(ex.config().listen.port());
    let policy = one(&ex.objects, "NetworkPolicy");
    assert!(selects(
        &policy["spec"]["podSelector"]["matchLabels"],
        &ex.pod()["metadata"]["labels"]
    ));
    assert!(
        policy["spec"]["policyTypes"]
            .as_array()
            .unwrap()
            .contains(&Value::from("Ingress"))
    );
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    let ports = |rule: &Value| -> Vec<u64> {
        rule["ports"]
            .as_array()
            .expect("every rule names its ports")
            .iter()
            .map(|p| p["port"].as_u64().expect("ports by number"))
            .collect()
    };
    let open: Vec<&Value> = rules.iter().filter(|r| r.get("from").is_none()).collect();
    assert!(
        open.iter().any(|r| ports(r).contains(&listen)),
        "the public port is open"
    );
    for rule in &open {
        assert!(!ports(rule).contains(&admin), "admin open to all: {rule}");
    }
    let admin_rules: Vec<&Value> = rules.iter().filter(|r| ports(r).contains(&admin)).collect();
    assert!(!admin_rules.is_empty(), "Prometheus can scrape");
    for rule in admin_rules {
        let from = rule["from"].as_array().unwrap();
        assert!(!from.is_empty(), "{rule}");
        for peer in from {
            assert!(
                peer.get("podSelector").is_some() || peer.get("namespaceSelector").is_some(),
                "{peer}"
            );
            assert!(peer.get("ipBlock").is_none(), "{peer}");
        }
    }
}

#[test]
fn a_disruption_budget_keeps_a_replica_serving() {
    let ex = example();
    let replicas = u64_at(ex.deployment(), "/spec/replicas");
    let pdb = one(&ex.objects, "PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert!(selects(
        &pdb["spec"]["selector"]["matchLabels"],
        &ex.pod()["metadata"]["labels"]
    ));
    let min = u64_at(pdb, "/spec/minAvailable");
    assert!(
        min >= 1 && min < replicas,
        "minAvailable {min} of {replicas}"
    );
}

#[test]
fn security_settings_are_hookcasts_own_and_match_the_image() {
    let ex = example();
    let pod = &ex.pod()["spec"];
    for key in ["runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup"] {
        assert!(
            pod["securityContext"].get(key).is_none(),
            "the pod-wide {key} would be forced on the application"
        );
    }
    let sc = &ex.hookcast()["securityContext"];
    // The image's USER (deploy/Dockerfile).
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("deploy/Dockerfile")).unwrap();
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the final stage");
    assert_eq!(
        user.trim(),
        format!("{}:{}", sc["runAsUser"], sc["runAsGroup"])
    );
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
}

#[test]
fn the_grace_period_covers_pre_stop_and_the_drain() {
    let ex = example();
    let config = ex.config();
    let grace = u64_at(ex.pod(), "/spec/terminationGracePeriodSeconds");
    let pre_stop = ex
        .hookcast()
        .pointer("/lifecycle/preStop/sleep/seconds")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    assert!(
        grace > pre_stop + config.shutdown_grace.as_secs(),
        "terminationGracePeriodSeconds {grace} <= preStop {pre_stop} s + shutdown_grace"
    );
}

/// Fields of the Deployment and the oldest Kubernetes minor version (1.x) in which
/// each works without a feature gate.
const NEEDS: [(&str, u32); 3] = [
    // Native sidecars: beta, on by default, in 1.29.
    ("/spec/template/spec/initContainers/0/restartPolicy", 29),
    // The preStop sleep action: alpha (off) in 1.29, beta (on by default) in 1.30.
    (
        "/spec/template/spec/initContainers/0/lifecycle/preStop/sleep",
        30,
    ),
    // Deployment apps/v1 and PodDisruptionBudget policy/v1 (1.21) are older.
    ("/spec/template/spec/containers", 21),
];

#[test]
fn the_readme_states_the_oldest_kubernetes_every_field_needs() {
    let ex = example();
    let deployment = ex.deployment();
    let oldest = NEEDS
        .iter()
        .filter(|(pointer, _)| deployment.pointer(pointer).is_some())
        .map(|(_, minor)| *minor)
        .max()
        .unwrap();
    let readme = std::fs::read_to_string(Path::new(ROOT).join("deploy/README.md")).unwrap();
    let claim = format!("Kubernetes 1.{oldest} or newer");
    assert!(
        readme.contains(&claim),
        "deploy/README.md must say {claim:?}"
    );
    let ci = std::fs::read_to_string(Path::new(ROOT).join(".ci/run")).unwrap();
    assert!(
        ci.contains(&format!("for version in 1.{oldest}.0 ")),
        ".ci/run validates the manifests against 1.{oldest}"
    );
}
