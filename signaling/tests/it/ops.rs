//! Probes, metrics (checked by promtool) and the OpenAPI document.

use reqwest::Method;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{both_backends, status_json, Db, TestServer};

async fn probes_answer(db: Db) {
    let server = TestServer::start(db).await;
    for path in ["/healthz", "/readyz"] {
        let response = server.request(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    // Outside demo mode the home page says what the server is, with no token and no class.
    let home = server.request(Method::GET, "/").send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"));
    let html = home.text().await.unwrap();
    assert!(html.contains("href=\"/openapi.json\"") && html.contains("href=\"/healthz\""), "{html}");
    assert!(!html.contains("#token=") && !html.contains("data-kind"), "{html}");
}
both_backends!(probes_answer);

async fn metrics_pass_promtool_and_count_by_tier(db: Db) {
    let server = TestServer::start(db).await;
    server.put_class("a", "standard", false).await;
    server.put_class("b", "standard", false).await;
    server.put_class("c", "plus", false).await;
    server.put_member("a", "u1", "parent", true).await;
    server.put_member("a", "u2", "parent", true).await;
    server.put_member("a", "u3", "parent", false).await;
    server.request(Method::GET, "/no-such-page").send().await.unwrap();

    let text = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    for line in [
        r#"signaling_directory_classes{tier="standard"} 2"#,
        r#"signaling_directory_classes{tier="plus"} 1"#,
        r#"signaling_directory_classes{tier="free"} 0"#,
        r#"signaling_directory_members{tier="standard"} 2"#,
        r#"signaling_http_requests_total{method="PUT",path="/v1/classes/{class_id}",status="201"} 3"#,
        r#"signaling_http_requests_total{method="GET",path="unmatched",status="404"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert!(text.contains("signaling_http_request_duration_seconds_bucket"));
    assert!(!text.contains("u1"), "no ids in metrics");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: run scripts/install-deps.sh (Debian package prometheus)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
both_backends!(metrics_pass_promtool_and_count_by_tier);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_add_no_metric_series() {
    let server = TestServer::start(Db::Sqlite).await;
    for idx in 0..50 {
        let method = Method::from_bytes(format!("INVENTED{idx}").as_bytes()).unwrap();
        let response = server.request(method, "/v1/classes/c").send().await.unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let text = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("INVENTED"), "no invented method as a label");
    let series = text
        .lines()
        .filter(|l| l.starts_with("signaling_http_requests_total{") && l.contains("method=\"other\""))
        .count();
    assert!((1..=2).contains(&series), "one label value for every invented method: {series}");
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let server = TestServer::start(Db::Sqlite).await;
    let (status, doc) = status_json(server.request(Method::GET, "/openapi.json").send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, methods) in [
        ("/v1/classes/{class_id}", &["get", "put", "delete"][..]),
        ("/v1/classes/{class_id}/members/{user_id}", &["put", "delete"]),
        ("/v1/classes/{class_id}/capabilities", &["get"]),
        ("/v1/classes/{class_id}/posts", &["post"]),
        ("/v1/classes/{class_id}/posts/{post_id}", &["get"]),
        ("/v1/classes/{class_id}/posts/{post_id}/publish", &["post"]),
        ("/v1/classes/{class_id}/posts/{post_id}/media", &["post"]),
        ("/v1/classes/{class_id}/media/{media_id}", &["get"]),
        ("/v1/classes/{class_id}/media/{media_id}/content", &["put"]),
        ("/v1/classes/{class_id}/media/{media_id}/faces", &["get"]),
        ("/v1/classes/{class_id}/media/{media_id}/regions", &["put"]),
        ("/v1/classes/{class_id}/sessions", &["get"]),
        ("/v1/classes/{class_id}/sessions/{session_id}/attendance", &["get"]),
        ("/v1/classes/{class_id}/visio/ws", &["get"]),
        ("/v1/classes/{class_id}/visio/settings", &["get", "put"]),
        ("/v1/users/{user_id}", &["delete"]),
        ("/v1/retention/scheduled", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
    ] {
        for method in methods {
            assert!(doc["paths"][path][method].is_object(), "{method} {path} is not documented");
        }
    }
    for schema in [
        "ClassUpsert",
        "ClassView",
        "MemberUpsert",
        "MemberView",
        "Capabilities",
        "ApiError",
        "ErrorCode",
        "Tier",
        "Role",
        "PostDetail",
        "MediaView",
        "MediaLinks",
        "FacesView",
        "RegionsUpdate",
        "VisioSettings",
        "SessionRecord",
        "AttendanceRecord",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
    }
    for scheme in ["api_key", "user_jwt"] {
        assert!(doc["components"]["securitySchemes"][scheme].is_object(), "security scheme {scheme} missing");
    }
    // Every error code is listed, so clients can generate their enums from the document.
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"].as_array().unwrap();
    for code in [
        "not_a_member",
        "tier_forbids_visio",
        "member_limit_reached",
        "room_full",
        "media_not_ready",
        "e2ee_required",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code} missing from ErrorCode");
    }
    // Attendance says what was end-to-end encrypted.
    for schema in ["SessionRecord", "AttendanceRecord"] {
        let required = doc["components"]["schemas"][schema]["required"].as_array().unwrap();
        assert!(required.iter().any(|field| field == "e2ee"), "{schema} lacks e2ee");
    }
}

#[test]
fn alert_rules_pass_promtool() {
    let alerts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/alerts");
    let mut n_files = 0;
    for entry in std::fs::read_dir(&alerts).unwrap() {
        let path = entry.unwrap().path();
        let output =
            Command::new("promtool").args(["check", "rules"]).arg(&path).output().expect("run promtool");
        assert!(
            output.status.success(),
            "{}: {}{}",
            path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        n_files += 1;
    }
    assert!(n_files > 0);
}

/// The manifests of the Kustomize base and overlays parse, every configuration an overlay gives
/// (`config.yaml`) is a valid server config, and every KLASS_* variable they set is one the
/// program reads. (scripts/k8s-validate.sh renders the overlays and checks them against
/// Kubernetes' schemas.)
#[test]
fn k8s_manifests_parse_and_use_known_variables() {
    let known = [
        "KLASS_CONFIG_BODY",
        "KLASS_API_KEY",
        "KLASS_JWT_SECRET",
        "KLASS_DATABASE_URL",
        "KLASS_SFU_ADVERTISED_IP",
        "KLASS_TURN_SECRET",
        // The cluster overlay's replicas and SFU nodes (docs/cluster.md).
        "KLASS_CLUSTER",
        "KLASS_CLUSTER_SECRET",
        "KLASS_NODE_ID",
        "KLASS_NODE_ADDR",
        "KLASS_NODE_URL",
    ];
    // Each of them is one the server's configuration reads.
    let config_source = include_str!("../../src/config.rs");
    for var in known {
        assert!(config_source.contains(&format!("\"{var}\"")), "config.rs does not read {var}");
    }
    // `media-worker work` reads these (media-worker's CLI test checks its `--help` lists them).
    let worker = ["KLASS_DATABASE_URL", "KLASS_STORAGE_URL", "KLASS_WORKER_METRICS_ADDR", "KLASS_FACE_MODEL"];
    let k8s = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s");
    let mut files = Vec::new();
    for dir in ["base", "overlays/one-node", "overlays/cluster"] {
        for entry in std::fs::read_dir(k8s.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "yaml") {
                files.push(path);
            }
        }
    }
    let (mut n_configs, mut n_docs) = (0, 0);
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        if name == "config.yaml" {
            // As a pod gets it: the body in KLASS_CONFIG_BODY, secrets in KLASS_* variables.
            let env = |key: &str| match key {
                "KLASS_CONFIG_BODY" => Some(text.clone()),
                "KLASS_API_KEY" => Some("k8s-test-api-key-0123456789".to_owned()),
                "KLASS_JWT_SECRET" | "KLASS_TURN_SECRET" => {
                    Some("k8s-test-secret-0123456789abcdef0123".to_owned())
                }
                _ => None,
            };
            let mut config = signaling::config::Config::load(None, &env)
                .unwrap_or_else(|err| panic!("{}: not a config: {err}", path.display()));
            config.validate().unwrap_or_else(|err| panic!("{}: not a valid config: {err}", path.display()));
            n_configs += 1;
        } else if name != "kustomization.yaml" {
            n_docs += check_manifest(path, &text, if name == "media-worker.yaml" { &worker } else { &known });
        }
    }
    assert_eq!(n_configs, 3);
    assert!(n_docs >= 15, "{n_docs}");
}

/// Parses a manifest (a JSON patch is a list of operations; anything else, documents that each
/// have a kind), checks the KLASS_* variables it sets against `known`, and returns its number of
/// documents.
fn check_manifest(path: &std::path::Path, text: &str, known: &[&str]) -> usize {
    use serde::Deserialize;
    let mut n_docs = 0;
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(document).unwrap();
        if value.is_sequence() {
            assert!(value[0]["op"].is_string(), "{}: a list that is no JSON patch", path.display());
            continue;
        }
        assert!(value["kind"].as_str().is_some(), "{}: every document has a kind", path.display());
        n_docs += 1;
    }
    for line in text.lines().filter(|line| line.contains("- name: KLASS_")) {
        let var = line.trim().trim_start_matches("- name: ");
        assert!(known.contains(&var), "{}: {var} is not read", path.display());
    }
    n_docs
}

/// Every series the dashboard queries is one the server exports, so a rename cannot blank a panel.
#[tokio::test]
async fn dashboard_queries_exported_metrics() {
    let server = TestServer::start(Db::Sqlite).await;
    server.request(Method::GET, "/healthz").send().await.unwrap();
    let exported = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/dashboards/klass-overview.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut n_queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if name.starts_with("signaling_")
                    || name.starts_with("sfu_")
                    || name.starts_with("klass_media_")
                {
                    let family = name.trim_end_matches("_bucket");
                    assert!(exported.contains(&format!("# TYPE {family} ")), "{family} is not exported");
                }
            }
            n_queries += 1;
        }
    }
    assert!(n_queries >= 15);
}
