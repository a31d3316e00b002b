//! The safety code every page shows (docs/e2ee.md): 12 digits that are the same on every page
//! when every page has the same participants with the same public keys.

use sha2::Sha256;

const INPUT_HEADER: &str = "klass-e2ee-safety-v1\n";
const SALT: &[u8] = b"klass-e2ee-safety";
const ITERATIONS: u32 = 100_000;

/// The PBKDF2 password: the header, then `participant_id " " public_key "\n"` for each
/// participant with a public key (oneself included), sorted by participant id.
pub fn safety_input<'a>(participants: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut participants: Vec<(&str, &str)> = participants.into_iter().collect();
    participants.sort();
    let mut input = INPUT_HEADER.to_owned();
    for (participant_id, public_key) in participants {
        input.push_str(participant_id);
        input.push(' ');
        input.push_str(public_key);
        input.push('\n');
    }
    input
}

/// The first 5 bytes (big-endian) of `PBKDF2-HMAC-SHA256(input, "klass-e2ee-safety", 100 000
/// iterations, 64 bits)`, modulo 10^12.
pub fn safety_number(input: &str) -> u64 {
    let mut out = [0u8; 8];
    pbkdf2::pbkdf2_hmac::<Sha256>(input.as_bytes(), SALT, ITERATIONS, &mut out);
    let mut first5 = [0u8; 8];
    first5[3..].copy_from_slice(&out[..5]);
    u64::from_be_bytes(first5) % 1_000_000_000_000
}

/// As pages show it: `123 456 789 012`.
pub fn format_code(number: u64) -> String {
    let digits = format!("{number:012}");
    [&digits[0..3], &digits[3..6], &digits[6..9], &digits[9..12]].join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_is_sorted_by_participant_id() {
        let input = safety_input([("p-b", "KEYB"), ("p-a", "KEYA"), ("p-c", "KEYC")]);
        assert_eq!(input, "klass-e2ee-safety-v1\np-a KEYA\np-b KEYB\np-c KEYC\n");
        assert_eq!(input, safety_input([("p-c", "KEYC"), ("p-a", "KEYA"), ("p-b", "KEYB")]));
    }

    #[test]
    fn codes_have_twelve_digits_in_groups_of_three() {
        assert_eq!(format_code(123_456_789_012), "123 456 789 012");
        assert_eq!(format_code(42), "000 000 000 042");
        let input = safety_input([("p-a", "KEYA")]);
        let number = safety_number(&input);
        assert!(number < 1_000_000_000_000);
        assert_eq!(number, safety_number(&input));
        assert_ne!(number, safety_number(&safety_input([("p-a", "KEYB")])));
    }
}
