use super::*;

/// What the document says of each string of the corpus: its pattern (a search, as JSON Schema
/// reads it) and `maxLength` in characters, against what `validate` says.
fn check(pattern: &str, max_chars: usize, validate: impl Fn(&str) -> bool) {
    let regex = regex::Regex::new(pattern).expect("the pattern compiles");
    for value in corpus(max_chars) {
        let schema_accepts = regex.is_match(&value) && value.chars().count() <= max_chars;
        assert_eq!(schema_accepts, validate(&value), "{value:?}");
    }
}

/// Strings around every rule: each character of the first planes alone and among letters,
/// spaces around names, digit counts, the length limits.
fn corpus(max_chars: usize) -> Vec<String> {
    let mut corpus: Vec<String> = Vec::new();
    let characters = (0..0x3100u32).chain([0xfeff, 0xfffd, 0x1f600]).filter_map(char::from_u32);
    for c in characters {
        corpus.extend([
            c.to_string(),
            format!("Léa{c}"),
            format!("{c}Léa"),
            format!(" {c} "),
            format!("{c}{c}"),
        ]);
    }
    for n_digits in 0..10 {
        let digits = "0123456789"[..n_digits].to_owned();
        corpus.extend([
            digits.clone(),
            format!("Léa {digits}"),
            format!("  {digits}  "),
            format!("{digits}\n"),
        ]);
    }
    for length in [max_chars - 1, max_chars, max_chars + 1] {
        corpus.extend([
            "x".repeat(length),
            format!(" {}", "x".repeat(length - 1)),
            format!("{} ", "é".repeat(length - 1)),
            " ".repeat(length),
        ]);
    }
    corpus.extend(
        [
            "",
            "Léa Martin",
            "Maman de Jules 2",
            "lea@example.org",
            "06 12 34 56 78",
            "+33612345678",
            "\tLéa",
            "Léa\n",
        ]
        .map(str::to_owned),
    );
    corpus
}

#[test]
fn class_names_are_one_to_200_characters_not_all_spaces() {
    assert_eq!(validate_class_name("CE2 B"), Ok(()));
    assert_eq!(validate_class_name(" \u{3000}\t"), Err(ClassNameError::Blank));
    assert_eq!(validate_class_name(&"x".repeat(201)), Err(ClassNameError::TooLong));
    // The limit is on what is stored, spaces included.
    assert_eq!(validate_class_name(&format!(" {}", "x".repeat(200))), Err(ClassNameError::TooLong));
}

#[test]
fn display_names_are_names_only() {
    assert_eq!(validate_display_name("Léa Martin"), Ok(()));
    assert_eq!(validate_display_name("Maman de Jules 2"), Ok(()));
    assert_eq!(validate_display_name("  "), Err(DisplayNameError::Empty));
    assert_eq!(validate_display_name("a\u{7}b"), Err(DisplayNameError::ControlCharacter));
    assert_eq!(validate_display_name("Léa\n"), Err(DisplayNameError::ControlCharacter));
    assert_eq!(validate_display_name(&"x".repeat(81)), Err(DisplayNameError::TooLong));
    assert_eq!(validate_display_name("lea@example.org"), Err(DisplayNameError::ContactDetails));
    assert_eq!(validate_display_name("06 12 34 56 78"), Err(DisplayNameError::ContactDetails));
    assert_eq!(validate_display_name("+33612345678"), Err(DisplayNameError::ContactDetails));
}

#[test]
fn the_class_name_pattern_says_what_the_code_checks() {
    check(CLASS_NAME_PATTERN, MAX_CLASS_NAME_CHARS, |name| validate_class_name(name).is_ok());
}

#[test]
fn the_display_name_pattern_says_what_the_code_checks() {
    check(DISPLAY_NAME_PATTERN, MAX_DISPLAY_NAME_CHARS, |name| validate_display_name(name).is_ok());
}
