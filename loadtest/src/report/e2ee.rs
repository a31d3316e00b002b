//! End-to-end encryption in a call, from what each participant recorded ([`E2eeLog`]): how many
//! frames were encrypted and decrypted, what was dropped and when, the sealed keys, and whether
//! every participant would show the same safety code.

use std::collections::BTreeMap;

use crate::e2ee::safety;
use crate::timeline::{ClientReport, E2eeLog, Ms};

/// One participant's figures.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct E2eeFigures {
    pub n_enabled: usize,
    pub frames_encrypted: u64,
    pub frames_sent_clear: u64,
    pub frames_decrypted: u64,
    pub frames_received_clear: u64,
    pub no_key: u64,
    pub no_key_in_window: u64,
    pub failed: u64,
    pub failed_in_window: u64,
    pub incomplete_frames: u64,
    pub key_messages_sent: u64,
    pub keys_sealed: u64,
    pub keys_received: u64,
    pub keys_rejected: u64,
    pub rotations: u64,
}

impl E2eeFigures {
    pub fn of(log: &E2eeLog, window: (Ms, Ms)) -> E2eeFigures {
        let in_window =
            |times: &[Ms]| times.iter().filter(|at| (window.0..window.1).contains(at)).count() as u64;
        E2eeFigures {
            n_enabled: usize::from(log.enabled),
            frames_encrypted: log.frames_encrypted,
            frames_sent_clear: log.frames_sent_clear,
            frames_decrypted: log.frames_decrypted,
            frames_received_clear: log.frames_received_clear,
            no_key: log.no_key.len() as u64,
            no_key_in_window: in_window(&log.no_key),
            failed: log.failed.len() as u64,
            failed_in_window: in_window(&log.failed),
            incomplete_frames: log.incomplete_frames,
            key_messages_sent: log.key_messages_sent,
            keys_sealed: log.keys_sealed,
            keys_received: log.keys_received,
            keys_rejected: log.keys_rejected,
            rotations: log.rotations,
        }
    }

    pub fn add(&mut self, other: &E2eeFigures) {
        self.n_enabled += other.n_enabled;
        self.frames_encrypted += other.frames_encrypted;
        self.frames_sent_clear += other.frames_sent_clear;
        self.frames_decrypted += other.frames_decrypted;
        self.frames_received_clear += other.frames_received_clear;
        self.no_key += other.no_key;
        self.no_key_in_window += other.no_key_in_window;
        self.failed += other.failed;
        self.failed_in_window += other.failed_in_window;
        self.incomplete_frames += other.incomplete_frames;
        self.key_messages_sent += other.key_messages_sent;
        self.keys_sealed += other.keys_sealed;
        self.keys_received += other.keys_received;
        self.keys_rejected += other.keys_rejected;
        self.rotations += other.rotations;
    }
}

/// The safety code input a participant had at `at`: everyone with a public key it knew of then,
/// itself included. `None` for a participant without end-to-end encryption.
pub fn safety_input_at(log: &E2eeLog, at: Ms) -> Option<String> {
    if !log.enabled {
        return None;
    }
    let mut roster: BTreeMap<&str, &str> = BTreeMap::new();
    for change in log.roster.iter().take_while(|change| change.at <= at) {
        match &change.public_key {
            Some(public_key) => roster.insert(&change.participant_id, public_key),
            None => roster.remove(change.participant_id.as_str()),
        };
    }
    Some(safety::safety_input(roster))
}

/// The safety codes participants would show at `at`, each with how many would show it (one
/// PBKDF2 per distinct code: a hundred thousand iterations each).
pub fn safety_codes(reports: &[ClientReport], at: Ms) -> Vec<(String, usize)> {
    let mut inputs: BTreeMap<String, usize> = BTreeMap::new();
    for report in reports.iter().filter(|r| r.admitted.is_some()) {
        if let Some(input) = safety_input_at(&report.e2ee, at) {
            *inputs.entry(input).or_default() += 1;
        }
    }
    let mut codes: Vec<(String, usize)> = inputs
        .into_iter()
        .map(|(input, n)| (safety::format_code(safety::safety_number(&input)), n))
        .collect();
    codes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    codes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::RosterChange;

    fn change(at: Ms, id: &str, key: Option<&str>) -> RosterChange {
        RosterChange { at, participant_id: id.into(), public_key: key.map(Into::into) }
    }

    fn report(roster: Vec<RosterChange>) -> ClientReport {
        ClientReport {
            admitted: Some(0),
            e2ee: E2eeLog { enabled: true, roster, ..E2eeLog::default() },
            ..ClientReport::default()
        }
    }

    #[test]
    fn safety_codes_follow_who_was_in_at_the_time() {
        let a = report(vec![
            change(0, "pA", Some("KA")),
            change(10, "pB", Some("KB")),
            change(50, "pC", Some("KC")),
        ]);
        let b =
            report(vec![change(5, "pB", Some("KB")), change(5, "pA", Some("KA")), change(60, "pA", None)]);
        assert_eq!(safety_input_at(&a.e2ee, 20).unwrap(), "klass-e2ee-safety-v1\npA KA\npB KB\n");
        assert_eq!(safety_input_at(&b.e2ee, 20), safety_input_at(&a.e2ee, 20));
        assert_eq!(safety_input_at(&b.e2ee, 70).unwrap(), "klass-e2ee-safety-v1\npB KB\n");
        assert_eq!(safety_codes(&[a, b], 20).len(), 1, "the same code on both");
        let c = report(vec![change(0, "pA", Some("KA")), change(0, "pB", Some("K-other"))]);
        let codes =
            safety_codes(&[report(vec![change(0, "pA", Some("KA")), change(0, "pB", Some("KB"))]), c], 20);
        assert_eq!(codes.len(), 2, "a substituted key shows another code");
        let off = ClientReport { admitted: Some(0), ..ClientReport::default() };
        assert!(safety_codes(&[off], 20).is_empty());
    }

    #[test]
    fn figures_count_drops_in_the_window_apart() {
        let log = E2eeLog {
            enabled: true,
            frames_decrypted: 7,
            no_key: vec![5, 150],
            failed: vec![120],
            ..E2eeLog::default()
        };
        let figures = E2eeFigures::of(&log, (100, 200));
        assert_eq!(
            (figures.no_key, figures.no_key_in_window, figures.failed, figures.failed_in_window),
            (2, 1, 1, 1)
        );
        let mut total = E2eeFigures::default();
        total.add(&figures);
        total.add(&figures);
        assert_eq!((total.n_enabled, total.frames_decrypted), (2, 14));
    }
}
