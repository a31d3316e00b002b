//! TURN: who gets credentials from `GET /v1/classes/{class_id}/visio/ice-servers`, and a real coturn
//! (`turnserver` from Debian's package, which scripts/install-deps.sh installs) that opens relays
//! with them over UDP and over TLS, and refuses a wrong secret and an expired credential. The mtail
//! program of k8s/base/coturn.yaml then reads that coturn's log into the series the alerts use.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use signaling::turn::{self, TurnConfig};

use crate::support::{both_backends, expect_error, free_port, status_json, Db, TestServer};

const TURN_SECRET: &str = "turn-secret-0123456789-0123456789-abcdef";
const ICE_SERVERS: &str = "/v1/classes/c/visio/ice-servers";

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn turn_urls(config: &mut signaling::config::Config, urls: Vec<String>) {
    config.turn.urls = urls;
    config.turn.secret = Some(TURN_SECRET.into());
}

async fn ice_servers_for_members_of_classes_with_calls_only(db: Db) {
    let server = TestServer::start_with(db, |config| {
        turn_urls(config, vec!["stun:turn.test:3478".into(), "turns:turn.test:443?transport=tcp".into()])
    })
    .await;
    server.class_with_people("c", "standard", false).await;
    server.put_member("c", "waiting", "parent", false).await;
    server.class_with_people("free", "free", false).await;

    let response = server.request(Method::GET, ICE_SERVERS).send().await.unwrap();
    expect_error(response, 401, "unauthorized").await;
    let stranger =
        expect_error(server.call(Method::GET, ICE_SERVERS, "stranger").await, 403, "not_a_member").await;
    let pending =
        expect_error(server.call(Method::GET, ICE_SERVERS, "waiting").await, 403, "not_a_member").await;
    assert_eq!(stranger, pending);
    let free = server.call(Method::GET, "/v1/classes/free/visio/ice-servers", "parent").await;
    expect_error(free, 403, "tier_forbids_visio").await;

    let response = server.call(Method::GET, ICE_SERVERS, "parent").await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let (status, body) = status_json(response).await;
    assert_eq!(status, 200, "{body}");
    let ttl = TurnConfig::default().credential_ttl_secs;
    assert_eq!(body["ttl_seconds"], ttl);
    assert_eq!(body["ice_servers"][0], json!({ "urls": ["stun:turn.test:3478"] }));
    let turn_server = &body["ice_servers"][1];
    assert_eq!(turn_server["urls"], json!(["turns:turn.test:443?transport=tcp"]));
    // `<expiry>:<user id>`: the opaque id, nothing else about the user.
    let username = turn_server["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "parent");
    assert!(expiry.parse::<u64>().unwrap().abs_diff(unix_now() + ttl) < 60, "{username}");
    assert_eq!(turn_server["credential"], turn::credential(TURN_SECRET, username));
    assert_eq!(body["ice_servers"].as_array().unwrap().len(), 2, "{body}");

    let metrics = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("signaling_turn_credentials_issued_total{via=\"endpoint\"} 1"), "{metrics}");
}
both_backends!(ice_servers_for_members_of_classes_with_calls_only);

#[tokio::test]
async fn without_turn_pages_get_no_ice_servers() {
    let server = TestServer::start(Db::Sqlite).await;
    server.class_with_people("c", "plus", false).await;
    let (status, body) = status_json(server.call(Method::GET, ICE_SERVERS, "teacher").await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "ice_servers": [], "ttl_seconds": TurnConfig::default().credential_ttl_secs }));
}

/// A real coturn on loopback with a self-signed certificate, killed when dropped.
struct Coturn {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls_port: u16,
}

impl Coturn {
    fn start(secret: &str) -> Coturn {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let output = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "1", "-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(output.status.success(), "openssl: {}", String::from_utf8_lossy(&output.stderr));
        let (port, tls_port) = (free_port(), free_port());
        let dir_path = dir.path().display();
        let config = format!(
            "listening-ip=127.0.0.1\nrelay-ip=127.0.0.1\nlistening-port={port}\ntls-listening-port={tls_port}\n\
             use-auth-secret\nstatic-auth-secret={secret}\nrealm=klass.test\nfingerprint\nno-cli\nno-dtls\n\
             no-rfc5780\nno-tcp-relay\n\
             # turnutils_uclient's peers are on loopback.\nallow-loopback-peers\n\
             cert={cert}\npkey={key}\npidfile={dir_path}/turnserver.pid\nuserdb={dir_path}/turndb\n\
             log-file={dir_path}/coturn.log\nsimple-log\nverbose\n",
            cert = cert.display(),
            key = key.display(),
        );
        let config_path = dir.path().join("turnserver.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("turnserver")
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver");
        let coturn = Coturn { child, dir, port, tls_port };
        for port in [port, tls_port] {
            let deadline = Instant::now() + Duration::from_secs(15);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "coturn did not open port {port}: {}", coturn.log());
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        coturn
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("coturn.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy)]
enum Transport {
    Udp,
    Tls,
}

/// What one `turnutils_uclient` run did: whether it succeeded, the messages it got back through
/// its relays, and its output.
struct Allocation {
    success: bool,
    n_received: u64,
    output: String,
}

/// Two TURN clients on `coturn` (`-y`) that allocate relays with `username` and `credential` and
/// send each other a few messages through them, as `turnutils_uclient` from the coturn package.
fn allocate(coturn: &Coturn, transport: Transport, username: &str, credential: &str) -> Allocation {
    let mut command = Command::new("turnutils_uclient");
    command.args(["-y", "-n", "2", "-m", "1", "-l", "100", "-u", username, "-w", credential]);
    match transport {
        Transport::Udp => command.args(["-p", &coturn.port.to_string()]),
        Transport::Tls => command.args(["-t", "-S", "-p", &coturn.tls_port.to_string()]),
    };
    let mut child = command
        .arg("127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run turnutils_uclient");
    // A refused client gives up by itself after a few seconds; this only stops a hung one.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = String::new();
    child.stdout.take().unwrap().read_to_string(&mut output).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut output).unwrap();
    // "start_mclient: tot_send_msgs=4, tot_recv_msgs=4" once the run is over.
    let n_received = output
        .lines()
        .rev()
        .find_map(|line| {
            let rest = line.split("tot_recv_msgs=").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .unwrap_or(0);
    Allocation { success: status.is_some_and(|status| status.success()), n_received, output }
}

async fn allocate_async(
    coturn: &std::sync::Arc<Coturn>,
    transport: Transport,
    username: &str,
    credential: &str,
) -> Allocation {
    let (coturn, username, credential) = (coturn.clone(), username.to_owned(), credential.to_owned());
    tokio::task::spawn_blocking(move || allocate(&coturn, transport, &username, &credential)).await.unwrap()
}

/// The credentials a page gets open real relays on coturn, over UDP 3478's stand-in and over TLS;
/// a wrong secret and an expired credential open none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_relays_with_the_credentials_of_the_endpoint_only() {
    if on_path("turnserver").is_none() || on_path("turnutils_uclient").is_none() {
        eprintln!("skipped: turnserver is not installed (scripts/install-deps.sh installs Debian's coturn)");
        return;
    }
    let coturn = std::sync::Arc::new(Coturn::start(TURN_SECRET));
    let urls = vec![
        format!("turn:127.0.0.1:{}?transport=udp", coturn.port),
        format!("turns:127.0.0.1:{}?transport=tcp", coturn.tls_port),
    ];
    let server = TestServer::start_with(Db::Sqlite, |config| turn_urls(config, urls.clone())).await;
    server.class_with_people("c", "plus", false).await;
    let (status, body) = status_json(server.call(Method::GET, ICE_SERVERS, "teacher").await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ice_servers"][0]["urls"], json!(urls), "{body}");
    let username = body["ice_servers"][0]["username"].as_str().unwrap().to_owned();
    let credential = body["ice_servers"][0]["credential"].as_str().unwrap().to_owned();

    for transport in [Transport::Udp, Transport::Tls] {
        let allocation = allocate_async(&coturn, transport, &username, &credential).await;
        assert!(allocation.success && allocation.n_received > 0, "{transport:?}: {}", allocation.output);
        eprintln!(
            "{transport:?} allocation with the endpoint's credential: {} messages relayed",
            allocation.n_received
        );
    }

    let forged = turn::credential("another-secret-0123456789-0123456789", &username);
    let refused = allocate_async(&coturn, Transport::Udp, &username, &forged).await;
    assert!(!refused.success && refused.n_received == 0, "a wrong secret was accepted: {}", refused.output);
    assert!(refused.output.contains("Cannot complete Allocation"), "{}", refused.output);
    assert!(refused_by_coturn(&coturn.log(), &username), "{}", coturn.log());
    eprintln!("Udp allocation with a wrong secret: refused");

    // Issued with the right secret, but its expiry passed a minute ago.
    let config =
        TurnConfig { urls: urls.clone(), secret: Some(TURN_SECRET.into()), credential_ttl_secs: 600 };
    let expired = &turn::ice_servers(&config, "teacher", SystemTime::now() - Duration::from_secs(660))[0];
    let (username, credential) = (expired.username.clone().unwrap(), expired.credential.clone().unwrap());
    let refused = allocate_async(&coturn, Transport::Tls, &username, &credential).await;
    assert!(
        !refused.success && refused.n_received == 0,
        "an expired credential was accepted: {}",
        refused.output
    );

    assert!(refused_by_coturn(&coturn.log(), &username), "{}", coturn.log());
    eprintln!("Tls allocation with an expired credential ({username}): refused");
    check_metrics_of_the_log(&coturn, &server).await;
}

/// Whether coturn answered a request of `username` with 401: the credential, not the network,
/// was refused.
fn refused_by_coturn(log: &str, username: &str) -> bool {
    let user = format!("user <{username}>: incoming packet");
    log.lines().any(|line| line.contains(&user) && line.contains("error 401"))
}

/// The mtail program of k8s/base/coturn.yaml on the log of the coturn above, and the alerts' series.
async fn check_metrics_of_the_log(coturn: &Coturn, server: &TestServer) {
    if on_path("mtail").is_none() {
        eprintln!("skipped coturn's metrics: mtail is not installed (scripts/install-deps.sh installs it)");
        return;
    }
    let programs = coturn.dir.path().join("mtail");
    std::fs::create_dir_all(&programs).unwrap();
    let program = coturn_config_map()["coturn.mtail"].as_str().unwrap().to_owned();
    std::fs::write(programs.join("coturn.mtail"), program).unwrap();
    let output = Command::new("mtail")
        .args(["--one_shot", "--one_shot_format", "prometheus", "--emit_prog_label=false", "--port", "0"])
        .arg("--progs")
        .arg(&programs)
        .arg("--logs")
        .arg(coturn.log_path())
        .output()
        .expect("run mtail");
    let exported = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "mtail: {exported}{}", String::from_utf8_lossy(&output.stderr));
    let value = |series: &str| -> f64 {
        exported
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {exported}"))
    };
    assert_eq!(value("coturn_starts_total"), 1.0, "{exported}");
    assert!(value("coturn_allocations_total{result=\"success\"}") >= 2.0, "{exported}");
    assert!(value("coturn_auth_failures_total") >= 2.0, "{exported}");
    assert!(value("coturn_sessions_total{transport=\"tls\"}") >= 1.0, "{exported}");
    assert!(value("coturn_sessions_total{transport=\"plain\"}") >= 1.0, "{exported}");
    eprintln!("coturn's metrics through mtail:\n{exported}");

    // Every series the TURN alerts read is exported, by mtail or by the server.
    let served = server.request(Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let rules = std::fs::read_to_string(repo_file("k8s/alerts/turn.rules.yaml")).unwrap();
    let mut n_series = 0;
    for name in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
        // `coturn_*` in a comment is no series.
        let source = if name.ends_with('_') {
            continue;
        } else if name.starts_with("coturn_") {
            &exported
        } else if name.starts_with("signaling_") {
            &served
        } else {
            continue;
        };
        assert!(source.contains(&format!("# TYPE {name} ")), "{name} is not exported");
        n_series += 1;
    }
    assert!(n_series >= 5, "{n_series}");
}

/// The documents of a manifest under k8s/.
fn manifest(file: &str) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(repo_file(&format!("k8s/{file}"))).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_yaml::Value::deserialize(document).unwrap())
        .collect()
}

fn of_kind<'a>(documents: &'a [serde_yaml::Value], kind: &str) -> &'a serde_yaml::Value {
    documents.iter().find(|document| document["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

fn coturn_config_map() -> serde_yaml::Value {
    of_kind(&manifest("base/coturn.yaml"), "ConfigMap")["data"].clone()
}

/// What coturn.yaml, signaling.yaml and the overlays' configurations must agree on, and what keeps
/// coturn from being an open relay into the cluster.
#[test]
fn coturn_manifest_shares_the_secret_and_relays_to_the_sfu_only() {
    let documents = manifest("base/coturn.yaml");
    for document in &documents {
        assert!(document["kind"].as_str().is_some(), "every document has a kind");
    }
    let config = coturn_config_map()["turnserver.conf"].as_str().unwrap().to_owned();
    let options: Vec<&str> =
        config.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).collect();
    for required in ["use-auth-secret", "no-cli", "no-tcp-relay", "denied-peer-ip=0.0.0.0-255.255.255.255"] {
        assert!(options.contains(&required), "turnserver.conf lacks {required}");
    }
    // The secret comes from the Secret at start, never from the ConfigMap.
    assert!(!config.contains("static-auth-secret="), "{config}");
    if on_path("turnserver").is_some() {
        // Every option is one this coturn knows (it ignores unknown ones with a warning).
        let help = Command::new("turnserver").arg("-h").output().expect("run turnserver -h");
        let help =
            format!("{}{}", String::from_utf8_lossy(&help.stdout), String::from_utf8_lossy(&help.stderr));
        for option in &options {
            let name = option.split('=').next().unwrap();
            assert!(help.contains(&format!("--{name}")), "turnserver does not know {name}");
        }
    }

    let deployment = of_kind(&documents, "Deployment");
    let spec = &deployment["spec"]["template"]["spec"];
    let secret_refs: Vec<&serde_yaml::Value> = spec["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|container| container["env"].as_sequence().unwrap())
        .map(|env| &env["valueFrom"]["secretKeyRef"])
        .collect();
    assert_eq!(secret_refs.len(), 1);
    let signaling = manifest("base/signaling.yaml");
    let signaling_env =
        &of_kind(&signaling, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"];
    let shared = signaling_env
        .as_sequence()
        .unwrap()
        .iter()
        .find(|env| env["name"] == "KLASS_TURN_SECRET")
        .expect("signaling reads KLASS_TURN_SECRET");
    assert_eq!(&shared["valueFrom"]["secretKeyRef"], secret_refs[0], "coturn and signaling share one secret");
    assert!(of_kind(&manifest("base/secret.example.yaml"), "Secret")["stringData"]["turn-secret"].is_string());
    // The TURN URLs signaling hands out in each overlay are valid, with the secret set.
    for overlay in ["one-node", "cluster"] {
        let body =
            std::fs::read_to_string(repo_file(&format!("k8s/overlays/{overlay}/config.yaml"))).unwrap();
        let mut turn = signaling::config::Config::from_yaml(&body).unwrap().turn;
        let has_tls_443 = turn.urls.iter().any(|url| url.starts_with("turns:") && url.contains(":443"));
        assert!(has_tls_443, "{overlay}: {:?}", turn.urls);
        turn.secret = Some(TURN_SECRET.into());
        turn.validate().unwrap();
    }

    // Metrics: scraped where mtail listens.
    let annotations = &deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], "9641");
    let metrics = spec["containers"].as_sequence().unwrap().iter().find(|c| c["name"] == "metrics").unwrap();
    assert!(metrics["command"][2].as_str().unwrap().contains("--port 9641"), "{:?}", metrics["command"]);
    // Clients reach TLS on 443 and plain TURN on 3478 over UDP.
    let ports: Vec<(u64, String)> = of_kind(&documents, "Service")["spec"]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|port| (port["port"].as_u64().unwrap(), port["protocol"].as_str().unwrap().to_owned()))
        .collect();
    for expected in [(443, "TCP"), (3478, "UDP"), (3478, "TCP")] {
        assert!(ports.contains(&(expected.0, expected.1.to_owned())), "{ports:?}");
    }
}
