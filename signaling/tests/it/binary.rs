//! The real `signaling` binary: refusing to start without secrets, demo mode, graceful shutdown.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use crate::support::{free_port, spawn_binary};

#[test]
fn refuses_to_start_without_secrets() {
    let data = tempfile::tempdir().unwrap();
    let output = spawn_binary(&["serve"], &[], data.path()).wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to start") && stderr.contains("KLASS_API_KEY"), "{stderr}");

    let output = spawn_binary(&["serve"], &[("KLASS_API_KEY", "0123456789abcdef0123")], data.path())
        .wait_with_output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("KLASS_JWT_SECRET"));
}

#[tokio::test]
async fn demo_mode_prints_working_tokens_and_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = spawn_binary(&["serve", "--demo"], &[("KLASS_HTTP_ADDR", &addr)], data.path());
    let stdout = child.stdout.take().unwrap();

    // The demo prints one curl line per demo user; collect them. The reader keeps draining stdout
    // afterwards so that the server never writes into a closed pipe.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.trim_start().starts_with("curl ") {
                let _ = tx.send(line.trim().to_owned());
            }
        }
    });
    let lines = tokio::task::spawn_blocking(move || {
        (0..16).map_while(|_| rx.recv_timeout(Duration::from_secs(120)).ok()).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert_eq!(lines.len(), 16, "one token per demo user (4 tiers x 4 people)");

    let client = reqwest::Client::new();
    for line in &lines {
        // curl -H 'Authorization: Bearer TOKEN' URL
        let token = line.split("Bearer ").nth(1).unwrap().split('\'').next().unwrap();
        let url = line.rsplit(' ').next().unwrap();
        let response = client.get(url).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200, "{line}");
        let body: serde_json::Value = response.json().await.unwrap();
        let visio = body["visio"]["allowed"].as_bool().unwrap();
        let tier = body["tier"].as_str().unwrap();
        assert_eq!(visio, tier == "standard" || tier == "plus", "{body}");
    }

    // The call page the demo links to is served, with its script.
    let page = client.get(format!("http://{addr}/call/demo-standard")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"));
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.text().await.unwrap().contains("call.js"));
    let script = client.get(format!("http://{addr}/web/call.js")).send().await.unwrap();
    assert_eq!(script.status(), 200);

    // SIGTERM: the server stops by itself, successfully.
    let pid = child.id() as i32;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
