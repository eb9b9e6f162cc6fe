//! A minimal HTTP/1.1 client over one keep-alive connection (hyper's connection API): each worker
//! owns its connection, so "50 connections" means exactly 50, with no pool deciding for us.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};

pub struct HttpConn {
    addr: SocketAddr,
    /// The source address connections are made from, when not the system's choice.
    from: Option<IpAddr>,
    sender: SendRequest<Full<Bytes>>,
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<HttpConn> {
        HttpConn::connect_from(addr, None).await
    }

    /// Connects from the source address `from` (another loopback address, say, so that the
    /// server counts its requests apart), or the system's choice with `None`.
    pub async fn connect_from(addr: SocketAddr, from: Option<IpAddr>) -> anyhow::Result<HttpConn> {
        let stream = crate::common::tcp_connect(addr, from).await?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.context("HTTP handshake")?;
        tokio::spawn(connection);
        Ok(HttpConn { addr, from, sender })
    }

    /// Sends one request, reconnecting first if the server closed the previous connection.
    pub async fn send(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        if self.sender.ready().await.is_err() {
            *self = HttpConn::connect_from(self.addr, self.from).await?;
        }
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    /// `GET path` with a bearer token.
    pub async fn get(&mut self, path: &str, token: &str) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))?;
        self.send(request).await
    }

    /// `GET path` without credentials.
    pub async fn get_public(&mut self, path: &str) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .body(Full::new(Bytes::new()))?;
        self.send(request).await
    }

    /// `POST path` with a bearer token and no body (`POST /refresh` with the refresh token).
    pub async fn post_bearer(
        &mut self,
        path: &str,
        token: &str,
    ) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))?;
        self.send(request).await
    }

    /// `POST path` with a JSON body, and a bearer token (an API key) when given.
    pub async fn post_json(
        &mut self,
        path: &str,
        token: Option<&str>,
        body: String,
    ) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        self.send(request.body(Full::new(Bytes::from(body)))?).await
    }

    /// `POST /token` with the OAuth2 password form.
    pub async fn login(
        &mut self,
        username: &str,
        password: &str,
    ) -> anyhow::Result<(StatusCode, HeaderMap, Bytes)> {
        let form = serde_urlencoded::to_string([("username", username), ("password", password)])?;
        let request = Request::builder()
            .method(Method::POST)
            .uri("/token")
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))?;
        self.send(request).await
    }
}
