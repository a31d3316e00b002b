//! The command line, without a server. The scenario itself runs against the real server in
//! `scripts/loadtest-smoke.sh`, which `scripts/test.sh` calls.

use std::process::Command;

#[test]
fn call_explains_its_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest")).args(["call", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for option in [
        "--participants",
        "--cameras",
        "--speakers",
        "--speaker-period",
        "--audio-slots",
        "--thumbnails",
        "--warmup",
        "--seconds",
        "--server-pid",
        "--min-delivery",
        "--no-e2ee",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    // Protocol v2 has no last-N: receive slots replaced it.
    assert!(!help.contains("--last-n"), "--last-n is gone from the server:\n{help}");
}

#[test]
fn soak_explains_its_options() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest")).args(["soak", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for option in ["--classes", "--people", "--seconds", "--webhook-port"] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

#[test]
fn a_call_needs_two_participants_and_says_so() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["call", "--api-key", "k", "--jwt-secret", "s", "--participants", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 2 participants"));
}
