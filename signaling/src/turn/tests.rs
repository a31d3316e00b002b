use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

const SECRET: &str = "klass-turn-secret-0123456789-abcdef";

fn at(unix_seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds)
}

fn config(urls: &[&str], secret: Option<&str>, ttl: u64) -> TurnConfig {
    TurnConfig {
        urls: urls.iter().map(|url| url.to_string()).collect(),
        secret: secret.map(str::to_owned),
        credential_ttl_secs: ttl,
    }
}

fn check(config: &TurnConfig, participant: &str, now: SystemTime, expected: &[IceServer]) {
    assert_eq!(ice_servers(config, participant, now), expected);
}

fn server(urls: &[&str], username: Option<&str>, credential: Option<&str>) -> IceServer {
    IceServer {
        urls: urls.iter().map(|url| url.to_string()).collect(),
        username: username.map(str::to_owned),
        credential: credential.map(str::to_owned),
    }
}

// The expected credentials were computed independently of this code:
//   python3 -c "import hmac,hashlib,base64; print(base64.b64encode(hmac.new(
//     b'klass-turn-secret-0123456789-abcdef', b'1700003600:user-42', hashlib.sha1).digest()).decode())"
//   echo -n 1700003600:user-42 | openssl dgst -sha1 -hmac klass-turn-secret-0123456789-abcdef -binary | base64
#[test]
fn credential_is_the_base64_hmac_sha1_coturn_computes() {
    assert_eq!(credential(SECRET, "1700003600:user-42"), "ijwWH4SQmNQ5+pJUJKVcHUT+9u8=");
    assert_eq!(credential(SECRET, "1700021600:participant-7"), "FdNJ8GQYyciAFcOyqDTqqFoGE1Y=");
}

#[test]
fn turn_urls_get_a_credential_that_expires_after_the_ttl() {
    let turn = config(
        &[
            "stun:turn.example.org:3478",
            "turn:turn.example.org:3478?transport=udp",
            "turns:turn.example.org:443?transport=tcp",
        ],
        Some(SECRET),
        3600,
    );
    check(
        &turn,
        "user-42",
        at(1_700_000_000),
        &[
            server(&["stun:turn.example.org:3478"], None, None),
            server(
                &["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:443?transport=tcp"],
                Some("1700003600:user-42"),
                Some("ijwWH4SQmNQ5+pJUJKVcHUT+9u8="),
            ),
        ],
    );
    // The default lifetime: six hours.
    check(
        &config(&["turns:t:443?transport=tcp"], Some(SECRET), TurnConfig::default().credential_ttl_secs),
        "participant-7",
        at(1_700_000_000),
        &[server(
            &["turns:t:443?transport=tcp"],
            Some("1700021600:participant-7"),
            Some("FdNJ8GQYyciAFcOyqDTqqFoGE1Y="),
        )],
    );
}

#[test]
fn nothing_configured_gives_no_servers_and_stun_needs_no_credential() {
    check(&TurnConfig::default(), "user-42", at(1_700_000_000), &[]);
    check(
        &config(&["stun:stun.example.org:3478"], None, 3600),
        "user-42",
        at(1_700_000_000),
        &[server(&["stun:stun.example.org:3478"], None, None)],
    );
    // A secret without TURN URLs hands out nothing.
    check(&config(&[], Some(SECRET), 3600), "user-42", at(1_700_000_000), &[]);
}

#[test]
fn validation_refuses_what_browsers_or_coturn_would() {
    let valid = |urls: &[&str], secret: Option<&str>| config(urls, secret, 3600).validate();
    assert_eq!(valid(&[], None), Ok(()));
    assert_eq!(valid(&["stun:stun.example.org:3478"], None), Ok(()));
    assert_eq!(valid(&["turns:t.example.org:443?transport=tcp"], Some(SECRET)), Ok(()));
    for url in
        ["https://t.example.org", "stuns:t.example.org", "turn:", "turn: t.example.org", "t.example.org:3478"]
    {
        assert_eq!(valid(&[url], Some(SECRET)), Err(TurnConfigError::BadUrl(url.into())), "{url}");
    }
    assert_eq!(valid(&["turn:t.example.org:3478"], None), Err(TurnConfigError::MissingSecret));
    assert_eq!(valid(&["turn:t.example.org:3478"], Some("short")), Err(TurnConfigError::ShortSecret));
    assert_eq!(config(&[], None, 60).validate(), Err(TurnConfigError::ShortTtl));
}

#[test]
fn debug_output_hides_the_secret() {
    let printed = format!("{:?}", config(&["turn:t:3478"], Some(SECRET), 3600));
    assert!(!printed.contains(SECRET), "{printed}");
}
