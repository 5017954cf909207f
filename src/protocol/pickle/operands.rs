//! The operands of pickle opcodes that need more than a fixed-width read:
//! LONG1/LONG4's two's complement, and the text forms of protocol 0
//! (INT/LONG digits, STRING's quoted repr, UNICODE's raw-unicode-escape).

use crate::protocol::{Error, Result};

/// Little-endian two's complement, as LONG1/LONG4 carry it.
pub(crate) fn long_from_le(bytes: &[u8]) -> Result<i128> {
    let Some(&last) = bytes.last() else {
        return Ok(0);
    };
    let fill = if last & 0x80 != 0 { 0xff } else { 0x00 };
    let mut buf = [fill; 16];
    let (low, high) = bytes.split_at(bytes.len().min(16));
    buf[..low.len()].copy_from_slice(low);
    let v = i128::from_le_bytes(buf);
    // Extra high bytes must be pure sign extension of what fits.
    let sign = if v < 0 { 0xff } else { 0x00 };
    if high.iter().any(|&b| b != sign) {
        return Err(Error::IntegerOverflow);
    }
    Ok(v)
}

pub(crate) fn parse_int(text: &[u8], offset: usize) -> Result<i128> {
    let s = std::str::from_utf8(text)
        .map_err(|_| Error::BadArgument { offset })?
        .trim();
    match s.parse::<i128>() {
        Ok(v) => Ok(v),
        Err(e) => match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                Err(Error::IntegerOverflow)
            }
            _ => Err(Error::BadArgument { offset }),
        },
    }
}

/// STRING's operand: a quoted Python 2 `repr` of a byte string.
pub(crate) fn unquote_string(line: &[u8], offset: usize) -> Result<Vec<u8>> {
    let bad = || Error::BadArgument { offset };
    let quote = *line.first().ok_or_else(bad)?;
    if line.len() < 2 || !(quote == b'\'' || quote == b'"') || line.last() != Some(&quote) {
        return Err(bad());
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let esc = *body.get(i).ok_or_else(bad)?;
        i += 1;
        match esc {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(esc),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'x' => {
                let hex = body.get(i..i + 2).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(esc - b'0');
                for _ in 0..2 {
                    match body.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            _ => {
                out.push(b'\\');
                out.push(esc);
            }
        }
    }
    Ok(out)
}

/// UNICODE's operand: Python's `raw-unicode-escape` (Latin-1 bytes with
/// `\uXXXX` / `\UXXXXXXXX` escapes).
pub(crate) fn raw_unicode_unescape(line: &[u8], offset: usize) -> Result<String> {
    let bad = || Error::BadArgument { offset };
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while let Some(&b) = line.get(i) {
        let digits = match (b, line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => {
                out.push(char::from(b));
                i += 1;
                continue;
            }
        };
        let hex = line.get(i + 2..i + 2 + digits).ok_or_else(bad)?;
        let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
        let code = u32::from_str_radix(hex, 16).map_err(|_| bad())?;
        out.push(char::from_u32(code).ok_or_else(bad)?);
        i += 2 + digits;
    }
    Ok(out)
}
