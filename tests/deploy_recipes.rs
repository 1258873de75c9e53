//! deploy/ must not rot (issue 6) and must be safe to copy (issue 12):
//! every TOML, JSON and YAML recipe parses, the fields that make it work
//! are there, every wharf config in it (files and the Kubernetes ConfigMap)
//! passes `wharf check-config` without an open-push warning, Kubernetes
//! serves the TLS the client configs expect on a port nodes can reach, has
//! a PodDisruptionBudget, a ServiceMonitor and no placeholder secret, and
//! the release build is stripped with a small build context.
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy().join(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

/// Every file under deploy/ with one of `exts`.
fn files(exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![deploy()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| exts.contains(&x))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Run `wharf check-config` on `text`; it must pass. Returns its output.
fn check_config(text: &str, what: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.toml");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(support::bin())
        .arg("check-config")
        .arg("--config")
        .arg(&p)
        .env_remove("WHARF_CONFIG")
        // What the Secret / EnvironmentFile provides in production.
        .env("DOCKERHUB_USER", "deploy-test")
        .env("DOCKERHUB_TOKEN", "deploy-test-token")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} fails `wharf check-config`:\n{text}"
    );
    text
}

#[test]
fn every_recipe_parses() {
    let mut n = 0;
    for p in files(&["toml", "conf"]) {
        let text = std::fs::read_to_string(&p).unwrap();
        text.parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        n += 1;
    }
    for p in files(&["json"]) {
        serde_json::from_str::<Json>(&std::fs::read_to_string(&p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        n += 1;
    }
    for p in files(&["yaml", "yml"]) {
        let docs = yaml_docs(&std::fs::read_to_string(&p).unwrap());
        assert!(!docs.is_empty(), "{}: no documents", p.display());
        n += 1;
    }
    assert!(n >= 8, "only {n} recipes found under deploy/");
}

fn yaml_docs(text: &str) -> Vec<Json> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|d| Json::deserialize(d).unwrap_or_else(|e| panic!("YAML: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn wharf_configs_pass_check_config_and_never_open_push() {
    let docs = yaml_docs(&read("kubernetes/wharf.yaml"));
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    let cfg = cm["data"]["config.toml"]
        .as_str()
        .expect("ConfigMap data config.toml")
        .to_string();
    for (what, text) in [
        ("systemd/config.toml", read("systemd/config.toml")),
        ("container/config.toml", read("container/config.toml")),
        ("the ConfigMap", cfg),
    ] {
        let out = check_config(&text, what);
        // Every recipe listens beyond loopback: it must be a mirror or
        // have accounts, never push for anyone on the network.
        assert!(out.contains("listen      0.0.0.0:"), "{what}:\n{out}");
        assert!(!out.contains("can push"), "{what} allows open push:\n{out}");
        assert!(
            out.contains("mode        mirror") || !out.contains("auth        open"),
            "{what}:\n{out}"
        );
        assert!(
            !out.contains("CANNOT BE READ"),
            "{what} needs a secret to pull at all:\n{out}"
        );
    }
}

/// The document of kind `k` in `docs` (read from `file`).
fn of_kind<'a>(docs: &'a [Json], k: &str, file: &str) -> &'a Json {
    docs.iter()
        .find(|d| d["kind"] == k)
        .unwrap_or_else(|| panic!("no {k} in {file}"))
}

#[test]
fn kubernetes_replicas_on_s3() {
    let docs = yaml_docs(&read("kubernetes/wharf-s3.yaml"));
    let kind = |k: &str| of_kind(&docs, k, "wharf-s3.yaml");
    let dep = kind("Deployment");
    assert_eq!(dep["spec"]["replicas"], 3);
    let spec = &dep["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        docs.iter()
            .all(|d| d["kind"] != "StatefulSet" && d["kind"] != "PersistentVolumeClaim"),
        "no PersistentVolume: everything is in the bucket"
    );
    let cm = kind("ConfigMap");
    let text = cm["data"]["config.toml"].as_str().unwrap();
    let cfg: toml::Table = text.parse().unwrap();
    assert_eq!(cfg["storage"]["backend"].as_str(), Some("s3"));
    // The data directory (spool only) is an emptyDir.
    let data_dir = cfg["storage"]["data_dir"].as_str().unwrap();
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == data_dir)
        .expect("a mount at storage.data_dir");
    let vol = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert!(vol["emptyDir"].is_object(), "{vol}");
    // Bucket keys come from a Secret the operator makes (none in the file).
    assert!(docs.iter().all(|d| d["kind"] != "Secret"));
    let env = c["env"].as_array().unwrap();
    assert!(env
        .iter()
        .any(|e| e["name"] == "AWS_ACCESS_KEY_ID" && e["valueFrom"]["secretKeyRef"].is_object()));
    let pdb = kind("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 2);
    assert_eq!(
        kind("Service")["spec"]["selector"],
        dep["spec"]["selector"]["matchLabels"]
    );
    let out = check_config(text, "the S3 ConfigMap");
    assert!(out.contains("mode        mirror"), "{out}");
}

#[test]
fn kubernetes_manifests() {
    let docs = yaml_docs(&read("kubernetes/wharf.yaml"));
    let kind = |k: &str| of_kind(&docs, k, "wharf.yaml");
    for d in &docs {
        assert!(
            d["apiVersion"].is_string() && d["metadata"]["name"].is_string(),
            "{d}"
        );
    }
    let sts = kind("StatefulSet");
    let spec = &sts["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);

    // The config's listen port is the container port the Service targets.
    let cm = kind("ConfigMap");
    let cfg: toml::Table = cm["data"]["config.toml"].as_str().unwrap().parse().unwrap();
    let listen = cfg["server"]["listen"].as_str().unwrap();
    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    let cport = &c["ports"][0];
    assert_eq!(cport["containerPort"].as_u64(), Some(port));
    let svc = kind("Service");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], cport["name"]);
    assert_eq!(
        svc["spec"]["selector"],
        sts["spec"]["selector"]["matchLabels"]
    );

    // The data directory is the PVC mount; the config is the ConfigMap mount.
    let data_dir = cfg["storage"]["data_dir"].as_str().unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let data_mount = mounts
        .iter()
        .find(|m| m["mountPath"] == data_dir)
        .expect("a mount at storage.data_dir");
    let claims = sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .expect("volumeClaimTemplates");
    assert!(
        claims
            .iter()
            .any(|t| t["metadata"]["name"] == data_mount["name"]),
        "data mount is not the PVC"
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    let cfg_path = args
        .iter()
        .skip_while(|a| **a != "--config")
        .nth(1)
        .expect("--config in args");
    let cfg_mount = mounts
        .iter()
        .find(|m| cfg_path.starts_with(m["mountPath"].as_str().unwrap()))
        .expect("config file on a mount");
    let vol = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == cfg_mount["name"])
        .unwrap();
    assert_eq!(vol["configMap"]["name"], cm["metadata"]["name"]);

    // No placeholder secret: Docker Hub is anonymous unless an operator
    // supplies an account (the config then names env variables that a
    // Secret they create provides).
    assert!(
        docs.iter().all(|d| d["kind"] != "Secret"),
        "a placeholder Secret makes every pull fail"
    );
    let config_text = cm["data"]["config.toml"].as_str().unwrap();
    assert!(
        !config_text
            .lines()
            .any(|l| l.trim_start().starts_with("credentials")),
        "{config_text}"
    );
    for p in files(&["yaml", "toml", "conf", "json", "md"]) {
        assert!(
            !std::fs::read_to_string(&p).unwrap().contains("change-me"),
            "{}: a placeholder credential",
            p.display()
        );
    }
    // The drain fits in the pod's termination grace period.
    let grace = cfg["server"]["shutdown_grace"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse::<u64>()
        .unwrap();
    assert!(spec["terminationGracePeriodSeconds"].as_u64().unwrap() > grace);
}

#[test]
fn kubernetes_serves_the_tls_the_clients_expect_where_nodes_reach_it() {
    let docs = yaml_docs(&read("kubernetes/wharf.yaml"));
    let kind = |k: &str| of_kind(&docs, k, "wharf.yaml");
    let cfg: toml::Table = kind("ConfigMap")["data"]["config.toml"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let tls = cfg["server"]["tls"]
        .as_table()
        .expect("[server.tls]: the client configs speak https");
    let spec = &kind("StatefulSet")["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    for key in ["cert_file", "key_file"] {
        let path = tls[key].as_str().unwrap();
        let m = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .expect("TLS files on a mount");
        let vol = spec["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        assert!(
            vol["secret"]["secretName"].is_string(),
            "{key} is not from a Secret: {vol}"
        );
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        assert_eq!(c[probe]["httpGet"]["scheme"], "HTTPS", "{probe}");
    }
    // Node-level containerd has no cluster DNS: a NodePort, and the node
    // config in deploy/kubernetes uses it over https.
    let svc = kind("Service");
    assert_eq!(svc["spec"]["type"], "NodePort");
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("a fixed nodePort");
    let hosts: toml::Table = read("kubernetes/certs.d/docker.io/hosts.toml")
        .parse()
        .unwrap();
    let (url, h) = hosts["host"].as_table().unwrap().iter().next().unwrap();
    assert!(
        url.starts_with("https://") && url.ends_with(&format!(":{node_port}")),
        "{url}"
    );
    assert!(h["ca"].is_str(), "a private CA for wharf's certificate");
    // Every client recipe speaks https too (plain HTTP is a commented option).
    for p in files(&["toml"])
        .into_iter()
        .filter(|p| p.ends_with("hosts.toml"))
    {
        let t: toml::Table = std::fs::read_to_string(&p).unwrap().parse().unwrap();
        assert!(
            t["host"]
                .as_table()
                .unwrap()
                .keys()
                .all(|u| u.starts_with("https://")),
            "{}",
            p.display()
        );
    }
    let dj: Json = serde_json::from_str(&read("clients/docker/daemon.json")).unwrap();
    assert!(dj["registry-mirrors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m.as_str().unwrap().starts_with("https://")));
}

#[test]
fn kubernetes_disruption_budget_and_service_monitor() {
    let docs = yaml_docs(&read("kubernetes/wharf.yaml"));
    let kind = |k: &str| of_kind(&docs, k, "wharf.yaml");
    let labels = &kind("StatefulSet")["spec"]["template"]["metadata"]["labels"];
    let pdb = kind("PodDisruptionBudget");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert!(
        pdb["spec"]["maxUnavailable"].is_number() || pdb["spec"]["minAvailable"].is_number(),
        "{pdb}"
    );
    let svc = kind("Service");
    let sm = yaml_docs(&read("kubernetes/servicemonitor.yaml"));
    let sm = sm
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor")
        .expect("a ServiceMonitor");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        svc["metadata"]["labels"]
    );
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(ep["port"], svc["spec"]["ports"][0]["name"]);
    assert_eq!(
        (ep["path"].as_str(), ep["scheme"].as_str()),
        (Some("/metrics"), Some("https"))
    );
}

#[test]
fn release_build_is_stripped_and_the_build_context_small() {
    let cargo: toml::Table =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let release = &cargo["profile"]["release"];
    assert!(
        matches!(
            release.get("strip").and_then(|s| s.as_str()),
            Some("debuginfo" | "symbols")
        ) || release.get("strip").and_then(|s| s.as_bool()) == Some(true),
        "{release}"
    );
    let profiling = &cargo["profile"]["profiling"];
    assert_eq!(profiling["inherits"].as_str(), Some("release"));
    assert_eq!(profiling["debug"].as_bool(), Some(true));
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .expect(".dockerignore at the repository root");
    let lines: Vec<&str> = ignore
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .collect();
    for want in ["target", ".git", "fuzz/target"] {
        assert!(lines.contains(&want), ".dockerignore lacks {want}");
    }
}

#[test]
fn client_configs() {
    // containerd hosts.toml: a wharf host that can pull and resolve.
    let mut n = 0;
    for p in files(&["toml"])
        .into_iter()
        .filter(|p| p.ends_with("hosts.toml"))
    {
        let t: toml::Table = std::fs::read_to_string(&p).unwrap().parse().unwrap();
        let hosts = t["host"]
            .as_table()
            .unwrap_or_else(|| panic!("{}: no [host.\"...\"]", p.display()));
        for (url, h) in hosts {
            assert!(
                url.starts_with("https://") || url.starts_with("http://"),
                "{url}"
            );
            let caps: Vec<&str> = h["capabilities"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c.as_str())
                .collect();
            assert!(
                caps.contains(&"pull") && caps.contains(&"resolve"),
                "{}: {caps:?}",
                p.display()
            );
        }
        n += 1;
    }
    assert!(n >= 2, "containerd hosts.toml recipes missing");
    let dh: toml::Table = read("clients/containerd/docker.io/hosts.toml")
        .parse()
        .unwrap();
    assert_eq!(dh["server"].as_str(), Some("https://registry-1.docker.io"));

    // CRI-O registries.conf: docker.io mirrored under wharf's remote name.
    let crio: toml::Table = read("clients/crio/registries.conf").parse().unwrap();
    let regs = crio["registry"].as_array().unwrap();
    let docker = regs
        .iter()
        .find(|r| r["prefix"].as_str() == Some("docker.io"))
        .expect("docker.io registry");
    let mirror = docker["mirror"].as_array().unwrap()[0]["location"]
        .as_str()
        .unwrap();
    assert!(mirror.ends_with("/docker.io"), "{mirror}");
    for r in regs {
        let m = r["mirror"].as_array().unwrap()[0]["location"]
            .as_str()
            .unwrap();
        assert!(
            m.ends_with(&format!("/{}", r["prefix"].as_str().unwrap())),
            "{m}"
        );
    }

    // Docker daemon.json.
    let dj: Json = serde_json::from_str(&read("clients/docker/daemon.json")).unwrap();
    let mirrors = dj["registry-mirrors"].as_array().expect("registry-mirrors");
    assert!(!mirrors.is_empty());
    for m in mirrors {
        let m = m.as_str().unwrap();
        assert!(m.starts_with("https://") || m.starts_with("http://"), "{m}");
    }
}

/// `key=value` lines of an INI-style unit, by section.
fn unit(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    for l in text.lines().map(str::trim) {
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') && l.ends_with(']') {
            section = l[1..l.len() - 1].to_string();
            continue;
        }
        let (k, v) = l
            .split_once('=')
            .unwrap_or_else(|| panic!("bad unit line {l:?}"));
        out.push((section.clone(), k.to_string(), v.to_string()));
    }
    out
}

#[test]
fn systemd_unit_is_sandboxed() {
    let text = read("systemd/wharf.service");
    let u = unit(&text);
    let get = |s: &str, k: &str| {
        u.iter()
            .find(|(ss, kk, _)| ss == s && kk == k)
            .map(|(_, _, v)| v.as_str())
    };
    let exec = get("Service", "ExecStart").expect("ExecStart");
    assert!(
        exec.contains("wharf serve") && exec.contains("--config /etc/wharf/config.toml"),
        "{exec}"
    );
    assert!(get("Service", "ExecReload").unwrap().contains("-HUP"));
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("DynamicUser", "yes"),
        ("StateDirectory", "wharf"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(get("Service", k), Some(v), "{k}");
    }
    // systemd waits longer than wharf's drain.
    let cfg: toml::Table = read("systemd/config.toml").parse().unwrap();
    assert_eq!(cfg["storage"]["data_dir"].as_str(), Some("/var/lib/wharf"));
    let grace: u64 = cfg["server"]["shutdown_grace"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    let stop: u64 = get("Service", "TimeoutStopSec")
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(stop > grace);
    assert!(get("Install", "WantedBy").is_some());
    // systemd's own checker, where present.
    if support::have("systemd-analyze") {
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(deploy().join("systemd/wharf.service"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // The binary path does not exist on a build machine; anything else
        // (unknown keys, bad values) is a real problem.
        let real: Vec<&str> = err
            .lines()
            .filter(|l| {
                !l.contains("/usr/local/bin/wharf")
                    && !l.trim().is_empty()
                    && !l.contains("Failed to prepare filename")
            })
            .filter(|l| l.contains("wharf.service"))
            .collect();
        assert!(real.is_empty(), "systemd-analyze verify:\n{err}");
    }
}

#[test]
fn container_recipe_is_multi_stage_distroless_non_root() {
    let text = read("container/Containerfile");
    let froms: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "not multi-stage: {froms:?}");
    assert!(froms[0].contains(" AS build"), "{froms:?}");
    let last = froms.last().unwrap();
    assert!(
        last.contains("distroless") || last.contains("scratch"),
        "runtime base {last}"
    );
    let user = text
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("USER");
    let uid = user[5..].split(':').next().unwrap().trim();
    assert!(uid != "0" && uid != "root", "{user}");
    assert!(text.contains("COPY --from=build"));
    // The config it bakes in and the paths it uses agree.
    let cfg: toml::Table = read("container/config.toml").parse().unwrap();
    let data_dir = cfg["storage"]["data_dir"].as_str().unwrap();
    assert!(
        text.contains(&format!("VOLUME [\"{data_dir}\"]")),
        "VOLUME is not storage.data_dir"
    );
    let port = cfg["server"]["listen"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap();
    assert!(text.contains(&format!("EXPOSE {port}")));
}
