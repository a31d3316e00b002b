//! `netimpair`: a bad network for tests, on a kernel without `sch_netem`. iptables rules send a
//! network namespace's packets to NFQUEUE queues (one per direction, as a rule); this program
//! holds each packet in userspace and gives the kernel its verdict later: ACCEPT once the link
//! lets it go, DROP when the link loses it. Per queue: fixed delay and jitter, random loss,
//! Gilbert-Elliott burst loss, a rate limit with a drop-tail queue (a 600 kbit/s link fills its
//! queue, delays, then drops), and a cut (drop everything) switched on and off at run time.
//!
//! # Layout
//!
//! - `link`: the sans-IO core. `Link` decides when, or whether, each packet leaves; time is an
//!   input, so its tests run on made-up instants.
//! - `spec`: the settings' text form (`delay=150,loss=8,rate=600,limit-ms=80`).
//! - `nfq`: the kernel side, NFQUEUE through libnetfilter_queue.
//! - `main.rs`: the shell: one `poll(2)` loop over the netlink socket, the control socket and
//!   the links' next deadlines; signals; statistics on exit.
//!
//! # Why libnetfilter_queue through FFI
//!
//! It is the netfilter project's own library (Debian `libnetfilter-queue-dev`), and the dozen
//! calls used here are stable since 2008. The pure-Rust crate `nfq` (0.2.5, last released in
//! 2022) was the alternative: it gives no access to its socket's descriptor, so a program cannot
//! `poll` it together with its timers and control socket and would have to spin on non-blocking
//! reads; and it asserts (panics) on malformed netlink messages. The FFI surface here is small,
//! in one module, and its callback only records packet ids.
//!
//! # What it does not do
//!
//! It never modifies a packet, never reorders unless jitter is asked to, and does not shape by
//! flow: one queue is one link direction. It does not install iptables rules: the caller does
//! (`signaling/tests/browser/netns.mjs`), after this program says `ready`.

pub mod link;
pub mod nfq;
pub mod spec;
