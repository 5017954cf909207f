//! A connection's outbound queue and the socket's write side behind it. A
//! connection's own replies may use only a small share of the queue and
//! wait for room (backpressure on that client); callbacks other
//! connections push (invalidations, `info`) never wait: they are counted in
//! bytes, and once more than the connection's output limit
//! (`max-output-buffer`) is queued the client is not reading, and it is
//! disconnected.
//!
//! A reply sent while nothing is queued or unflushed is written at once by
//! the task that sends it (one non-blocking write): an isolated request
//! then costs no wake-up of the writer task and often no hop to the other
//! worker thread. Whatever the socket does not take at once is queued and
//! left to the writer task, and so is everything sent while anything waits,
//! so frames leave in the order they were sent: the queue, the socket's
//! write side and that decision share one lock.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::AsyncWrite;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Of the queue, the connection's own replies and blob chunks may hold this
/// many frames; the rest is for callbacks from other connections.
pub const OWN_FRAMES: usize = 32;
/// What a queued callback costs beyond its bytes (the frame's bookkeeping),
/// so that a flood of tiny frames is bounded too.
pub const FRAME_OVERHEAD: usize = 64;
/// A client that takes longer than this to accept one frame is gone.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(300);
/// Frames gathered into one vectored write by the writer task.
const GATHER: usize = 32;

type Writer = Pin<Box<dyn AsyncWrite + Send>>;

/// The sending side; cheap to clone. When the last clone is gone the
/// writer task writes what is queued and shuts the socket's write side.
#[derive(Clone)]
pub struct Outbound {
    handle: Arc<Handle>,
}

/// Shared by all clones of one `Outbound`; its drop tells the writer task
/// that nothing more will be sent.
struct Handle {
    pipe: Arc<Pipe>,
}

struct Pipe {
    state: Mutex<State>,
    own: Arc<Semaphore>,
    /// Bytes of callbacks queued and not yet written.
    queued: Arc<AtomicUsize>,
    limit: usize,
    /// More requests wait to be read: replies are queued, so the writer
    /// task sends them together in one write instead of one each.
    batch: AtomicBool,
}

struct State {
    writer: Writer,
    /// Frames not (completely) written yet, oldest first.
    queue: VecDeque<Frame>,
    /// Bytes of the first queued frame (length prefix included) written.
    written: usize,
    /// Bytes were written and not yet flushed (TLS keeps them until then).
    unflushed: bool,
    /// A direct write failed; the writer task reports it and ends.
    failed: Option<io::Error>,
    /// Every `Outbound` is gone.
    senders_gone: bool,
    /// The writer task has ended: frames sent now are dropped.
    closed: bool,
    /// The writer task, while it waits for work.
    idle: Option<Waker>,
}

/// One encoded message and its length prefix.
struct Frame {
    prefix: [u8; 4],
    bytes: Vec<u8>,
    /// Returned when the frame has been written.
    _own: Option<OwnedSemaphorePermit>,
    _charge: Option<Charge>,
}

impl Frame {
    /// `None` if the message is too large for the length prefix.
    fn new(
        bytes: Vec<u8>,
        own: Option<OwnedSemaphorePermit>,
        charge: Option<Charge>,
    ) -> Option<Frame> {
        let size = u32::try_from(bytes.len()).ok()?;
        Some(Frame {
            prefix: size.to_be_bytes(),
            bytes,
            _own: own,
            _charge: charge,
        })
    }

    fn len(&self) -> usize {
        self.prefix.len() + self.bytes.len()
    }

    /// The frame's unwritten bytes, `skip` bytes in.
    fn slices(&self, skip: usize) -> [&[u8]; 2] {
        let prefix = self.prefix.get(skip..).unwrap_or_default();
        let body_skip = skip.saturating_sub(self.prefix.len());
        [prefix, self.bytes.get(body_skip..).unwrap_or_default()]
    }
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
/// frame can be sent later without waiting (e.g. under a lock).
pub struct Slot {
    out: Outbound,
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

/// Why the writer task stops before every sender is gone.
enum Stop {
    Killed,
    Failed(io::Error),
    Stalled,
}

/// The writer task's end of an `Outbound`: see [`write_frames`].
pub struct Drain {
    pipe: Arc<Pipe>,
}

impl Outbound {
    /// A queue in front of `writer` that holds at most `limit` bytes of
    /// callbacks (one callback of any size is let through when nothing else
    /// waits, so a large invalidation does not disconnect a client that
    /// reads). Nothing is written by a task until [`write_frames`] runs the
    /// returned `Drain`.
    pub fn new<W>(limit: usize, writer: W) -> (Outbound, Drain)
    where
        W: AsyncWrite + Send + 'static,
    {
        let pipe = Arc::new(Pipe {
            state: Mutex::new(State {
                writer: Box::pin(writer),
                queue: VecDeque::new(),
                written: 0,
                unflushed: false,
                failed: None,
                senders_gone: false,
                closed: false,
                idle: None,
            }),
            own: Arc::new(Semaphore::new(OWN_FRAMES)),
            queued: Arc::new(AtomicUsize::new(0)),
            limit,
            batch: AtomicBool::new(false),
        });
        let handle = Arc::new(Handle { pipe: pipe.clone() });
        (Outbound { handle }, Drain { pipe })
    }

    fn pipe(&self) -> &Pipe {
        &self.handle.pipe
    }

    /// Waits for room for one own frame.
    pub async fn reserve(&self) -> Result<Slot, Closed> {
        let own = self
            .pipe()
            .own
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Closed)?;
        Ok(Slot {
            out: self.clone(),
            own,
        })
    }

    /// Queues a callback from elsewhere without waiting.
    pub fn try_push(&self, bytes: Vec<u8>) -> Result<(), Full> {
        let pipe = self.pipe();
        let cost = bytes.len().saturating_add(FRAME_OVERHEAD);
        let limit = pipe.limit;
        let charged = pipe
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued.saturating_add(cost) <= limit).then(|| queued + cost)
            });
        if let Err(queued) = charged {
            return Err(Full { queued });
        }
        let charge = Charge {
            queued: pipe.queued.clone(),
            bytes: cost,
        };
        let mut state = pipe.state.lock();
        let frame = Frame::new(bytes, None, Some(charge));
        let Some(frame) = frame.filter(|_| !state.closed) else {
            drop(state);
            return Err(Full {
                queued: self.queued(),
            });
        };
        state.queue.push_back(frame);
        let idle = state.idle.take();
        drop(state);
        if let Some(task) = idle {
            task.wake();
        }
        Ok(())
    }

    /// Whether more requests are already buffered (read, not yet run):
    /// then replies are queued for the writer task, which writes those it
    /// finds together, rather than written one by one.
    pub fn set_batch(&self, more_requests: bool) {
        self.pipe().batch.store(more_requests, Ordering::Relaxed);
    }

    /// Bytes of callbacks waiting to be written.
    pub fn queued(&self) -> usize {
        self.pipe().queued.load(Ordering::Acquire)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        let mut state = self.pipe.state.lock();
        state.senders_gone = true;
        let idle = state.idle.take();
        drop(state);
        if let Some(task) = idle {
            task.wake();
        }
    }
}

impl Slot {
    /// Sends the frame: written at once if nothing is ahead of it and the
    /// socket takes it, else queued for the writer task.
    pub fn send(self, bytes: Vec<u8>) {
        let Slot { out, own } = self;
        let mut state = out.pipe().state.lock();
        if state.closed {
            return;
        }
        let Some(frame) = Frame::new(bytes, Some(own), None) else {
            state.failed = Some(io::Error::other("reply too large for a frame"));
            let idle = state.idle.take();
            drop(state);
            if let Some(task) = idle {
                task.wake();
            }
            return;
        };
        let batch = out.pipe().batch.load(Ordering::Relaxed);
        let left = if batch {
            Some(frame)
        } else {
            state.write_now(frame)
        };
        let wake = match left {
            Some(frame) => {
                state.queue.push_back(frame);
                true
            }
            None => state.unflushed || state.failed.is_some(),
        };
        let idle = if wake { state.idle.take() } else { None };
        drop(state);
        if let Some(task) = idle {
            task.wake();
        }
    }
}

impl State {
    /// Writes `frame` now if nothing waits before it; returns what is left
    /// of it to queue (with `written` set), if anything.
    fn write_now(&mut self, frame: Frame) -> Option<Frame> {
        if !self.queue.is_empty() || self.unflushed || self.failed.is_some() {
            return Some(frame);
        }
        // A write that would block must not leave this task's waker with
        // the socket: the writer task takes over and registers its own.
        let mut cx = Context::from_waker(Waker::noop());
        let mut written = 0;
        while written < frame.len() {
            let slices = frame.slices(written);
            let slices = [IoSlice::new(slices[0]), IoSlice::new(slices[1])];
            match self.writer.as_mut().poll_write_vectored(&mut cx, &slices) {
                Poll::Ready(Ok(0)) => {
                    self.failed = Some(io::ErrorKind::WriteZero.into());
                    return None;
                }
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(err)) => {
                    self.failed = Some(err);
                    return None;
                }
                Poll::Pending => break,
            }
        }
        if written > 0 {
            self.unflushed = true;
        }
        if written < frame.len() {
            self.written = written;
            return Some(frame);
        }
        match self.writer.as_mut().poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => self.unflushed = false,
            Poll::Ready(Err(err)) => self.failed = Some(err),
            Poll::Pending => {}
        }
        None
    }

    /// Writes queued frames and flushes. `Ready(Ok(true))` once all is
    /// written and flushed; `Ready(Ok(false))` when some frame was written
    /// and the socket takes no more for now (the caller re-arms its
    /// timeout and polls again).
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if let Some(err) = self.failed.take() {
            return Poll::Ready(Err(err));
        }
        let mut progress = false;
        while !self.queue.is_empty() {
            let mut slices = Vec::with_capacity(2 * GATHER);
            let mut skip = self.written;
            for frame in self.queue.iter().take(GATHER) {
                slices.extend(
                    frame
                        .slices(skip)
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .map(IoSlice::new),
                );
                skip = 0;
            }
            let n = match self.writer.as_mut().poll_write_vectored(cx, &slices) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(result) => result?,
                Poll::Pending if progress => return Poll::Ready(Ok(false)),
                Poll::Pending => return Poll::Pending,
            };
            drop(slices);
            self.unflushed = true;
            let before = self.queue.len();
            self.advance(n);
            progress |= self.queue.len() < before;
        }
        if self.unflushed {
            match self.writer.as_mut().poll_flush(cx) {
                Poll::Ready(result) => result?,
                Poll::Pending if progress => return Poll::Ready(Ok(false)),
                Poll::Pending => return Poll::Pending,
            }
            self.unflushed = false;
        }
        Poll::Ready(Ok(true))
    }

    /// Takes `n` written bytes off the front of the queue; written frames
    /// return their share of the queue.
    fn advance(&mut self, mut n: usize) {
        while let Some(front) = self.queue.front() {
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.written = 0;
            self.queue.pop_front();
        }
    }

    /// Is there anything for the writer task? Else it waits (`cx`).
    fn poll_work(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.queue.is_empty() || self.unflushed || self.failed.is_some() || self.senders_gone {
            return Poll::Ready(());
        }
        self.idle = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drain {
    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        self.pipe.state.lock().poll_drain(cx)
    }

    /// Writes everything queued; the timeout is armed only while the
    /// socket takes nothing, and again after each frame written.
    async fn drain(&self, kill: &CancellationToken) -> Result<(), Stop> {
        loop {
            let step = tokio::select! {
                step = tokio::time::timeout(WRITE_TIMEOUT, poll_fn(|cx| self.poll_drain(cx))) => step,
                _ = kill.cancelled() => return Err(Stop::Killed),
            };
            match step {
                Ok(Ok(true)) => return Ok(()),
                Ok(Ok(false)) => continue,
                Ok(Err(err)) => return Err(Stop::Failed(err)),
                Err(_) => return Err(Stop::Stalled),
            }
        }
    }

    /// Ends the pipe: later frames are dropped, reservations fail.
    fn close(&self) {
        let mut state = self.pipe.state.lock();
        state.closed = true;
        state.idle = None;
        let frames = std::mem::take(&mut state.queue);
        drop(state);
        self.pipe.own.close();
        drop(frames);
    }
}

/// Writes what the connection queues until every sender is gone, then
/// flushes and shuts the socket's write side. A write error or timeout
/// cancels `kill` so the reading side stops too.
pub async fn write_frames(drain: Drain, kill: CancellationToken, conn: u64) {
    loop {
        tokio::select! {
            () = poll_fn(|cx| drain.pipe.state.lock().poll_work(cx)) => {}
            _ = kill.cancelled() => break,
        }
        match drain.drain(&kill).await {
            Ok(()) => {}
            Err(Stop::Killed) => break,
            Err(Stop::Failed(err)) => {
                tracing::debug!(conn, %err, "write failed");
                kill.cancel();
                break;
            }
            Err(Stop::Stalled) => {
                tracing::warn!(
                    conn,
                    "client did not read a frame for {WRITE_TIMEOUT:?}; disconnecting"
                );
                kill.cancel();
                break;
            }
        }
        let done = {
            let state = drain.pipe.state.lock();
            state.senders_gone && state.queue.is_empty() && !state.unflushed
        };
        if done {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                poll_fn(|cx| drain.pipe.state.lock().writer.as_mut().poll_shutdown(cx)),
            )
            .await;
            break;
        }
    }
    drain.close();
}

#[cfg(test)]
mod tests;
