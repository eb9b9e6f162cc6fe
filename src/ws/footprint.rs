//! What an idle socket costs the server, in the parts the compiler decides: the future of its
//! task, which lives as long as the socket. Its size is that of the largest state the loop can
//! be in, so a rarely taken path that awaits something big (authenticating, a store call) makes
//! every socket pay for it unless boxed. Sizes are those of the test build.

use super::admission::Admission;
use super::echo::Echo;
use super::socket::Socket;
use crate::chat::endpoint::ChannelSocket;
use axum::extract::ws::WebSocket;
use std::mem::size_of;

/// The size of what `f` returns (a future, never run).
fn output_size<A, R>(_: &impl Fn(A) -> R) -> usize {
    size_of::<R>()
}

/// Most bytes a socket's future may take: 2,528 (echo) and 2,832 (chat) now; 3,840 and 4,160
/// before the rarely taken paths were boxed, 2,584 and 2,952 before one timer took the place of
/// three.
const MAX_SOCKET_FUTURE: usize = 2900;

#[test]
fn an_idle_sockets_future_stays_small() {
    let echo = output_size(&|socket: Socket<Echo>| socket.run(Vec::new()));
    let chat = output_size(&|socket: Socket<ChannelSocket>| socket.run(Vec::new()));
    assert!(
        echo.max(chat) <= MAX_SOCKET_FUTURE,
        "the socket futures are {echo} bytes (echo) and {chat} bytes (chat)"
    );
}

#[test]
fn admission_is_not_carried_by_the_socket() {
    // Awaited before the loop in the same task: unboxed, its state would size the whole task.
    let settle = output_size(&|(admission, socket): (Admission, WebSocket)| admission.settle(socket));
    assert!(settle <= size_of::<Admission>() + size_of::<WebSocket>() + 64, "settle is {settle} bytes");
}
