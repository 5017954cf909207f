//! The server's seam to the protocol codec: frames and message
//! (de)serialisation in a connection's encoding, and the pickled form of
//! transaction extensions. Everything the server sends or receives passes
//! through here.

use crate::protocol::{self, pickle, Encoding, Message, Value};

pub use crate::protocol::Error as WireError;

/// The frame codec with the configured size limit.
pub fn frame_codec(max_frame: usize) -> protocol::FrameCodec {
    protocol::FrameCodec::with_max_frame(
        u32::try_from(max_frame).unwrap_or(protocol::DEFAULT_MAX_FRAME),
    )
}

/// Decodes one RPC message (any pickle protocol, or msgpack).
pub fn decode(encoding: Encoding, payload: &[u8]) -> Result<Message, WireError> {
    protocol::decode_message(encoding, payload)
}

/// Encodes one RPC message.
pub fn encode(encoding: Encoding, message: &Message) -> Result<Vec<u8>, WireError> {
    protocol::encode_message(encoding, message)
}

/// A transaction's extension dict as ZODB stores it (empty for `{}`).
pub fn pickle_extension(value: &Value) -> Vec<u8> {
    pickle::encode_extension(value)
}

/// Stored extension bytes as a dict.
pub fn unpickle_extension(payload: &[u8]) -> Result<Value, WireError> {
    pickle::decode_extension(payload)
}
