//! The real program against the real kernel: a network namespace of its own, an NFQUEUE rule on
//! its loopback, UDP datagrams through it. Needs root, `ip` and `iptables`; without them the
//! kernel test says so and passes (the command-line test runs everywhere).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_netimpair");

#[test]
fn refuses_bad_settings() {
    let out = Command::new(BIN).args(["--queue", "10:loss=200"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 100"), "{out:?}");
    let out = Command::new(BIN).args(["--queue", "10:speed=3"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown setting"), "{out:?}");
}

/// A namespace, removed (with what runs in it) on drop, even when the test fails.
struct Netns {
    name: String,
    impair: Option<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(child) = &mut self.impair {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn ip_netns_exec(ns: &str, args: &[&str]) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A UDP socket on 127.0.0.1 inside the namespace: made on a thread that entered it (a socket
/// stays in the namespace it was made in).
fn socket_in(ns: &str) -> UdpSocket {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap();
        // SAFETY: setns on this thread only, with a namespace descriptor we opened.
        assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
        UdpSocket::bind("127.0.0.1:0").unwrap()
    })
    .join()
    .unwrap()
}

fn control(path: &str, line: &str) -> String {
    let mut stream = UnixStream::connect(path).unwrap();
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    answer.trim().to_owned()
}

/// Sends `n` numbered datagrams to itself, 10 ms apart; returns (number, one-way delay) of those
/// that came back within `wait` after the last.
fn send_and_receive(socket: &UdpSocket, n: u32, wait: Duration) -> Vec<(u32, Duration)> {
    let to = socket.local_addr().unwrap();
    let mut sent_at = Vec::new();
    for i in 0..n {
        socket.send_to(&i.to_be_bytes(), to).unwrap();
        sent_at.push(Instant::now());
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
            ))
            .unwrap();
        match socket.recv_from(&mut buf) {
            Ok((4, _)) => {
                let i = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                got.push((i, sent_at[i as usize].elapsed()));
            }
            _ => continue,
        }
    }
    got
}

#[test]
fn delays_cuts_and_restores_real_packets() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("skipped: needs root for a network namespace and NFQUEUE");
        return;
    }
    let name = format!("netimpair-it-{}", std::process::id());
    if !Command::new("ip").args(["netns", "add", &name]).status().is_ok_and(|s| s.success()) {
        eprintln!("skipped: `ip netns add` does not work here");
        return;
    }
    let mut ns = Netns { name: name.clone(), impair: None };
    assert!(ip_netns_exec(&name, &["ip", "link", "set", "lo", "up"]));

    let sock_path = std::env::temp_dir().join(format!("{name}.sock"));
    let sock_path = sock_path.to_str().unwrap().to_owned();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &name, BIN, "--queue", "10:delay=50", "--control", &sock_path])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout: BufReader<ChildStdout> = BufReader::new(child.stdout.take().unwrap());
    ns.impair = Some(child);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    if !ip_netns_exec(
        &name,
        &["iptables", "-A", "OUTPUT", "-o", "lo", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "10"],
    ) {
        eprintln!("skipped: iptables with NFQUEUE does not work here");
        return;
    }

    let socket = socket_in(&name);
    let got = send_and_receive(&socket, 20, Duration::from_millis(600));
    assert_eq!(got.len(), 20, "{got:?}");
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "reordered: {got:?}");
    // 50 ms asked; a busy machine may wake netimpair late, never early.
    assert!(
        got.iter().all(|(_, d)| *d >= Duration::from_millis(50) && *d < Duration::from_millis(500)),
        "{got:?}"
    );

    assert_eq!(control(&sock_path, "cut on"), "ok");
    assert_eq!(send_and_receive(&socket, 5, Duration::from_millis(300)), vec![]);
    assert_eq!(control(&sock_path, "cut off"), "ok");
    assert_eq!(control(&sock_path, "set 10 delay=0"), "ok");
    let got = send_and_receive(&socket, 5, Duration::from_millis(300));
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(control(&sock_path, "set 10 loss=500").starts_with("error"));

    // SAFETY: a signal to our own child (`ip netns exec` execs netimpair: same pid).
    let pid = ns.impair.as_ref().unwrap().id() as libc::pid_t;
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = ns.impair.as_mut().unwrap().wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let stats = rest.lines().find_map(|l| l.strip_prefix("stats ")).expect("stats line");
    assert!(
        stats.contains(r#""in":30,"#)
            && stats.contains(r#""out":25,"#)
            && stats.contains(r#""dropped_cut":5"#),
        "{stats}"
    );
}
