//! Forged, expired, missing and misplaced credentials.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::json;

use crate::support::{both_backends, expect_error, status_json, Db, TestServer, API_KEY, JWT_SECRET};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn hs256(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn user_tokens_are_checked(db: Db) {
    let server = TestServer::start(db).await;
    server.put_class("c", "plus", false).await;
    server.put_member("c", "u", "parent", true).await;
    let path = "/v1/classes/c/capabilities";

    let valid = hs256(JWT_SECRET, json!({ "sub": "u", "exp": now() + 60 }));
    let valid_with_times =
        hs256(JWT_SECRET, json!({ "sub": "u", "exp": now() + 3600, "iat": now() - 10, "nbf": now() - 10 }));
    for token in [valid, valid_with_times] {
        let (status, _) =
            status_json(server.request(Method::GET, path).bearer_auth(&token).send().await.unwrap()).await;
        assert_eq!(status, 200);
    }

    let forged = hs256("another-secret-another-secret-0000", json!({ "sub": "u", "exp": now() + 60 }));
    let expired = hs256(JWT_SECRET, json!({ "sub": "u", "exp": now() - 3600 }));
    let no_exp = hs256(JWT_SECRET, json!({ "sub": "u" }));
    let bad_sub = hs256(JWT_SECRET, json!({ "sub": "../u", "exp": now() + 60 }));
    // alg "none": header {"alg":"none"}, no signature.
    let unsigned = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(json!({ "sub": "u", "exp": now() + 60 }).to_string().as_bytes())
    );
    let not_yet = hs256(JWT_SECRET, json!({ "sub": "u", "exp": now() + 600, "nbf": now() + 300 }));
    let issued_in_the_future =
        hs256(JWT_SECRET, json!({ "sub": "u", "exp": now() + 7200, "iat": now() + 3600 }));
    let for_ten_years = hs256(JWT_SECRET, json!({ "sub": "u", "exp": now() + 10 * 365 * 86400 }));
    let issued_long_ago =
        hs256(JWT_SECRET, json!({ "sub": "u", "exp": now() + 60, "iat": now() - 30 * 86400 }));
    for token in [
        forged,
        expired,
        no_exp,
        bad_sub,
        unsigned,
        not_yet,
        issued_in_the_future,
        for_ten_years,
        issued_long_ago,
        "garbage".to_owned(),
        API_KEY.to_owned(),
    ] {
        let response = server.request(Method::GET, path).bearer_auth(&token).send().await.unwrap();
        expect_error(response, 401, "unauthorized").await;
    }
    expect_error(server.request(Method::GET, path).send().await.unwrap(), 401, "unauthorized").await;
    let basic = server.request(Method::GET, path).basic_auth("u", Some("p")).send().await.unwrap();
    expect_error(basic, 401, "unauthorized").await;
}
both_backends!(user_tokens_are_checked);

async fn sync_api_needs_the_api_key(db: Db) {
    let server = TestServer::start(db).await;
    let body = json!({ "name": "c", "tier": "plus" });
    let user_token = hs256(JWT_SECRET, json!({ "sub": "u", "exp": now() + 60 }));
    for key in [Some("wrong-key-wrong-key"), Some(user_token.as_str()), None] {
        let mut request = server.request(Method::PUT, "/v1/classes/c").json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        expect_error(request.send().await.unwrap(), 401, "unauthorized").await;
    }
    let delete = server.request(Method::DELETE, "/v1/classes/c").bearer_auth("nope-nope-nope-nope").send();
    expect_error(delete.await.unwrap(), 401, "unauthorized").await;
    // Nothing was created by the refused requests.
    let get = server.backend(Method::GET, "/v1/classes/c").send().await.unwrap();
    expect_error(get, 404, "not_found").await;
}
both_backends!(sync_api_needs_the_api_key);

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Generates a key pair with the openssl CLI; returns (private PEM, public key file).
fn openssl_keypair(dir: &std::path::Path, algorithm: &str) -> (Vec<u8>, std::path::PathBuf) {
    let private = dir.join(format!("{algorithm}.key"));
    let public = dir.join(format!("{algorithm}.pub"));
    let mut genpkey = std::process::Command::new("openssl");
    genpkey.arg("genpkey").arg("-out").arg(&private);
    match algorithm {
        "ed25519" => genpkey.args(["-algorithm", "ed25519"]),
        _ => genpkey.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
    };
    assert!(genpkey.status().unwrap().success());
    let status = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(status.success());
    (std::fs::read(&private).unwrap(), public)
}

#[tokio::test]
async fn asymmetric_tokens_eddsa_and_rs256() {
    let keys = tempfile::tempdir().unwrap();
    for (name, algorithm, config_algorithm) in [
        ("ed25519", Algorithm::EdDSA, signaling::config::JwtAlgorithm::EdDSA),
        ("rsa", Algorithm::RS256, signaling::config::JwtAlgorithm::RS256),
    ] {
        let (private_pem, public_file) = openssl_keypair(keys.path(), name);
        let server = TestServer::start_with(Db::Sqlite, |config| {
            config.auth.jwt_secret = None;
            config.auth.jwt_algorithm = config_algorithm;
            config.auth.jwt_public_key_file = Some(public_file.clone());
        })
        .await;
        server.put_class("c", "plus", false).await;
        server.put_member("c", "u", "parent", true).await;
        let key = match algorithm {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(&private_pem).unwrap(),
            _ => EncodingKey::from_rsa_pem(&private_pem).unwrap(),
        };
        let claims = json!({ "sub": "u", "exp": now() + 60 });
        let token = jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).unwrap();
        let response = server.request(Method::GET, "/v1/classes/c/capabilities").bearer_auth(&token).send();
        let (status, body) = status_json(response.await.unwrap()).await;
        assert_eq!(status, 200, "{name}: {body}");
        // An HS256 token, even one "signed" with the public key's bytes, is refused.
        let confused = hs256(&String::from_utf8_lossy(&std::fs::read(&public_file).unwrap()), claims.clone());
        let response =
            server.request(Method::GET, "/v1/classes/c/capabilities").bearer_auth(&confused).send();
        expect_error(response.await.unwrap(), 401, "unauthorized").await;
    }
}
