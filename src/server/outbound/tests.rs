#![allow(clippy::unwrap_used)]

use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, DuplexStream};

use super::*;

/// Reads one length-prefixed frame.
async fn frame<R: AsyncRead + Unpin>(peer: &mut R) -> Vec<u8> {
    let mut size = [0u8; 4];
    peer.read_exact(&mut size).await.unwrap();
    let mut bytes = vec![0; u32::from_be_bytes(size) as usize];
    peer.read_exact(&mut bytes).await.unwrap();
    bytes
}

fn pipe(socket_buffer: usize, limit: usize) -> (Outbound, Drain, DuplexStream) {
    let (ours, peer) = tokio::io::duplex(socket_buffer);
    let (out, drain) = Outbound::new(limit, ours);
    (out, drain, peer)
}

#[tokio::test]
async fn a_reply_with_nothing_ahead_is_written_without_the_writer_task() {
    let (out, _drain, mut peer) = pipe(1024, 1024);
    out.reserve().await.unwrap().send(b"reply".to_vec());
    assert_eq!(frame(&mut peer).await, b"reply");
    assert_eq!(out.pipe().own.available_permits(), OWN_FRAMES);
}

#[tokio::test]
async fn a_reply_waits_behind_queued_callbacks() {
    let (out, drain, mut peer) = pipe(1024, 1024);
    let slot = out.reserve().await.unwrap();
    out.try_push(b"invalidation".to_vec()).unwrap();
    slot.send(b"reply".to_vec());
    // Nothing may overtake the queued callback, so nothing is written
    // until the writer task runs.
    let mut byte = [0u8; 1];
    assert!(peer.read(&mut byte).now_or_never().is_none());
    tokio::spawn(write_frames(drain, CancellationToken::new(), 1));
    assert_eq!(frame(&mut peer).await, b"invalidation");
    assert_eq!(frame(&mut peer).await, b"reply");
}

#[tokio::test]
async fn what_the_socket_does_not_take_at_once_stays_first_in_line() {
    let (out, drain, mut peer) = pipe(16, 1024);
    let reply = vec![7; 100];
    out.reserve().await.unwrap().send(reply.clone());
    out.try_push(b"invalidation".to_vec()).unwrap();
    out.reserve().await.unwrap().send(b"second".to_vec());
    tokio::spawn(write_frames(drain, CancellationToken::new(), 1));
    assert_eq!(frame(&mut peer).await, reply);
    assert_eq!(frame(&mut peer).await, b"invalidation");
    assert_eq!(frame(&mut peer).await, b"second");
    // With every sender gone the writer ends the stream.
    drop(out);
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "writer wrote more than was sent");
}

#[tokio::test]
async fn own_frames_leave_room_for_callbacks_and_overflow_is_reported() {
    // A client that reads nothing: one byte of socket buffer.
    let (out, drain, mut peer) = pipe(1, 100 * (10 + FRAME_OVERHEAD));
    let limit = 100 * (10 + FRAME_OVERHEAD);
    let mut slots = Vec::new();
    for _ in 0..OWN_FRAMES {
        slots.push(out.reserve().await.unwrap());
    }
    // The connection's own share is used up: a further reply waits...
    assert!(
        out.reserve().now_or_never().is_none(),
        "own frames exceeded their share"
    );
    // ...while callbacks from other connections still fit, up to the
    // byte limit.
    for _ in 0..100 {
        out.try_push(vec![1; 10]).unwrap();
    }
    assert_eq!(out.queued(), limit);
    let full = out.try_push(vec![2]).unwrap_err();
    assert_eq!(full.queued, limit, "queue grew past its bound");
    for slot in slots {
        slot.send(vec![0]);
    }
    assert!(
        out.reserve().now_or_never().is_none(),
        "queued replies freed their share before being written"
    );
    // Written frames return their share and their bytes.
    tokio::spawn(write_frames(drain, CancellationToken::new(), 1));
    for _ in 0..100 {
        assert_eq!(frame(&mut peer).await, vec![1; 10]);
    }
    for _ in 0..OWN_FRAMES {
        assert_eq!(frame(&mut peer).await, vec![0]);
    }
    assert_eq!(out.queued(), 0);
    let again = out.reserve().await;
    assert!(
        again.is_ok(),
        "written frames did not free the connection's share"
    );
}

#[tokio::test]
async fn one_callback_larger_than_the_limit_passes_an_empty_queue() {
    let (out, drain, mut peer) = pipe(64 * 1024, 1024);
    out.try_push(vec![0; 4096]).unwrap();
    assert!(out.try_push(vec![0; 1]).is_err(), "a second one must wait");
    tokio::spawn(write_frames(drain, CancellationToken::new(), 1));
    assert_eq!(frame(&mut peer).await.len(), 4096);
    out.try_push(vec![0; 1]).unwrap();
}

#[tokio::test]
async fn a_dead_writer_fails_reservations_and_drops_frames() {
    let (out, drain, peer) = pipe(1, 1024);
    let slot = out.reserve().await.unwrap();
    out.try_push(vec![1; 10]).unwrap();
    let kill = CancellationToken::new();
    let writer = tokio::spawn(write_frames(drain, kill.clone(), 1));
    kill.cancel();
    writer.await.unwrap();
    drop(peer);
    slot.send(vec![0]);
    assert!(out.reserve().await.is_err(), "reserved on a closed pipe");
    assert!(out.try_push(vec![1]).is_err(), "queued on a closed pipe");
    assert_eq!(out.queued(), 0, "dropped callbacks kept their charge");
}
