//! Byte counting for a connection's two halves: wrappers around the reader
//! and writer that add what passed through to a [`Counter`]. Counting at
//! the socket sees every frame (replies, callbacks, blob chunks) without
//! the server's code paths having to report each one.

use std::pin::Pin;
use std::task::{Context, Poll};

use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct Counted<T> {
    inner: T,
    counter: Counter,
}

impl<T> Counted<T> {
    pub fn new(inner: T, counter: Counter) -> Counted<T> {
        Counted { inner, counter }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.counter.inc_by(read as u64);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.counter.inc_by(*n as u64);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &polled {
            self.counter.inc_by(*n as u64);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn counts_both_directions() {
        let (a, b) = tokio::io::duplex(64);
        let (sent, received) = (Counter::default(), Counter::default());
        let mut writer = Counted::new(a, sent.clone());
        let mut reader = Counted::new(b, received.clone());
        writer.write_all(b"hello world").await.unwrap();
        let mut buf = [0u8; 11];
        reader.read_exact(&mut buf).await.unwrap();
        assert_eq!((sent.get(), received.get()), (11, 11));
    }

    #[tokio::test]
    async fn counts_vectored_writes() {
        let (a, mut b) = tokio::io::duplex(64);
        let sent = Counter::default();
        let mut writer = Counted::new(a, sent.clone());
        let parts = [
            std::io::IoSlice::new(b"hello "),
            std::io::IoSlice::new(b"world"),
        ];
        let mut written = 0;
        while written == 0 {
            written = writer.write_vectored(&parts).await.unwrap();
        }
        let mut buf = vec![0u8; written];
        b.read_exact(&mut buf).await.unwrap();
        assert_eq!(sent.get(), written as u64);
    }
}
