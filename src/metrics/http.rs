//! The metrics listener: a deliberately tiny HTTP/1.x responder for
//! `GET /metrics` and `GET /healthz` (a whole HTTP stack for two read-only
//! pages would dwarf the rest of the server). One request per connection,
//! `Connection: close`; the request head is bounded in size and time, and
//! so is the number of scrapes served at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{Format, Metrics};

/// Larger request heads are refused (a scraper sends a few hundred bytes).
const MAX_HEAD: usize = 8 << 10;
/// A client gets this long to send its request and take the answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes served at once; more wait in the listen backlog.
const MAX_CONCURRENT: usize = 16;

/// Serves `metrics` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future) {
    let limit = Arc::new(Semaphore::new(MAX_CONCURRENT));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = &mut shutdown => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(REQUEST_TIMEOUT, respond(stream, &metrics)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => tracing::debug!(%peer, %err, "metrics request failed"),
                        Err(_) => tracing::debug!(%peer, "metrics request timed out"),
                    }
                    drop(permit);
                });
            }
            Err(err) => {
                // Out of descriptors and the like: the ZEO side matters
                // more, so back off rather than spin.
                tracing::warn!(%err, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    accept: String,
}

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let head = match read_head(&mut stream).await? {
        Some(head) => head,
        None => {
            return write(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request head too large\n",
                false,
            )
            .await
        }
    };
    let Some(request) = parse(&head) else {
        return write(
            &mut stream,
            "400 Bad Request",
            "text/plain",
            b"bad request\n",
            false,
        )
        .await;
    };
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return write(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
            false,
        )
        .await;
    }
    // Scrapers may append a query string; it selects nothing here.
    let path = request.path.split('?').next().unwrap_or("");
    match path {
        "/metrics" => {
            let format = Format::from_accept(&request.accept);
            let body = metrics.render(format);
            write(
                &mut stream,
                "200 OK",
                format.content_type(),
                body.as_bytes(),
                head_only,
            )
            .await
        }
        "/healthz" => write(&mut stream, "200 OK", "text/plain", b"ok\n", head_only).await,
        "/" => {
            let body = b"zeod metrics: see /metrics (Prometheus) and /healthz\n";
            write(&mut stream, "200 OK", "text/plain", body, head_only).await
        }
        _ => {
            write(
                &mut stream,
                "404 Not Found",
                "text/plain",
                b"not found\n",
                head_only,
            )
            .await
        }
    }
}

/// Reads up to the blank line ending the head; `None` if it is too large.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(Some(head));
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

fn parse(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.lines();
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    if !first.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return None;
    }
    let accept = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
        .map(|(_, value)| value.trim().to_string())
        .unwrap_or_default();
    Some(Request {
        method,
        path,
        accept,
    })
}

async fn write(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_scrape_request() {
        let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n";
        let request = parse(head).unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/metrics");
        assert_eq!(Format::from_accept(&request.accept), Format::OpenMetrics);
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), None);
        assert_eq!(parse(b"\xff\xfe"), None);
    }

    #[tokio::test]
    async fn serves_metrics_and_health_then_stops() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        metrics.rpc("ping", Duration::from_micros(10));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics, stopped));
        let get = |request: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let page = get("GET /metrics HTTP/1.0\r\n\r\n").await;
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("text/plain; version=0.0.4"));
        assert!(page.contains("zeod_rpc_calls_total{method=\"ping\"} 1"));
        let health = get("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(health.ends_with("\r\n\r\nok\n"), "{health}");
        assert!(get("GET /nope HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 404"));
        assert!(get("POST /metrics HTTP/1.1\r\n\r\n")
            .await
            .starts_with("HTTP/1.1 405"));
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .unwrap()
            .unwrap();
    }
}
