//! Entity ids: a short type prefix and 26 characters of Crockford base32 over
//! a UUIDv7, so ids are unique, sort by creation time and say what they name
//! (`ten_01JD…`, `key_01JD…`).

use crate::error::PulseError;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new id with this prefix, e.g. `new_id("run")` → `run_01JDQ…`.
pub fn new_id(prefix: &str) -> String {
    let value = uuid::Uuid::now_v7().as_u128();
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    // 128 bits in 26 base32 digits (130 bits), most significant first.
    for i in (0..26).rev() {
        let digit = ((value >> (i * 5)) & 0x1f) as usize;
        out.push(CROCKFORD[digit] as char);
    }
    out
}

/// Checks an id made by [`new_id`] with this prefix; `field` names the
/// request field in the error.
/// An id fixed by what it stands for: `seed` names the one thing it may be
/// created for (e.g. "pipeline pip_… for event 0192…"), so replicas racing
/// to create it collide on the insert and only one wins. Its first 48 bits
/// are `at_ms`, so such ids still sort by time like [`new_id`]'s.
pub fn derived_id(prefix: &str, at_ms: i64, seed: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(seed.as_bytes());
    let mut random = [0u8; 16];
    random.copy_from_slice(&digest[..16]);
    let value = ((at_ms.max(0) as u128 & 0xffff_ffff_ffff) << 80) | (u128::from_be_bytes(random) >> 48);
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..26).rev() {
        let digit = ((value >> (i * 5)) & 0x1f) as usize;
        out.push(CROCKFORD[digit] as char);
    }
    out
}

pub fn check_id(field: &str, prefix: &str, id: &str) -> Result<(), PulseError> {
    if id.is_empty() {
        return Err(PulseError::invalid(field, "is required"));
    }
    let ok = id
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| body.len() == 26 && body.bytes().all(|b| CROCKFORD.contains(&b)));
    if ok {
        Ok(())
    } else {
        Err(PulseError::invalid(
            field,
            format!("'{}' is not a valid id: expected '{prefix}_' followed by 26 base32 characters", truncate(id, 64)),
        ))
    }
}

/// Checks a user-chosen name: 1 to 63 characters of a-z, 0-9 and '-',
/// starting with a letter.
pub fn check_name(field: &str, name: &str) -> Result<(), PulseError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_lowercase()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else if name.is_empty() {
        Err(PulseError::invalid(field, "is required"))
    } else {
        Err(PulseError::invalid(
            field,
            format!(
                "'{}' is not a valid name: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter",
                truncate(name, 64)
            ),
        ))
    }
}

/// At most `max` characters of `s`, for echoing user input in errors.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let a = new_id("ten");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("ten");
        assert!(a < b, "{a} should sort before {b}");
        check_id("tenant_id", "ten", &a).unwrap();
        let err = check_id("tenant_id", "key", &a).unwrap_err().to_string();
        assert!(err.starts_with("tenant_id: "), "{err}");
        assert!(check_id("tenant_id", "ten", "ten_short").is_err());
        assert!(check_id("tenant_id", "ten", "").unwrap_err().to_string().contains("required"));
    }

    #[test]
    fn names_are_checked() {
        check_name("name", "acme-1").unwrap();
        for bad in ["", "1acme", "Acme", "a_b", &"a".repeat(64)] {
            assert!(check_name("name", bad).is_err(), "{bad} accepted");
        }
    }
}
