//! What a socket's loop reads frames from and writes them to: a WebSocket, or an HTTP stream whose
//! client sends its frames by separate requests (`emulation`). The loop and every rule it keeps
//! (limits, expiry, revocation, refresh) are the same on both.

use crate::proxy::Via;
use crate::ws::close::{self, Close};
use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use std::future::Future;

pub(crate) trait Wire: Send {
    /// The client's next frame; `None` once it is gone.
    fn recv(&mut self) -> impl Future<Output = Option<Result<Message, axum::Error>>> + Send;

    /// Queues a frame, written out by [`Self::flush`] (or earlier, when the queue is full).
    fn feed(&mut self, message: Message) -> impl Future<Output = Result<(), axum::Error>> + Send;

    /// Writes out what was fed.
    fn flush(&mut self) -> impl Future<Output = Result<(), axum::Error>> + Send;

    /// Writes one frame at once.
    fn send(&mut self, message: Message) -> impl Future<Output = Result<(), axum::Error>> + Send;

    /// Says why the server ends the connection, and ends it.
    fn close(self, close: Close) -> impl Future<Output = ()> + Send;

    /// What the connection runs on, for the application's calls.
    fn via(&self) -> Via;
}

impl Wire for WebSocket {
    fn recv(&mut self) -> impl Future<Output = Option<Result<Message, axum::Error>>> + Send {
        WebSocket::recv(self)
    }

    fn feed(&mut self, message: Message) -> impl Future<Output = Result<(), axum::Error>> + Send {
        SinkExt::feed(self, message)
    }

    fn flush(&mut self) -> impl Future<Output = Result<(), axum::Error>> + Send {
        SinkExt::flush(self)
    }

    fn send(&mut self, message: Message) -> impl Future<Output = Result<(), axum::Error>> + Send {
        WebSocket::send(self, message)
    }

    fn close(self, close: Close) -> impl Future<Output = ()> + Send {
        close::close(self, close)
    }

    fn via(&self) -> Via {
        Via::WebSocket
    }
}
