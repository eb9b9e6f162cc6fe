//! The server-to-client half of an emulated connection, read straight off its TCP connection:
//! one HTTP/1.1 response (chunked, or delimited by the connection's end), its body read as lines
//! (HTTP streaming) or as server-sent events' `data:` lines. Hand-rolled rather than hyper's
//! client: a member reads its own socket in its own task, as a WebSocket member does, with no
//! connection task and channel hop per chunk (the generator shares the machine with the server).
//!
//! One buffer per connection: chunks are decoded in place, their payload moved down over the
//! chunk headers, and lines are handed out as slices of it.

use anyhow::{bail, Context};
use std::ops::Range;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Room made for each read: a WebSocket member's read buffer is as large.
const READ_BYTES: usize = 4 * 1024;
/// The longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// How the body holds the server's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One frame a line.
    Lines,
    /// Server-sent events: each line of a frame a `data:` line, a blank line ending the event.
    Events,
}

/// Where the chunked decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Awaiting a chunk's size line.
    Size,
    /// This many payload bytes of the current chunk still to come.
    Data(usize),
    /// Awaiting the CRLF after a chunk's payload.
    End,
    /// The last chunk came.
    Done,
}

pub struct Lines {
    io: TcpStream,
    framing: Framing,
    /// Decoded body bytes in `start..decoded`, then raw bytes not yet decoded.
    buf: Vec<u8>,
    start: usize,
    decoded: usize,
    /// `None`: the body runs to the connection's end.
    chunk: Option<Chunk>,
}

impl Lines {
    /// Sends `request` on `io` and reads the response's head: anything but a 200 is an error.
    pub async fn open(mut io: TcpStream, request: &[u8], framing: Framing) -> anyhow::Result<Lines> {
        io.write_all(request).await?;
        let mut buf = Vec::with_capacity(READ_BYTES);
        let head_end = loop {
            if let Some(at) = find(&buf, b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > MAX_HEAD {
                bail!("response head over {MAX_HEAD} bytes");
            }
            buf.reserve(READ_BYTES);
            if io.read_buf(&mut buf).await? == 0 {
                bail!("connection closed before the response head");
            }
        };
        let head = std::str::from_utf8(&buf[..head_end]).context("response head not UTF-8")?;
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("200") {
            bail!("answered {status}");
        }
        let chunked = head.lines().any(|line| {
            let line = line.to_ascii_lowercase();
            line.starts_with("transfer-encoding:") && line.contains("chunked")
        });
        buf.drain(..head_end);
        let mut lines =
            Lines { io, framing, buf, start: 0, decoded: 0, chunk: chunked.then_some(Chunk::Size) };
        lines.decode()?;
        Ok(lines)
    }

    /// The next frame line (for events, a `data:` line's text); `None` once the response ended.
    pub async fn next(&mut self) -> anyhow::Result<Option<&str>> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(Some(std::str::from_utf8(&self.buf[line]).context("a line not UTF-8")?));
            }
            if self.chunk == Some(Chunk::Done) {
                return Ok(None);
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.decoded -= self.start;
                self.start = 0;
            }
            if self.buf.capacity() - self.buf.len() < READ_BYTES / 4 {
                self.buf.reserve(READ_BYTES);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
            self.decode()?;
        }
    }

    /// The next complete line of the decoded body worth handing out, as a range of `buf`.
    fn take_line(&mut self) -> Option<Range<usize>> {
        loop {
            let at = self.start + self.buf[self.start..self.decoded].iter().position(|&b| b == b'\n')?;
            let line = self.start..at;
            self.start = at + 1;
            match self.framing {
                Framing::Lines if !line.is_empty() => return Some(line),
                Framing::Events if self.buf[line.clone()].starts_with(b"data:") => {
                    // "data: x" and "data:x" both mean x.
                    let skip = if self.buf.get(line.start + 5) == Some(&b' ') { 6 } else { 5 };
                    return Some(line.start + skip..line.end);
                }
                // Blank lines ending events, comments and other fields.
                _ => {}
            }
        }
    }

    /// Decodes what was read: chunk payloads move down to `decoded`, chunk headers are dropped.
    fn decode(&mut self) -> anyhow::Result<()> {
        let Some(mut chunk) = self.chunk else {
            self.decoded = self.buf.len();
            return Ok(());
        };
        let mut at = self.decoded;
        loop {
            let left = self.buf.len() - at;
            match chunk {
                Chunk::Data(size) => {
                    let n = size.min(left);
                    if n == 0 {
                        break;
                    }
                    self.buf.copy_within(at..at + n, self.decoded);
                    (self.decoded, at) = (self.decoded + n, at + n);
                    chunk = if n == size { Chunk::End } else { Chunk::Data(size - n) };
                }
                Chunk::End if left >= 2 => {
                    if &self.buf[at..at + 2] != b"\r\n" {
                        bail!("a chunk not ended by CRLF");
                    }
                    at += 2;
                    chunk = Chunk::Size;
                }
                Chunk::Size => {
                    let Some(eol) = find(&self.buf[at..], b"\r\n") else { break };
                    let line = &self.buf[at..at + eol];
                    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
                    let hex = std::str::from_utf8(hex).context("chunk size")?.trim();
                    let size =
                        usize::from_str_radix(hex, 16).with_context(|| format!("chunk size {hex:?}"))?;
                    at += eol + 2;
                    chunk = if size == 0 { Chunk::Done } else { Chunk::Data(size) };
                }
                Chunk::End | Chunk::Done => break,
            }
        }
        self.buf.drain(self.decoded..at);
        self.chunk = Some(chunk);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves `response` in pieces of `piece` bytes to one client, and reads it all with `framing`.
    async fn read_all(
        response: &'static [u8],
        piece: usize,
        framing: Framing,
    ) -> anyhow::Result<Vec<String>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            // Read first: closing on an unread request would reset the connection.
            let mut request = [0; 18];
            socket.read_exact(&mut request).await.unwrap();
            for part in response.chunks(piece) {
                socket.write_all(part).await.unwrap();
                socket.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let io = TcpStream::connect(addr).await?;
        let mut lines = Lines::open(io, b"GET / HTTP/1.1\r\n\r\n", framing).await?;
        let mut out = Vec::new();
        while let Some(line) = lines.next().await? {
            out.push(line.to_owned());
        }
        Ok(out)
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        7\r\n{\"a\":1}\r\n\
        10\r\n\n{\"b\":2}\n{\"c\":3}\r\n\
        1;ext=1\r\n\n\r\n\
        0\r\n\r\n";

    #[tokio::test]
    async fn chunked_lines_whatever_the_reads() {
        for piece in [1, 2, 3, 7, 1000] {
            let lines = read_all(CHUNKED, piece, Framing::Lines).await.unwrap();
            assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"], "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn events_give_their_data_lines() {
        const SSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n\
            : a comment\ndata: {}\n\ndata: {\"a\":1}\ndata:{\"b\":2}\n\n";
        for piece in [1, 5, 1000] {
            let lines = read_all(SSE, piece, Framing::Events).await.unwrap();
            assert_eq!(lines, ["{}", "{\"a\":1}", "{\"b\":2}"], "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn a_refusal_is_an_error() {
        let err = read_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n", 100, Framing::Lines)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("403"), "{err:#}");
    }
}
