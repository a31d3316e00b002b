//! What `loadtest call` prints once everyone is done, and whether the call passed.

use models::visio::SlotKind;

use super::{forwarded, user_of, CallArgs, Sample};
use crate::report::e2ee::{safety_codes, E2eeFigures};
use crate::report::{self, percentile, Delivery, DeliveryRules, Publishers, Turn};
use crate::timeline::{ClientReport, Ms, SlotChange};

pub(super) struct Summary<'a> {
    pub args: &'a CallArgs,
    pub cameras: usize,
    pub reports: &'a [ClientReport],
    pub window: (Ms, Ms),
    pub turns: &'a [Turn],
    pub samples: &'a [Sample],
}

fn ms_stats(values: &[f64]) -> String {
    if values.is_empty() {
        return "-".into();
    }
    format!("p50 {:.0} ms, p95 {:.0} ms", percentile(values, 0.5), percentile(values, 0.95))
}

impl Summary<'_> {
    /// Prints the figures; returns whether the call passed.
    pub fn print(&self) -> bool {
        let args = self.args;
        let mut failures: Vec<String> = Vec::new();
        for (idx, report) in self.reports.iter().enumerate() {
            if let Some(err) = &report.error {
                failures.push(format!("{}: {err}", user_of(idx, args.no_teacher)));
            }
            if !report.unexpected.is_empty() {
                eprintln!(
                    "{}: unexpected from the server: {}",
                    user_of(idx, args.no_teacher),
                    report.unexpected.join(", ")
                );
            }
        }
        let n_admitted = self.reports.iter().filter(|r| r.admitted.is_some()).count();
        if n_admitted < args.participants {
            failures.push(format!("{n_admitted} of {} participants admitted", args.participants));
        }
        let span = |from: Option<Ms>, to: Option<Ms>| Some(f64::from(to?.checked_sub(from?)?));
        let collect =
            |f: &dyn Fn(&ClientReport) -> Option<f64>| self.reports.iter().filter_map(f).collect::<Vec<_>>();
        let joins = collect(&|r| span(r.ws_opened, r.joined));
        let connects = collect(&|r| span(r.join_sent, r.connected));
        let firsts = collect(&|r| span(r.join_sent, r.first_media));

        println!(
            "call: {} participants requested ({} tier), {} with a camera, {} speaking at a time, turns of {} s; \
             slots {} audio + 1 stage + {} thumbnails",
            args.participants, args.tier, self.cameras, args.speakers, args.speaker_period, args.audio_slots,
            args.thumbnails
        );
        println!("admitted            {n_admitted} / {}", args.participants);
        println!("join                {}  (WebSocket open to `joined`)", ms_stats(&joins));
        println!("ICE+DTLS connected  {}  (join sent to connected)", ms_stats(&connects));
        println!("first media         {}  (join sent to first packet on a slot)", ms_stats(&firsts));

        let rules = DeliveryRules {
            window: self.window,
            switch_guard: 250,
            keyframe_lookback: 50,
            count_video: args.video_ivf.is_none(),
        };
        if !rules.count_video {
            println!("video delivery      not counted (--video-ivf: a real clip carries no packet counter)");
        }
        let publishers = Publishers::new(self.reports);
        let mut total = Delivery::default();
        let mut ratios = Vec::new();
        let mut missing = Vec::new();
        for (idx, receiver) in self.reports.iter().enumerate() {
            let delivery = report::delivery(receiver, &publishers, rules, &mut missing);
            total.add(&delivery);
            if args.per_participant {
                let changes: Vec<String> = receiver
                    .slot_changes
                    .iter()
                    .filter(|c| (self.window.0..self.window.1).contains(&c.at))
                    .map(|c| {
                        let who = c
                            .csrc
                            .and_then(|ssrc| publishers.owner(ssrc))
                            .map_or("-".into(), |i| i.to_string());
                        format!("{:.1}s:{}={who}", f64::from(c.at - self.window.0) / 1e3, c.slot_idx)
                    })
                    .collect();
                println!(
                    "  {idx:>3} {}: audio {}/{}, video {}/{}; slot changes (time:slot=participant) {}",
                    receiver.participant_id.as_deref().unwrap_or("?"),
                    delivery.audio_arrived,
                    delivery.audio_expected,
                    delivery.video_arrived,
                    delivery.video_expected,
                    changes.join(" ")
                );
            }
            match delivery.ratio() {
                Some(ratio) => {
                    ratios.push(ratio);
                    if ratio < args.min_delivery {
                        failures.push(format!(
                            "{}: slots delivered {} of {} packets ({:.1} %; audio {}/{}, video {}/{})",
                            user_of(idx, args.no_teacher),
                            delivery.arrived(),
                            delivery.expected(),
                            ratio * 100.0,
                            delivery.audio_arrived,
                            delivery.audio_expected,
                            delivery.video_arrived,
                            delivery.video_expected
                        ));
                    }
                }
                None if receiver.admitted.is_some() => failures.push(format!(
                    "{}: its slots were to carry nothing in the window",
                    user_of(idx, args.no_teacher)
                )),
                None => {}
            }
        }
        let window_s = f64::from(self.window.1 - self.window.0) / 1e3;
        println!(
            "delivery            min {:.4}, p5 {:.4}, median {:.4} over {} participants (minimum {})",
            percentile(&ratios, 0.0),
            percentile(&ratios, 0.05),
            percentile(&ratios, 0.5),
            ratios.len(),
            args.min_delivery
        );
        println!(
            "  packets           audio {} of {} expected, video {} of {}; {:.0} packets/s into all slots",
            total.audio_arrived,
            total.audio_expected,
            total.video_arrived,
            total.video_expected,
            total.arrived() as f64 / window_s
        );
        if !missing.is_empty() {
            // Losses bunched at a few moments point at a stall (of the server, or of this
            // machine) rather than at forwarding.
            let mut by_100ms = std::collections::BTreeMap::<Ms, u64>::new();
            for at in &missing {
                *by_100ms.entry(at / 100).or_default() += 1;
            }
            let mut worst: Vec<(Ms, u64)> = by_100ms.into_iter().collect();
            worst.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
            let worst: Vec<String> = worst
                .iter()
                .take(5)
                .map(|(bucket, n)| {
                    format!("{n} sent at +{:.1} s", f64::from(bucket * 100 - self.window.0) / 1e3)
                })
                .collect();
            println!("  missing           {} packets; most in 100 ms: {}", missing.len(), worst.join(", "));
        }
        if total.bad_announcements > 0 {
            failures.push(format!(
                "{} slot announcements named an unknown SSRC or the wrong participant",
                total.bad_announcements
            ));
        }
        let unattributed: u64 = self.reports.iter().map(|r| r.n_unattributed).sum();
        let in_window = |at: &Ms| (self.window.0..self.window.1).contains(at);
        let count = |f: &dyn Fn(&ClientReport) -> usize| self.reports.iter().map(f).sum::<usize>();
        let keyframe_requests = count(&|r| r.keyframe_requests.iter().filter(|at| in_window(at)).count());
        let keyframes = count(&|r| r.sent.keyframes.iter().filter(|at| in_window(at)).count());
        let changes = |audio: bool| {
            count(&|r| {
                let is_audio =
                    |c: &&SlotChange| (r.slot_kinds.get(c.slot_idx) == Some(&SlotKind::Audio)) == audio;
                r.slot_changes.iter().filter(|c| in_window(&c.at)).filter(is_audio).count()
            })
        };
        println!(
            "  in the window     {} audio and {} video slot changes announced; {keyframes} keyframes sent, \
             {keyframe_requests} keyframe requests received; {unattributed} packets without a slot or CSRC (whole run)",
            changes(true),
            changes(false)
        );

        let latencies = report::switch_latencies(self.reports, self.turns);
        let line = |values: &[f64], missed: &[(usize, usize)]| {
            if values.is_empty() && missed.is_empty() {
                return "-".to_owned();
            }
            let mut text = format!(
                "p50 {:.0} / p95 {:.0} / max {:.0} ms over {} (speaker, receiver) pairs; {} pairs never within the turn",
                percentile(values, 0.5),
                percentile(values, 0.95),
                percentile(values, 1.0),
                values.len(),
                missed.len()
            );
            let shown: Vec<String> = missed.iter().take(6).map(|(s, r)| format!("{s}->{r}")).collect();
            if !shown.is_empty() {
                text += &format!(
                    " (speaker->receiver: {}{})",
                    shown.join(", "),
                    if missed.len() > 6 { ", ..." } else { "" }
                );
            }
            text
        };
        println!("speaker switch      {} turns in the window", self.turns.len());
        println!("  to `slots`        {}", line(&latencies.slots, &latencies.slots_missed));
        println!("  to `speakers`     {}", line(&latencies.speakers, &latencies.speakers_missed));
        self.print_e2ee(&mut failures);
        self.print_server(window_s);

        for failure in &failures {
            eprintln!("FAIL: {failure}");
        }
        let ok = failures.is_empty();
        println!("{}", if ok { "PASS" } else { "FAIL" });
        ok
    }

    /// End-to-end encryption: what was encrypted, decrypted and dropped, the sealed keys, the
    /// safety code. A frame that does not verify, a frame without its key once everyone is in,
    /// a sealed key that does not open, or two safety codes fail the call.
    fn print_e2ee(&self, failures: &mut Vec<String>) {
        let args = self.args;
        let figures: Vec<E2eeFigures> =
            self.reports.iter().map(|r| E2eeFigures::of(&r.e2ee, self.window)).collect();
        let mut total = E2eeFigures::default();
        for one in &figures {
            total.add(one);
        }
        if args.no_e2ee {
            println!(
                "e2ee                off (--no-e2ee): {} frames sent and {} received in clear",
                total.frames_sent_clear, total.frames_received_clear
            );
            return;
        }
        println!(
            "e2ee                {} of {} participants joined with a public key; frames sent encrypted {}, in clear {}",
            total.n_enabled,
            self.reports.len(),
            total.frames_encrypted,
            total.frames_sent_clear
        );
        let decrypted: Vec<f64> = figures.iter().map(|f| f.frames_decrypted as f64).collect();
        println!(
            "  received         {} frames decrypted (audio packets and rebuilt video frames; per participant \
             min {:.0}, median {:.0}), {} passed in clear; {} video frames never complete",
            total.frames_decrypted,
            percentile(&decrypted, 0.0),
            percentile(&decrypted, 0.5),
            total.frames_received_clear,
            total.incomplete_frames
        );
        println!(
            "  dropped          {} without their key ({} in the window), {} that did not verify ({} in the window)",
            total.no_key, total.no_key_in_window, total.failed, total.failed_in_window
        );
        println!(
            "  keys             {} sealed in {} `e2ee_keys` messages, {} rotations after leaves; {} opened, {} refused",
            total.keys_sealed, total.key_messages_sent, total.rotations, total.keys_received, total.keys_rejected
        );
        let dropping: Vec<String> = figures
            .iter()
            .enumerate()
            .filter(|(_, f)| f.failed > 0 || f.no_key_in_window > 0 || f.keys_rejected > 0)
            .map(|(idx, f)| {
                format!(
                    "{} ({} decrypted, {} without key in the window, {} not verified, {} keys refused)",
                    user_of(idx, args.no_teacher),
                    f.frames_decrypted,
                    f.no_key_in_window,
                    f.failed,
                    f.keys_rejected
                )
            })
            .collect();
        if !dropping.is_empty() {
            let more = if dropping.len() > 8 { ", ..." } else { "" };
            println!(
                "  dropping         {}{more}",
                dropping.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
            );
        }
        if args.per_participant {
            for (idx, (report, f)) in self.reports.iter().zip(&figures).enumerate() {
                println!(
                    "  {idx:>3} {}: e2ee encrypted {}, decrypted {}, clear in {}, without key {} ({} in the window), \
                     not verified {}, keys sealed {} / opened {} / refused {}",
                    report.participant_id.as_deref().unwrap_or("?"),
                    f.frames_encrypted,
                    f.frames_decrypted,
                    f.frames_received_clear,
                    f.no_key,
                    f.no_key_in_window,
                    f.failed,
                    f.keys_sealed,
                    f.keys_received,
                    f.keys_rejected
                );
            }
        }
        let codes = safety_codes(self.reports, self.window.1);
        let shown: Vec<String> = codes.iter().map(|(code, n)| format!("{code} on {n}")).collect();
        println!(
            "  safety code      {} (at the window's end)",
            if shown.is_empty() { "-".into() } else { shown.join(", ") }
        );

        if total.n_enabled == 0 {
            return;
        }
        if total.failed > 0 {
            failures.push(format!("e2ee: {} received frames did not verify", total.failed));
        }
        if total.no_key_in_window > 0 {
            failures.push(format!(
                "e2ee: {} frames in the window arrived without their key, everyone being in",
                total.no_key_in_window
            ));
        }
        if total.keys_rejected > 0 {
            failures.push(format!("e2ee: {} sealed keys did not open", total.keys_rejected));
        }
        if total.frames_decrypted == 0 {
            failures.push("e2ee: no received frame was decrypted".into());
        }
        if codes.len() > 1 {
            failures
                .push(format!("e2ee: participants would show different safety codes: {}", shown.join(", ")));
        }
    }

    fn print_server(&self, window_s: f64) {
        let (Some(first), Some(last)) = (self.samples.first(), self.samples.last()) else { return };
        // The forwarded-packet counter moves when the SFU flushes its stats: compare the CPU
        // between the first and the last flush seen in the window when there are two.
        let flushes: Vec<&Sample> = self
            .samples
            .windows(2)
            .filter(|pair| forwarded(&pair[1]) != forwarded(&pair[0]))
            .map(|pair| &pair[1])
            .collect();
        let (from, to, exact) = match (flushes.first(), flushes.last()) {
            (Some(a), Some(b)) if a.at < b.at => (*a, *b, true),
            _ => (first, last, false),
        };
        let seconds = (to.at - from.at).as_secs_f64();
        let cpu = from.cpu.zip(to.cpu).map(|(a, b)| b - a);
        let packets = forwarded(from).zip(forwarded(to)).map(|(a, b)| b - a);
        let share = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| (b - a) / window_s * 100.0);
        let server = share(first.cpu, last.cpu);
        let own = share(first.own_cpu, last.own_cpu);
        let machine = share(first.machine_cpu, last.machine_cpu);
        match server {
            Some(server) => println!("server CPU          {server:.1} % of one core over the window"),
            None => println!("server CPU          - (no --server-pid, or no /proc)"),
        }
        if let (Some(own), Some(machine)) = (own, machine) {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            println!(
                "machine CPU         load test {own:.1} %, everything else {:.1} % of one core ({cores} cores): \
                 figures are only meaningful when the latter is near 0",
                (machine - own - server.unwrap_or(0.0)).max(0.0)
            );
        }
        match packets {
            Some(packets) => {
                let note = if exact {
                    "between two stats flushes"
                } else {
                    "approximate: fewer than two stats flushes seen"
                };
                println!(
                    "forwarded packets   {packets:.0} in {seconds:.1} s ({:.0}/s; {note})",
                    packets / seconds.max(1e-9)
                );
                match cpu {
                    Some(cpu) if packets > 0.0 => {
                        println!("server CPU per forwarded packet: {:.2} µs", cpu / packets * 1e6)
                    }
                    _ => println!("server CPU per forwarded packet: -"),
                }
            }
            None => println!("forwarded packets   - (no /metrics)"),
        }
        let delta =
            |a: Option<u64>, b: Option<u64>| a.zip(b).map_or("-".to_owned(), |(a, b)| (b - a).to_string());
        println!(
            "UDP receive-buffer drops in the window: server sockets {}, load-test sockets {}",
            delta(first.server_udp_drops, last.server_udp_drops),
            delta(first.own_udp_drops, last.own_udp_drops)
        );
        let (Some(before), Some(after)) = (first.metrics.as_ref(), last.metrics.as_ref()) else { return };
        // Deltas, not exact to the window: the packet counters move at each stats flush.
        for family in [
            "sfu_rtp_packets_total",
            "sfu_nacks_received_total",
            "sfu_retransmissions_total",
            "sfu_keyframe_requests_total",
            "sfu_queue_drops_total",
            "sfu_renegotiations_total",
        ] {
            let series: Vec<String> = after
                .family(family)
                .map(|(labels, value)| {
                    let was = before.family(family).find(|(l, _)| *l == labels).map_or(0.0, |(_, v)| v);
                    format!("{labels} +{:.0} (total {value:.0})", value - was)
                })
                .collect();
            let series = if series.is_empty() { "absent".to_owned() } else { series.join(", ") };
            println!("{family} {series}");
        }
    }
}
