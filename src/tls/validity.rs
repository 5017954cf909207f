//! The validity period of an X.509 certificate, read from its DER with a
//! minimal walk: pinned certificates are trusted without a chain, so their
//! dates are the one thing left to check, and webpki does not expose them.
//!
//! ```text
//!   Certificate     SEQUENCE {
//!     tbsCertificate  SEQUENCE {
//!       version         [0] EXPLICIT INTEGER OPTIONAL
//!       serialNumber    INTEGER
//!       signature       SEQUENCE (AlgorithmIdentifier)
//!       issuer          SEQUENCE (Name)
//!       validity        SEQUENCE { notBefore Time, notAfter Time }
//!       ...
//!   Time:  UTCTime (0x17) "YYMMDDHHMMSSZ"  (YY < 50: 20YY)
//!        | GeneralizedTime (0x18) "YYYYMMDDHHMMSSZ"
//! ```

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// `(notBefore, notAfter)` in seconds since the Unix epoch, or `None` if
/// `der` is not a certificate this walk understands.
pub(super) fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let (tag, certificate, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = tlv(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = tlv(rest)?.2;
    }
    for _ in ["serialNumber", "signature", "issuer"] {
        rest = tlv(rest)?.2;
    }
    let (tag, period, _) = tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (not_before, rest) = time(period)?;
    let (not_after, _) = time(rest)?;
    Some((not_before, not_after))
}

/// One DER element: `(tag, contents, what follows)`.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

fn time(input: &[u8]) -> Option<(i64, &[u8])> {
    let (tag, text, rest) = tlv(input)?;
    let text = std::str::from_utf8(text).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, fields) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |at: usize| -> Option<i64> { fields.get(at..at + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3_600 + minute * 60 + second, rest))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn reads_the_dates_rcgen_wrote() {
        let mut params = rcgen::CertificateParams::new(vec!["zeo".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2001, 2, 3);
        // After 2049, so GeneralizedTime.
        params.not_after = rcgen::date_time_ymd(2061, 12, 31);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (from, to) = validity(cert.der()).unwrap();
        assert_eq!(from, days_from_civil(2001, 2, 3) * 86_400);
        assert_eq!(to, days_from_civil(2061, 12, 31) * 86_400);
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        assert_eq!(validity(&[]), None);
        assert_eq!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(validity(&[0x30, 0x02, 0x30, 0x00]), None);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["zeo".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        for cut in 0..der.len().min(200) {
            let _ = validity(&der[..cut]);
        }
    }
}
