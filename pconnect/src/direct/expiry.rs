//! When a teammate's certificate stops being valid: its notAfter, read from the certificate the
//! TLS handshake already verified against the workspace CA. An agent that cannot hear the hub keeps
//! a direct connection no longer than that (`watch::outlived`).
//!
//! The reader walks only the X.509 fields before the validity (RFC 5280 §4.1) and refuses
//! anything it does not expect; it never panics on any input.

const SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT Version`, present in every v3 certificate.
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The certificate's notAfter in unix seconds; `None` when it cannot be read.
pub(crate) fn not_after(cert: &[u8]) -> Option<i64> {
    let certificate = sequence(cert)?;
    let mut tbs = sequence(certificate)?;
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs)?.2;
    }
    // serialNumber, signature, issuer; then the validity.
    for _ in 0..3 {
        tbs = element(tbs)?.2;
    }
    let validity = sequence(tbs)?;
    let (_, _, rest) = element(validity)?;
    let (tag, time, _) = element(rest)?;
    time_of(tag, time)
}

/// The contents of the SEQUENCE at the front of `input`.
fn sequence(input: &[u8]) -> Option<&[u8]> {
    match element(input)? {
        (SEQUENCE, contents, _) => Some(contents),
        _ => None,
    }
}

/// The DER element at the front of `input`: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let (bytes, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
        if bytes.is_empty() || bytes.len() > 4 {
            return None;
        }
        (bytes.iter().fold(0usize, |len, b| len << 8 | usize::from(*b)), rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) in unix
/// seconds: the only forms RFC 5280 allows in a validity.
fn time_of(tag: u8, text: &[u8]) -> Option<i64> {
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy = number(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (GENERALIZED_TIME, 15) => (number(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest[10] != b'Z' {
        return None;
    }
    let [month, day, hour, minute, second] = [0, 2, 4, 6, 8].map(|at| number(&rest[at..at + 2]));
    let (month, day, hour, minute, second) = (month?, day?, hour?, minute?, second?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Decimal digits only.
fn number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0i64, |n, &b| b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0')))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (the civil-from-days
/// algorithm in reverse: years counted from March, so the leap day ends a year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, PKCS_ED25519, date_time_ymd};

    use super::*;

    fn cert_until(year: i32, month: u8, day: u8) -> Vec<u8> {
        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let mut params = CertificateParams::new(vec!["m1.w1.agents.pconnect.invalid".into()]).unwrap();
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(year, month, day);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_not_after_of_a_certificate_is_read_in_both_time_forms() {
        // UTCTime until 2049, GeneralizedTime from 2050 on.
        assert_eq!(not_after(&cert_until(2031, 5, 17)), Some(1_936_742_400));
        assert_eq!(not_after(&cert_until(2051, 1, 2)), Some(2_556_230_400));
        assert_eq!(days_from_civil(2000, 2, 29) * 86_400, 951_782_400);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
    }

    #[test]
    fn anything_else_is_not_read_and_nothing_panics() {
        let good = cert_until(2031, 5, 17);
        for len in 0..good.len() {
            assert_eq!(not_after(&good[..len]), None, "a certificate cut at {len} bytes");
        }
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0xff;
            let _ = not_after(&bad);
        }
        assert_eq!(time_of(UTC_TIME, b"310517000000+"), None);
        assert_eq!(time_of(UTC_TIME, b"311317000000Z"), None);
        assert_eq!(time_of(GENERALIZED_TIME, b"2031051700000aZ"), None);
        assert_eq!(element(&[SEQUENCE, 0x85, 1, 1, 1, 1, 1]), None, "a length of five bytes");
    }
}
