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
async fn demo_mode_serves_a_home_page_with_working_links_and_stops_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = spawn_binary(&["serve", "--demo"], &[("KLASS_HTTP_ADDR", &addr)], data.path());
    let stdout = child.stdout.take().unwrap();

    // The demo prints where its home page is (and no token); the reader keeps draining stdout
    // afterwards so that the server never writes into a closed pipe.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let printed = tokio::task::spawn_blocking(move || {
        let mut printed = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) {
            let done = line.contains("teacher's call link first");
            printed.push(line);
            if done {
                break;
            }
        }
        printed
    })
    .await
    .unwrap();
    let home = format!("http://{addr}/");
    assert!(printed.iter().any(|line| line.contains(&format!("open {home}"))), "{printed:?}");
    assert!(!printed.iter().any(|line| line.contains("eyJ")), "no token on the terminal: {printed:?}");

    // The home page: a call link per member of the classes with calls, a media link per member;
    // every token works for its class.
    let client = reqwest::Client::new();
    let page = client.get(&home).header("accept-language", "fr-FR,fr;q=0.9").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<html lang=\"fr\">"), "{html}");
    let links: Vec<(String, String, String)> = html
        .split("<a data-kind=\"")
        .skip(1)
        .map(|rest| {
            let kind = rest.split('"').next().unwrap().to_owned();
            let href = rest.split("href=\"").nth(1).unwrap().split('"').next().unwrap();
            let (path, token) = href.split_once("#token=").unwrap();
            (kind, path.to_owned(), token.to_owned())
        })
        .collect();
    let calls = links.iter().filter(|(kind, _, _)| kind == "call").count();
    let media = links.iter().filter(|(kind, _, _)| kind == "media").count();
    assert_eq!((calls, media), (8, 16), "calls for Standard and Plus members, media for all 16: {links:?}");
    for (kind, path, token) in &links {
        let class_id = path.rsplit('/').next().unwrap();
        assert!(path == &format!("/{kind}/{class_id}"), "{path}");
        let url = format!("http://{addr}/v1/classes/{class_id}/capabilities");
        let response = client.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        let visio = body["visio"]["allowed"].as_bool().unwrap();
        let tier = body["tier"].as_str().unwrap();
        assert_eq!(visio, tier == "standard" || tier == "plus", "{body}");
    }
    let english =
        client.get(&home).header("accept-language", "en-GB,en").send().await.unwrap().text().await.unwrap();
    assert!(english.contains("<html lang=\"en\">") && english.contains("Join the call as"), "{english}");

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
