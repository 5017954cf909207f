//! The protocol-id exchange that opens every connection: the server's
//! greeting and the client's answer (spec §2).

use super::Encoding;

/// Payload of the greeting a pickle server sends: always `Z5`, which ZEO
/// 5.4+/6 accept and ZEO 4/5.0-5.3 answer with their own id.
pub const GREETING_Z5: &[u8] = b"Z5";
/// Payload of a msgpack server's greeting; locks out ZEO 4 and ZEO 5.0.
pub const GREETING_M5: &[u8] = b"M5";

/// The greeting as a whole frame, ready to write.
pub fn greeting_frame(msgpack: bool) -> [u8; 6] {
    let id = if msgpack { GREETING_M5 } else { GREETING_Z5 };
    [0, 0, 0, 2, id[0], id[1]]
}

/// The RPC semantics a connection speaks once the handshake is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// ZEO 5/6: `register` returns the last tid, `vote` returns a list,
    /// errors as `(msgid, 2, '.reply', (name, state))`, one-way flag `True`.
    Zeo5,
    /// ZEO 4 and ZODB 3.9/3.10: `serialnos`, pickled exception replies,
    /// one-way flag `1`.
    Zeo4,
}

/// What the client's first frame asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Handshake {
    Z5,
    M5,
    Z4,
    Z3101,
    Z310,
    Z309,
    /// A status probe: answer with the JSON status, then close.
    Ruok,
    /// Anything else: log "bad handshake" and close.
    Unsupported(Vec<u8>),
}

impl Handshake {
    pub fn parse(frame: &[u8]) -> Handshake {
        match frame {
            b"Z5" => Handshake::Z5,
            b"M5" => Handshake::M5,
            b"Z4" => Handshake::Z4,
            b"Z3101" => Handshake::Z3101,
            b"Z310" => Handshake::Z310,
            b"Z309" => Handshake::Z309,
            b"ruok" => Handshake::Ruok,
            other => Handshake::Unsupported(other.to_vec()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Handshake::Z5 => b"Z5",
            Handshake::M5 => b"M5",
            Handshake::Z4 => b"Z4",
            Handshake::Z3101 => b"Z3101",
            Handshake::Z310 => b"Z310",
            Handshake::Z309 => b"Z309",
            Handshake::Ruok => b"ruok",
            Handshake::Unsupported(bytes) => bytes,
        }
    }

    /// `None` for `ruok` and unsupported ids: no RPC follows.
    pub fn generation(&self) -> Option<Generation> {
        match self {
            Handshake::Z5 | Handshake::M5 => Some(Generation::Zeo5),
            Handshake::Z4 | Handshake::Z3101 | Handshake::Z310 | Handshake::Z309 => {
                Some(Generation::Zeo4)
            }
            Handshake::Ruok | Handshake::Unsupported(_) => None,
        }
    }

    /// The encoding of the connection, given its first RPC frame: `M5` is
    /// msgpack; a pickle peer is answered in protocol 3 if it wrote one
    /// (`80 03`), otherwise in Python 2's protocol 1.
    pub fn encoding(&self, first_rpc_payload: &[u8]) -> Encoding {
        match self {
            Handshake::M5 => Encoding::Msgpack,
            _ if first_rpc_payload.starts_with(&[0x80, 0x03]) => Encoding::Pickle3,
            _ => Encoding::Pickle1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_map_to_generations() {
        for id in [
            &b"Z5"[..],
            b"M5",
            b"Z4",
            b"Z3101",
            b"Z310",
            b"Z309",
            b"ruok",
            b"Z308",
        ] {
            assert_eq!(Handshake::parse(id).as_bytes(), id);
        }
        assert_eq!(Handshake::parse(b"Z5").generation(), Some(Generation::Zeo5));
        assert_eq!(
            Handshake::parse(b"Z309").generation(),
            Some(Generation::Zeo4)
        );
        assert_eq!(Handshake::parse(b"Z308").generation(), None);
        assert_eq!(Handshake::parse(b"ruok").generation(), None);
        assert_eq!(greeting_frame(false), *b"\x00\x00\x00\x02Z5");
    }

    #[test]
    fn encoding_follows_the_first_rpc_frame() {
        assert_eq!(Handshake::Z4.encoding(b"(K\x00I00\n"), Encoding::Pickle1);
        assert_eq!(Handshake::Z4.encoding(b"\x80\x03(K\x00"), Encoding::Pickle3);
        assert_eq!(Handshake::M5.encoding(b"\x94\x01"), Encoding::Msgpack);
    }
}
