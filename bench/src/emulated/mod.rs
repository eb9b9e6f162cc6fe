//! Centrifugo's client protocol on wsguard's emulated connections, as centrifuge-js speaks it
//! when WebSockets are refused: the server's half is one long HTTP response (`POST
//! /connection/http_stream` with the `connect` command as the body, one reply a line; or `GET
//! /connection/sse?cf_connect=…`, one reply a `data:` line), whose `connect` reply names the
//! session and its node; every further command is a `POST /emulation` to any node, answered 204,
//! its reply coming down the stream. The server's pings (`{}` lines) are answered the same way.

pub mod commands;
mod lines;

use crate::centrifugo::{self, Awaited};
use crate::common::{tcp_connect, Target};
use crate::http::HttpConn;
use anyhow::{bail, Context};
use clap::ValueEnum;
use lines::{Framing, Lines};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How a Centrifugo connection reaches wsguard.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `/connection/websocket`
    #[value(name = "websocket")]
    WebSocket,
    /// `POST /connection/http_stream`, commands by `POST /emulation`
    #[value(name = "http_stream")]
    HttpStream,
    /// `GET /connection/sse`, commands by `POST /emulation`
    #[value(name = "sse")]
    Sse,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::HttpStream => "http_stream",
            Transport::Sse => "sse",
        }
    }

    /// Where a connection opens.
    pub fn path(self) -> &'static str {
        match self {
            Transport::WebSocket => centrifugo::PATH,
            Transport::HttpStream => "/connection/http_stream",
            Transport::Sse => "/connection/sse",
        }
    }

    pub fn is_stream(self) -> bool {
        self != Transport::WebSocket
    }
}

/// An open emulated connection: where its commands go, and what comes down it.
pub struct Stream {
    pub id: SessionId,
    pub lines: Lines,
}

/// What `POST /emulation` names: the session, and the node holding it.
#[derive(serde::Deserialize)]
pub struct SessionId {
    session: String,
    node: String,
}

/// The `connect` reply, as far as the stream needs it.
#[derive(serde::Deserialize)]
struct Connected {
    connect: Option<SessionId>,
}

/// Opens a stream on `target` over `transport`, connecting with `token`; returns once the
/// `connect` reply came (an error reply, or none before `deadline`, is an error).
pub async fn open(
    target: &Target,
    transport: Transport,
    token: &str,
    deadline: Instant,
) -> anyhow::Result<Stream> {
    let connect = centrifugo::connect_frame(token, None);
    let (host, path) = (target.addr, transport.path());
    let (request, framing) = match transport {
        Transport::HttpStream => (
            format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{connect}",
                connect.len()
            ),
            Framing::Lines,
        ),
        Transport::Sse => {
            let query = serde_urlencoded::to_string([("cf_connect", &connect)])?;
            let request =
                format!("GET {path}?{query} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
            (request, Framing::Events)
        }
        Transport::WebSocket => bail!("a WebSocket is not a stream"),
    };
    let opened = async {
        let io = tcp_connect(target.addr, target.source).await?;
        let mut lines = Lines::open(io, request.as_bytes(), framing).await?;
        let reply = lines.next().await?.context("the stream ended before the connect reply")?;
        let connected: Connected =
            serde_json::from_str(reply).with_context(|| format!("connect reply not JSON: {reply}"))?;
        let Some(id) = connected.connect else {
            bail!("refused: {reply}");
        };
        anyhow::Ok(Stream { id, lines })
    };
    tokio::time::timeout_at(deadline, opened).await.context("connect not answered")?
}

/// [`open`], then `subscribe` to `channel` through `posts`: returns once the subscribe reply came
/// down the stream.
pub async fn join(
    target: &Target,
    transport: Transport,
    token: &str,
    channel: &str,
    posts: &Posts,
    timeout: Duration,
) -> anyhow::Result<Stream> {
    let deadline = Instant::now() + timeout;
    let mut stream = open(target, transport, token, deadline).await?;
    posts.send(&stream.id, &centrifugo::subscribe_command(channel)).await?;
    let mut awaited = Awaited::new(false, true);
    while !awaited.done() {
        let line = tokio::time::timeout_at(deadline, stream.lines.next())
            .await
            .context("subscribe not answered")??
            .context("the stream ended before the subscribe reply")?;
        awaited.see(line)?;
    }
    Ok(stream)
}

/// The body of `POST /emulation`.
#[derive(Serialize)]
struct Emulation<'a> {
    session: &'a str,
    node: &'a str,
    data: &'a str,
}

/// Posts `data` (commands, one a line) for session `id` on `conn`: done once answered 204.
pub async fn post(conn: &mut HttpConn, id: &SessionId, data: &str) -> anyhow::Result<()> {
    let body = serde_json::to_string(&Emulation { session: &id.session, node: &id.node, data })?;
    let (status, _, answer) = conn.post_json("/emulation", None, body).await?;
    if status != 204 {
        bail!("POST /emulation answered {status}: {:.200}", String::from_utf8_lossy(&answer));
    }
    Ok(())
}

/// Keep-alive connections to one node for `POST /emulation`, shared by many streams: each post
/// takes an idle one (or opens one) and gives it back.
pub struct Posts {
    addr: SocketAddr,
    source: Option<IpAddr>,
    idle: Mutex<Vec<HttpConn>>,
}

impl Posts {
    pub fn new(addr: SocketAddr, source: Option<IpAddr>) -> Posts {
        Posts { addr, source, idle: Mutex::new(Vec::new()) }
    }

    pub async fn send(&self, id: &SessionId, data: &str) -> anyhow::Result<()> {
        let idle = self.idle.lock().expect("posts lock").pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => HttpConn::connect_from(self.addr, self.source).await?,
        };
        post(&mut conn, id, data).await?;
        self.idle.lock().expect("posts lock").push(conn);
        Ok(())
    }

    /// Answers the server's ping to session `id`.
    pub async fn pong(&self, id: &SessionId) {
        // A lost pong shows later as the server closing the stream, which the caller counts.
        let _ = self.send(id, centrifugo::PING).await;
    }
}
