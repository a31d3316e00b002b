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
