//! Our SDP answer as third-party clients expect it (see `docs/protocol.md`, "SDP conventions").
//!
//! str0m writes our ICE candidates into the first m-section of the BUNDLE group only, and no
//! `a=end-of-candidates`. Browsers take the candidates of the group's first m-section, but other
//! stacks read them elsewhere: aiortc gives each transport the candidates of the last m-section
//! it parsed for that transport, so it finds none, and without end-of-candidates it waits for
//! more forever (ICE stays "checking"). An ICE-lite server's candidates are all known when it
//! answers, so every m-section that is not rejected gets all of them and `a=end-of-candidates`.
//!
//! Opus's `a=fmtp` gets `usedtx=1` where str0m did not write it (its Opus with RED,
//! `enable_opus`, has no DTX parameter): in an answer it asks the client to send with DTX, so
//! that a silent microphone sends a few packets a second.
//!
//! Everything else str0m writes is kept as it is, byte for byte: the ICE credentials,
//! fingerprint and `a=setup` are already in every m-section (`tests` checks it), and the codecs
//! are only those `sdp::new_rtc` configures.

const CANDIDATE: &str = "a=candidate:";
const END_OF_CANDIDATES: &str = "a=end-of-candidates";

/// The answer str0m wrote, completed for clients that read candidates per m-section.
pub(super) fn finish_answer(sdp: String) -> String {
    let lines: Vec<&str> = sdp.lines().collect();
    let candidates = {
        let mut candidates: Vec<&str> = Vec::new();
        for line in lines.iter().filter(|line| line.starts_with(CANDIDATE)) {
            if !candidates.contains(line) {
                candidates.push(line);
            }
        }
        candidates
    };
    let section_starts: Vec<usize> =
        lines.iter().enumerate().filter(|(_, line)| line.starts_with("m=")).map(|(idx, _)| idx).collect();
    let session_end = section_starts.first().copied().unwrap_or(lines.len());

    let mut out = String::with_capacity(sdp.len() + section_starts.len() * (candidates.len() + 1) * 100);
    let mut push = |line: &str| {
        out.push_str(line);
        out.push_str("\r\n");
    };
    lines[..session_end].iter().for_each(|line| push(line));
    for (section_idx, &start) in section_starts.iter().enumerate() {
        let end = section_starts.get(section_idx + 1).copied().unwrap_or(lines.len());
        let section = &lines[start..end];
        if is_rejected(section[0]) {
            section.iter().for_each(|line| push(line));
            continue;
        }
        // Where the candidates go: after those the section has, else after its connection line
        // (where str0m writes them in the first section), else right after the m= line.
        let after_idx = section
            .iter()
            .rposition(|line| line.starts_with(CANDIDATE))
            .or_else(|| section.iter().position(|line| line.starts_with("c=")))
            .unwrap_or(0);
        let has_end = section.contains(&END_OF_CANDIDATES);
        let opus_fmtp = opus_payload_types(section).map(|pt| format!("a=fmtp:{pt} ")).collect::<Vec<_>>();
        for (line_idx, line) in section.iter().enumerate() {
            if opus_fmtp.iter().any(|prefix| line.starts_with(prefix.as_str())) && !line.contains("usedtx=") {
                let separator = if line.ends_with(' ') { "" } else { ";" };
                push(&format!("{line}{separator}usedtx=1"));
            } else {
                push(line);
            }
            if line_idx == after_idx {
                for candidate in candidates.iter().filter(|candidate| !section.contains(candidate)) {
                    push(candidate);
                }
                if !has_end {
                    push(END_OF_CANDIDATES);
                }
            }
        }
    }
    out
}

/// A rejected m-section has port 0 (RFC 8829 section 5.3.1): it carries no transport.
fn is_rejected(media_line: &str) -> bool {
    media_line.split(' ').nth(1) == Some("0")
}

/// The payload types of an m-section's `a=rtpmap:<pt> opus/48000/2` lines.
fn opus_payload_types<'a>(section: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    section.iter().filter_map(|line| {
        let (pt, encoding) = line.strip_prefix("a=rtpmap:")?.split_once(' ')?;
        encoding.to_ascii_lowercase().starts_with("opus/").then_some(pt)
    })
}

#[cfg(test)]
mod tests;
