use super::*;

fn check(raw: &str, expected: Result<(), IdError>) {
    assert_eq!(ClassId::new(raw).map(|_| ()), expected, "{raw:?}");
}

#[test]
fn ids_accept_a_safe_alphabet_only() {
    check("c-42_A", Ok(()));
    check("0b6f6a4e-64a5-4f34-9d6c-3f2c1a9b8e11", Ok(()));
    check("", Err(IdError::Empty));
    check(&"a".repeat(65), Err(IdError::TooLong));
    check("../etc/passwd", Err(IdError::BadCharacter));
    check("a b", Err(IdError::BadCharacter));
    check("é", Err(IdError::BadCharacter));
}

#[test]
fn ids_are_validated_when_deserialized() {
    let ok: Result<UserId, _> = serde_json::from_str("\"u-1\"");
    assert_eq!(ok.unwrap().as_str(), "u-1");
    let bad: Result<UserId, _> = serde_json::from_str("\"a/b\"");
    assert!(bad.is_err());
}

#[test]
fn the_id_pattern_says_what_the_code_checks() {
    let pattern = regex::Regex::new(ID_PATTERN).unwrap();
    let schema_accepts = |raw: &str| pattern.is_match(raw) && (1..=MAX_ID_LEN).contains(&raw.chars().count());
    let mut corpus: Vec<String> = (0..0x300u32).filter_map(char::from_u32).map(String::from).collect();
    corpus.extend((0..0x300u32).filter_map(char::from_u32).map(|c| format!("c-{c}2")));
    corpus.extend(["", "c-42\n", "\nc-42", "c 42"].map(str::to_owned));
    corpus.extend([MAX_ID_LEN - 1, MAX_ID_LEN, MAX_ID_LEN + 1].map(|n| "a".repeat(n)));
    for raw in corpus {
        assert_eq!(schema_accepts(&raw), ClassId::new(raw.clone()).is_ok(), "{raw:?}");
    }
}

#[test]
fn id_schemas_carry_the_pattern_and_length() {
    let schema = serde_json::to_value(<ClassId as utoipa::PartialSchema>::schema()).unwrap();
    assert_eq!(schema["pattern"], ID_PATTERN);
    assert_eq!(schema["maxLength"], MAX_ID_LEN);
    assert_eq!(schema["minLength"], 1);
    assert_eq!(schema["description"], "A class, as known by the class backend.");
}
