//! Rules for usernames, passwords and other names, shared by the API and the CLI.

use crate::auth::password::MAX_PASSWORD_BYTES;

pub(crate) const MAX_USERNAME_CHARS: usize = 64;
pub(crate) const MAX_FIELD_CHARS: usize = 256;

/// 1–64 of `A–Z a–z 0–9 _ . - @`.
pub(crate) fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        return Err("username must not be empty".into());
    }
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err(format!("username too long (at most {MAX_USERNAME_CHARS} characters)"));
    }
    if !username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '@')) {
        return Err("username may contain only letters, digits and _ . - @".into());
    }
    Ok(())
}

/// A name shown as it is, in logs, metric labels or channel names: 1-`max` of `A-Z a-z 0-9 _ . -`.
/// Refused, it is "`what` are 1-`max` of A-Z a-z 0-9 _ . -".
pub(crate) fn check_plain_name(name: &str, max: usize, what: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= max
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!("{what} are 1-{max} of A-Z a-z 0-9 _ . -"))
    }
}

/// Non-empty and at most [`MAX_PASSWORD_BYTES`], checked before any hashing.
pub(crate) fn check_password(password: &str) -> Result<(), String> {
    if password.is_empty() {
        return Err("password must not be empty".into());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!("password too long (at most {MAX_PASSWORD_BYTES} bytes)"));
    }
    Ok(())
}

/// Optional profile fields (email, full name): bounded, no control characters.
pub(crate) fn check_field(name: &str, value: &str) -> Result<(), String> {
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(format!("{name} too long (at most {MAX_FIELD_CHARS} characters)"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{name} must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(check_username("johndoe").is_ok());
        assert!(check_username("jane.doe-2@x").is_ok());
        assert_eq!(check_username(""), Err("username must not be empty".into()));
        assert_eq!(check_username(&"a".repeat(65)), Err("username too long (at most 64 characters)".into()));
        let only = Err("username may contain only letters, digits and _ . - @".to_owned());
        assert_eq!(check_username("john doe"), only);
        assert_eq!(check_username("jöhn"), only);
    }

    #[test]
    fn plain_names() {
        assert!(check_plain_name("billing-v2.prod_1", 64, "API key names").is_ok());
        let refused = Err("room names are 1-64 of A-Z a-z 0-9 _ . -".to_owned());
        for bad in ["", "a b", "a@b", "é", &"r".repeat(65)] {
            assert_eq!(check_plain_name(bad, 64, "room names"), refused, "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        assert!(check_password("secret").is_ok());
        assert_eq!(check_password(""), Err("password must not be empty".into()));
        assert_eq!(
            check_password(&"p".repeat(MAX_PASSWORD_BYTES + 1)),
            Err(format!("password too long (at most {MAX_PASSWORD_BYTES} bytes)"))
        );
    }
}
