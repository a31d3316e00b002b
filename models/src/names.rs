//! The free text of the API: class names and members' display names, their rules, and the same
//! rules as JSON Schema (`maxLength` and `pattern`) for the OpenAPI document.
//!
//! Each pattern is written out by hand next to the function it describes, and `tests` checks both
//! against the same strings, so that a request the document accepts is never refused for its text
//! and the other way round. Patterns spell character classes out (no `\s`, no `\d`): `\s` differs
//! between ECMA-262, Python and Rust, and `\d` is Unicode-wide in Python.

use utoipa::openapi::schema::{ObjectBuilder, Type};

/// Longest class name, in characters, leading and trailing spaces included: what is stored.
pub const MAX_CLASS_NAME_CHARS: usize = 200;

/// Longest display name, in characters, leading and trailing spaces included: what is stored.
/// Names are shown in a call grid; longer ones are a mistake.
pub const MAX_DISPLAY_NAME_CHARS: usize = 80;

/// Most ASCII digits in a display name. Names may carry a digit or two ("Léa 2"); eight or more
/// is a phone number. `DISPLAY_NAME_PATTERN` spells it `{1,7}`.
pub const MAX_NAME_DIGITS: usize = 7;

/// A class name has a character that is not white space (Unicode `White_Space`, which
/// `str::trim` removes).
pub const CLASS_NAME_PATTERN: &str = r"[^\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// A display name: no control character and no `@` anywhere, at most seven ASCII digits, and a
/// character that is not white space (a digit counts). Either one to seven digits among other
/// characters, or no digit and a visible character after the leading spaces.
pub const DISPLAY_NAME_PATTERN: &str = concat!(
    r"^(?:(?:[^@0-9\x00-\x1f\x7f-\x9f]*[0-9]){1,7}[^@0-9\x00-\x1f\x7f-\x9f]*",
    r"|[ \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*",
    r"[^@0-9\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
    r"[^@0-9\x00-\x1f\x7f-\x9f]*)$",
);

/// Why a class name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassNameError {
    #[error("name is empty or only spaces")]
    Blank,
    #[error("name is longer than {MAX_CLASS_NAME_CHARS} characters")]
    TooLong,
}

/// A class name has 1 to [`MAX_CLASS_NAME_CHARS`] characters, not all of them spaces.
pub fn validate_class_name(name: &str) -> Result<(), ClassNameError> {
    if name.chars().count() > MAX_CLASS_NAME_CHARS {
        return Err(ClassNameError::TooLong);
    }
    if name.trim().is_empty() {
        return Err(ClassNameError::Blank);
    }
    Ok(())
}

/// Why a display name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisplayNameError {
    #[error("display_name is empty")]
    Empty,
    #[error("display_name is longer than {MAX_DISPLAY_NAME_CHARS} characters")]
    TooLong,
    #[error("display_name contains control characters")]
    ControlCharacter,
    #[error("display_name looks like an email address or a phone number; send a name only")]
    ContactDetails,
}

/// Display names are all other members ever see of a person, so we keep them to names: no control
/// characters, and nothing that looks like an email address or a phone number (GDPR minimisation).
pub fn validate_display_name(name: &str) -> Result<(), DisplayNameError> {
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(DisplayNameError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(DisplayNameError::ControlCharacter);
    }
    if name.trim().is_empty() {
        return Err(DisplayNameError::Empty);
    }
    let looks_like_email = name.contains('@');
    let n_digits = name.chars().filter(char::is_ascii_digit).count();
    if looks_like_email || n_digits > MAX_NAME_DIGITS {
        return Err(DisplayNameError::ContactDetails);
    }
    Ok(())
}

/// The schema of `ClassUpsert::name`.
pub fn class_name_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!("1 to {MAX_CLASS_NAME_CHARS} characters, not all white space.")))
        .max_length(Some(MAX_CLASS_NAME_CHARS))
        .pattern(Some(CLASS_NAME_PATTERN))
        .examples(["CE2 B"])
}

/// The schema of `MemberUpsert::display_name`.
pub fn display_name_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "Shown to other members. 1 to {MAX_DISPLAY_NAME_CHARS} characters, not all white space, \
             without control characters; never an email address or a phone number: no '@', at most \
             {MAX_NAME_DIGITS} digits."
        )))
        .max_length(Some(MAX_DISPLAY_NAME_CHARS))
        .pattern(Some(DISPLAY_NAME_PATTERN))
        .examples(["Léa Martin"])
}

#[cfg(test)]
mod tests;
