use std::collections::HashMap;

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |key| map.get(key).cloned()
}

#[test]
fn env_overrides_yaml() {
    let env = env_of(&[
        ("KLASS_CONFIG_BODY", "http: { addr: '0.0.0.0:9000' }\ndata_dir: /srv/klass\n"),
        ("KLASS_DATA_DIR", "/var/lib/klass"),
        ("KLASS_API_KEY", "k".repeat(20).as_str()),
    ]);
    let config = Config::load(None, &env).unwrap();
    assert_eq!(config.http.addr.port(), 9000);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/klass"));
    assert_eq!(config.auth.api_key.as_deref(), Some("k".repeat(20).as_str()));
    assert!(config.database_url().starts_with("sqlite:///var/lib/klass/klass.db"));
}

#[test]
fn unknown_keys_are_errors() {
    assert!(Config::from_yaml("htpp: { addr: '0.0.0.0:9000' }").is_err());
    assert!(Config::from_yaml("tiers: { gold: { max_members: 3 } }").is_err());
}

#[test]
fn missing_secrets_refuse_to_start_unless_demo() {
    let mut config = Config::default();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("KLASS_API_KEY"), "{err}");

    config.auth.api_key = Some("k".repeat(20));
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("KLASS_JWT_SECRET"), "{err}");

    config.auth.jwt_secret = Some("short".into());
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("too short"), "{err}");

    let mut demo = Config { demo: true, ..Config::default() };
    demo.validate().unwrap();
    assert!(demo.auth.api_key.is_some() && demo.auth.jwt_secret.is_some());
}

#[test]
fn debug_output_hides_secrets() {
    let mut config = Config::default();
    config.auth.api_key = Some("super-secret-api-key".into());
    let printed = format!("{config:?}");
    assert!(!printed.contains("super-secret-api-key"));
}

#[test]
fn the_sample_config_parses() {
    let sample = include_str!("../../../config.sample.yaml");
    let config = Config::from_yaml(sample).unwrap();
    assert!(!config.demo);
}

fn valid_base() -> Config {
    let mut config = Config::default();
    config.auth.api_key = Some("k".repeat(20));
    config.auth.jwt_secret = Some("j".repeat(32));
    config
}

#[test]
fn turn_comes_from_yaml_and_environment() {
    let env = env_of(&[
        ("KLASS_CONFIG_BODY", "turn: { urls: ['stun:old.example.org:3478'], credential_ttl_secs: 7200 }\n"),
        ("KLASS_TURN_URLS", "turn:t.example.org:3478?transport=udp, turns:t.example.org:443?transport=tcp"),
        ("KLASS_TURN_SECRET", "s".repeat(32).as_str()),
    ]);
    let config = Config::load(None, &env).unwrap();
    assert_eq!(
        config.turn.urls,
        ["turn:t.example.org:3478?transport=udp", "turns:t.example.org:443?transport=tcp"]
    );
    assert_eq!(config.turn.secret.as_deref(), Some("s".repeat(32).as_str()));
    assert_eq!(config.turn.credential_ttl_secs, 7200);
    // An empty variable clears the list.
    let cleared = Config::load(None, &env_of(&[("KLASS_TURN_URLS", "")])).unwrap();
    assert!(cleared.turn.urls.is_empty());
    // The secret is never printed.
    assert!(!format!("{config:?}").contains(&"s".repeat(32)));
}

#[test]
fn turn_needs_its_secret_and_ice_urls() {
    let mut config = valid_base();
    config.validate().unwrap();

    config.turn.urls = vec!["stun:stun.example.org:3478".into()];
    config.validate().unwrap();

    config.turn.urls.push("turns:t.example.org:443?transport=tcp".into());
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("KLASS_TURN_SECRET"), "{err}");

    config.turn.secret = Some("short".into());
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("KLASS_TURN_SECRET is too short"), "{err}");

    config.turn.secret = Some("s".repeat(32));
    config.validate().unwrap();

    config.turn.urls.push("https://t.example.org".into());
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("https://t.example.org") && err.contains("turns:"), "{err}");
}

#[test]
fn cluster_comes_from_environment_and_needs_a_secret() {
    let env = env_of(&[
        ("KLASS_API_KEY", "k".repeat(20).as_str()),
        ("KLASS_JWT_SECRET", "j".repeat(32).as_str()),
        ("KLASS_CLUSTER", "true"),
        ("KLASS_NODE_ID", "sfu-0"),
        ("KLASS_NODE_ADDR", "0.0.0.0:7881"),
        ("KLASS_NODE_URL", "ws://sfu-0.sfu:7881"),
        ("KLASS_CLUSTER_HEARTBEAT_MS", "500"),
        ("KLASS_CLUSTER_DEAD_AFTER_MS", "2000"),
        ("KLASS_NODE_DRAIN_TIMEOUT_SECS", "90"),
    ]);
    let mut config = Config::load(None, &env).unwrap();
    assert!(config.cluster.enabled);
    assert_eq!(config.cluster.node_id.as_deref(), Some("sfu-0"));
    assert_eq!(config.cluster.node_addr.port(), 7881);
    assert_eq!(config.cluster.node_url.as_deref(), Some("ws://sfu-0.sfu:7881"));
    assert_eq!((config.cluster.heartbeat_ms, config.cluster.dead_after_ms), (500, 2000));
    assert_eq!(config.cluster.drain_timeout_secs, 90);
    assert!(config.validate().is_err(), "a replica of a cluster needs the secret");
    config.cluster.secret = Some("c".repeat(32));
    config.validate().unwrap();
    assert!(!format!("{config:?}").contains(&"c".repeat(32)), "the secret is never printed");
    config.cluster.dead_after_ms = 600;
    assert!(config.validate().is_err(), "dead after less than two heartbeats");
    // Off by default: one process, no secret needed.
    let mut single = valid_base();
    assert!(!single.cluster.enabled);
    single.validate().unwrap();
}
