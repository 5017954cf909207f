//! A connection's outbound queue and the task that drains it into the
//! socket. The queue is bounded. A connection's own replies may use only a
//! small share of it and wait for room (backpressure on that client);
//! callbacks other connections push (invalidations, `info`) never wait: if
//! the queue is full the client is not reading, and it is disconnected.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Frames queued per connection, all kinds together.
pub const QUEUE_FRAMES: usize = 1024;
/// Of which the connection's own replies and blob chunks may use this many,
/// leaving the rest for invalidations from other connections.
pub const OWN_FRAMES: usize = 32;
/// A client that takes longer than this to accept one frame is gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(300);

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Frame>,
    own: Arc<Semaphore>,
}

/// One encoded message (without its length prefix).
pub struct Frame {
    pub bytes: Vec<u8>,
    /// Returned when the frame has been written.
    _own: Option<OwnedSemaphorePermit>,
}

/// Room for one of the connection's own frames, reserved in advance so the
/// frame can be queued later without waiting (e.g. under a lock).
pub struct Slot {
    permit: mpsc::OwnedPermit<Frame>,
    own: OwnedSemaphorePermit,
}

/// The connection's writer is gone.
#[derive(Debug)]
pub struct Closed;

/// The queue is full.
#[derive(Debug)]
pub struct Full;

impl Outbound {
    pub fn new() -> (Outbound, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        (
            Outbound {
                tx,
                own: Arc::new(Semaphore::new(OWN_FRAMES)),
            },
            rx,
        )
    }

    /// Waits for room for one own frame.
    pub async fn reserve(&self) -> Result<Slot, Closed> {
        let own = self.own.clone().acquire_owned().await.map_err(|_| Closed)?;
        let permit = self.tx.clone().reserve_owned().await.map_err(|_| Closed)?;
        Ok(Slot { permit, own })
    }

    /// Queues a callback from elsewhere without waiting.
    pub fn try_push(&self, bytes: Vec<u8>) -> Result<(), Full> {
        self.tx
            .try_send(Frame { bytes, _own: None })
            .map_err(|_| Full)
    }
}

impl Slot {
    pub fn send(self, bytes: Vec<u8>) {
        self.permit.send(Frame {
            bytes,
            _own: Some(self.own),
        });
    }
}

/// Writes queued frames until every sender is gone, then flushes and shuts
/// the socket's write side. A write error or timeout cancels `kill` so the
/// reading side stops too.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Frame>,
    writer: W,
    kill: CancellationToken,
    conn: u64,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => frame,
            _ = kill.cancelled() => break,
        };
        let Some(frame) = frame else { break };
        let result = tokio::time::timeout(WRITE_TIMEOUT, async {
            let size = u32::try_from(frame.bytes.len()).map_err(std::io::Error::other)?;
            writer.write_all(&size.to_be_bytes()).await?;
            writer.write_all(&frame.bytes).await?;
            if rx.is_empty() {
                writer.flush().await?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::debug!(conn, %err, "write failed");
                kill.cancel();
                return;
            }
            Err(_) => {
                tracing::warn!(
                    conn,
                    "client did not read a frame for {WRITE_TIMEOUT:?}; disconnecting"
                );
                kill.cancel();
                return;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = writer.flush().await;
        let _ = writer.shutdown().await;
    })
    .await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn own_frames_leave_room_for_callbacks_and_overflow_is_reported() {
        let (out, mut rx) = Outbound::new();
        let mut slots = Vec::new();
        for _ in 0..OWN_FRAMES {
            slots.push(out.reserve().await.unwrap());
        }
        // The connection's own share is used up: a further reply waits...
        let waiting = tokio::time::timeout(Duration::from_millis(50), out.reserve()).await;
        assert!(waiting.is_err(), "own frames exceeded their share");
        // ...while callbacks from other connections still fit, up to the bound.
        for _ in 0..QUEUE_FRAMES - OWN_FRAMES {
            out.try_push(vec![1]).unwrap();
        }
        assert!(out.try_push(vec![2]).is_err(), "queue grew past its bound");
        for slot in slots {
            slot.send(vec![0]);
        }
        // Written frames return their share.
        assert_eq!(rx.len(), QUEUE_FRAMES);
        while !rx.is_empty() {
            drop(rx.recv().await.unwrap());
        }
        let again = tokio::time::timeout(Duration::from_millis(50), out.reserve()).await;
        assert!(
            again.is_ok(),
            "written frames did not free the connection's share"
        );
    }
}
