//! ZEO frames ("sized messages"): every unit on the wire, handshake included,
//! is a u32 big-endian length followed by that many payload bytes.
//!
//! ```text
//! +----------------------------+------------------------+
//! | length: u32, big-endian    | payload: length bytes  |
//! +----------------------------+------------------------+
//! ```
//!
//! ZEO 4's MAC mode sets the top bit of the length word; we never offer the
//! authentication that enables it, so with the default limit such a frame is
//! simply [`Error::FrameTooLarge`] and the connection is closed.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::Error;

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// 2 GiB − 1: Python imposes no limit, blob chunks and big `storea` records
/// are megabytes, and this still rejects every MAC-mode length word.
pub const DEFAULT_MAX_FRAME: u32 = 0x7fff_ffff;

/// What [`parse`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole frame: its payload, and how many buffer bytes it spans
    /// (header included).
    Frame { payload: &'a [u8], consumed: usize },
    /// Not enough bytes yet; `needed` more would complete the frame
    /// (or at least its header).
    Incomplete { needed: usize },
}

/// Checks the header, then borrows the payload: never copies, never panics.
pub fn parse(buf: &[u8], max_frame: u32) -> Result<Parsed<'_>, Error> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Parsed::Incomplete {
            needed: HEADER_LEN - buf.len(),
        });
    };
    let len = u32::from_be_bytes(*header);
    if len > max_frame {
        return Err(Error::FrameTooLarge {
            len: u64::from(len),
            max: u64::from(max_frame),
        });
    }
    let total = HEADER_LEN + len as usize;
    match buf.get(HEADER_LEN..total) {
        Some(payload) => Ok(Parsed::Frame {
            payload,
            consumed: total,
        }),
        None => Ok(Parsed::Incomplete {
            needed: total - buf.len(),
        }),
    }
}

/// One whole frame, header included, as it goes on the wire.
pub fn encode(payload: &[u8]) -> Result<Vec<u8>, Error> {
    let len = frame_len(payload.len(), DEFAULT_MAX_FRAME)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

fn frame_len(len: usize, max_frame: u32) -> Result<u32, Error> {
    match u32::try_from(len) {
        Ok(n) if n <= max_frame => Ok(n),
        _ => Err(Error::FrameTooLarge {
            len: len as u64,
            max: u64::from(max_frame),
        }),
    }
}

/// `tokio_util` codec for a ZEO stream: decodes payloads, encodes payloads
/// into frames. Wrap a `TcpStream` in `Framed::new(stream, FrameCodec::new())`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_frame: u32,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new()
    }
}

impl FrameCodec {
    pub fn new() -> FrameCodec {
        FrameCodec {
            max_frame: DEFAULT_MAX_FRAME,
        }
    }

    /// Frames longer than `max_frame` (in either direction) are an error.
    pub fn with_max_frame(max_frame: u32) -> FrameCodec {
        FrameCodec { max_frame }
    }

    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }
}

/// Read-ahead is capped so a peer announcing a huge frame cannot make us
/// allocate it before sending the bytes.
const MAX_RESERVE: usize = 1 << 20;

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
        match parse(src, self.max_frame)? {
            Parsed::Frame { payload, consumed } => {
                let len = payload.len();
                debug_assert_eq!(consumed, HEADER_LEN + len);
                src.advance(HEADER_LEN);
                Ok(Some(src.split_to(len)))
            }
            Parsed::Incomplete { needed } => {
                src.reserve(needed.min(MAX_RESERVE));
                Ok(None)
            }
        }
    }
}

impl Encoder<&[u8]> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), Error> {
        let len = frame_len(payload.len(), self.max_frame)?;
        dst.reserve(HEADER_LEN + payload.len());
        dst.put_u32(len);
        dst.extend_from_slice(payload);
        Ok(())
    }
}

impl Encoder<Vec<u8>> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, payload: Vec<u8>, dst: &mut BytesMut) -> Result<(), Error> {
        Encoder::<&[u8]>::encode(self, &payload, dst)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), Error> {
        Encoder::<&[u8]>::encode(self, &payload, dst)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn greeting_is_six_bytes() {
        assert_eq!(encode(b"Z5").unwrap(), b"\x00\x00\x00\x02Z5");
    }

    #[test]
    fn parse_waits_for_header_and_payload() {
        assert_eq!(
            parse(b"\x00\x00", 10).unwrap(),
            Parsed::Incomplete { needed: 2 }
        );
        assert_eq!(
            parse(b"\x00\x00\x00\x04ru", 10).unwrap(),
            Parsed::Incomplete { needed: 2 }
        );
        assert_eq!(
            parse(b"\x00\x00\x00\x04ruokX", 10).unwrap(),
            Parsed::Frame {
                payload: b"ruok",
                consumed: 8
            }
        );
    }

    #[test]
    fn oversized_and_mac_frames_are_rejected() {
        assert!(matches!(
            parse(b"\x00\x00\x00\x0b", 10),
            Err(Error::FrameTooLarge { len: 11, max: 10 })
        ));
        assert!(matches!(
            parse(b"\x80\x00\x00\x02", DEFAULT_MAX_FRAME),
            Err(Error::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn codec_splits_coalesced_frames_and_waits_for_split_ones() {
        let mut codec = FrameCodec::new();
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x02Z5\x00\x00\x00\x04ru"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"Z5"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(b"ok");
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), &b"ruok"[..]);
        assert!(buf.is_empty());
    }

    #[test]
    fn codec_encoder_refuses_frames_over_its_limit() {
        let mut codec = FrameCodec::with_max_frame(3);
        let mut dst = BytesMut::new();
        codec.encode(&b"abc"[..], &mut dst).unwrap();
        assert_eq!(&dst[..], b"\x00\x00\x00\x03abc");
        assert!(codec.encode(vec![0u8; 4], &mut dst).is_err());
    }
}
