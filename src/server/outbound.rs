//! A connection's outbound queue and the task that drains it into the
//! socket. A connection's own replies may use only a small share of the
//! queue and wait for room (backpressure on that client); callbacks other
//! connections push (invalidations, `info`) never wait: they are counted in
//! bytes, and once more than the connection's output limit
//! (`max-output-buffer`) is queued the client is not reading, and it is
//! disconnected.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Of the queue, the connection's own replies and blob chunks may hold this
/// many frames; the rest is for callbacks from other connections.
pub const OWN_FRAMES: usize = 32;
/// What a queued callback costs beyond its bytes (the frame's bookkeeping),
/// so that a flood of tiny frames is bounded too.
pub const FRAME_OVERHEAD: usize = 64;
/// A client that takes longer than this to accept one frame is gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(300);

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::Sender<Frame>,
    own: Arc<Semaphore>,
    /// Bytes of callbacks queued and not yet written.
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// One encoded message (without its length prefix).
pub struct Frame {
    pub bytes: Vec<u8>,
    /// Returned when the frame has been written.
    _own: Option<OwnedSemaphorePermit>,
    _charge: Option<Charge>,
}

/// A callback's share of the byte limit, returned when it is written.
struct Charge {
    queued: Arc<AtomicUsize>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.bytes, Ordering::AcqRel);
    }
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

/// The callback was not queued: the client is not reading (`queued` bytes
/// wait already) or its writer is gone.
#[derive(Debug)]
pub struct Full {
    pub queued: usize,
}

impl Outbound {
    /// A queue that holds at most `limit` bytes of callbacks (one callback
    /// of any size is let through when nothing else waits, so a large
    /// invalidation does not disconnect a client that reads).
    pub fn new(limit: usize) -> (Outbound, mpsc::Receiver<Frame>) {
        // Every callback costs at least FRAME_OVERHEAD, so the byte limit
        // is reached before the frame count.
        let frames = OWN_FRAMES + limit / FRAME_OVERHEAD + 1;
        let (tx, rx) = mpsc::channel(frames);
        (
            Outbound {
                tx,
                own: Arc::new(Semaphore::new(OWN_FRAMES)),
                queued: Arc::new(AtomicUsize::new(0)),
                limit,
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
        let cost = bytes.len().saturating_add(FRAME_OVERHEAD);
        let limit = self.limit;
        let charged = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued.saturating_add(cost) <= limit).then(|| queued + cost)
            });
        if let Err(queued) = charged {
            return Err(Full { queued });
        }
        let charge = Charge {
            queued: self.queued.clone(),
            bytes: cost,
        };
        self.tx
            .try_send(Frame {
                bytes,
                _own: None,
                _charge: Some(charge),
            })
            .map_err(|_| Full {
                queued: self.queued(),
            })
    }

    /// Bytes of callbacks waiting to be written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl Slot {
    pub fn send(self, bytes: Vec<u8>) {
        self.permit.send(Frame {
            bytes,
            _own: Some(self.own),
            _charge: None,
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
        let limit = 100 * (10 + FRAME_OVERHEAD);
        let (out, mut rx) = Outbound::new(limit);
        let mut slots = Vec::new();
        for _ in 0..OWN_FRAMES {
            slots.push(out.reserve().await.unwrap());
        }
        // The connection's own share is used up: a further reply waits...
        let waiting = tokio::time::timeout(Duration::from_millis(50), out.reserve()).await;
        assert!(waiting.is_err(), "own frames exceeded their share");
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
        // Written frames return their share and their bytes.
        assert_eq!(rx.len(), OWN_FRAMES + 100);
        while !rx.is_empty() {
            drop(rx.recv().await.unwrap());
        }
        assert_eq!(out.queued(), 0);
        let again = tokio::time::timeout(Duration::from_millis(50), out.reserve()).await;
        assert!(
            again.is_ok(),
            "written frames did not free the connection's share"
        );
    }

    #[tokio::test]
    async fn one_callback_larger_than_the_limit_passes_an_empty_queue() {
        let (out, mut rx) = Outbound::new(1024);
        out.try_push(vec![0; 4096]).unwrap();
        assert!(out.try_push(vec![0; 1]).is_err(), "a second one must wait");
        drop(rx.recv().await.unwrap());
        out.try_push(vec![0; 1]).unwrap();
    }
}
