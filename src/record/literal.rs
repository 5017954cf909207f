//! The arguments of pickle opcodes. The protocol-0 text forms and `LONG`s
//! are decoded by the message codec's operand parsers; this adds what
//! data records need on top: Python 2 strings decoded as py3 ZODB decodes
//! them (ASCII, strictly), and errors in the record's own terms.

use crate::protocol::pickle::operands;

use super::RecordError;

type Result<T> = std::result::Result<T, RecordError>;

pub(super) fn arr4(b: &[u8]) -> [u8; 4] {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    a
}

/// Two's complement, little-endian (`LONG1`/`LONG4`).
pub(super) fn decode_long(b: &[u8], at: usize) -> Result<i128> {
    operands::long_from_le(b).map_err(|_| RecordError::IntTooLarge(at))
}

/// Digits of `INT`, `LONG` (without its `L`), `PUT` and `GET`.
pub(super) fn parse_int_text(line: &[u8], at: usize) -> Result<i128> {
    operands::parse_int(line, at).map_err(|_| RecordError::BadLiteral(at))
}

/// `GLOBAL`/`INST` names and `PERSID` ids.
pub(super) fn text_line(line: &[u8], at: usize) -> Result<String> {
    String::from_utf8(line.to_vec()).map_err(|_| RecordError::BadUtf8(at))
}

/// py3 ZODB reads py2 `str` with `encoding='ASCII', errors='strict'`.
pub(super) fn py2_str(b: &[u8], at: usize) -> Result<&str> {
    if !b.is_ascii() {
        return Err(RecordError::NonAsciiString(at));
    }
    std::str::from_utf8(b).map_err(|_| RecordError::NonAsciiString(at))
}

/// The argument of protocol-0 `STRING`: a Python 2 `repr` of a str.
pub(super) fn unquote_py2(line: &[u8], at: usize) -> Result<Vec<u8>> {
    operands::unquote_string(line, at).map_err(|_| RecordError::BadLiteral(at))
}

/// The argument of protocol-0 `UNICODE`: raw-unicode-escape.
pub(super) fn raw_unicode_escape(line: &[u8], at: usize) -> Result<String> {
    operands::raw_unicode_unescape(line, at).map_err(|_| RecordError::BadLiteral(at))
}
