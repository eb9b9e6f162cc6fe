//! What an idle socket costs the server, in the parts the compiler decides: the future of its
//! task, which lives as long as the socket. Its size is that of the largest state the loop can
//! be in, so a rarely taken path that awaits something big (authenticating, a store call) makes
//! every socket pay for it unless boxed. Sizes are those of the test build. Centrifugo's
//! connections are checked beside their task (`centrifugo::client::connect`).

use crate::app::AppState;
use crate::session::socket::Session;
use crate::ws::admission::Admission;
use crate::ws::echo::{self, Echo};
use crate::ws::socket::Socket;
use axum::extract::ws::WebSocket;
use std::mem::size_of;

/// The size of what `f` returns (a future, never run).
pub(crate) fn output_size<A, R>(_: &impl Fn(A) -> R) -> usize {
    size_of::<R>()
}

/// Most bytes a socket's task may take: a little over its loop's future, which is what it is
/// once admitted (the upgrade and the loop are two futures chained, `admission::admitted`).
pub(crate) const MAX_SOCKET_TASK: usize = 2920;

#[test]
fn an_idle_sockets_task_stays_small() {
    let secured = output_size(&|(a, s, w): (Admission, AppState, WebSocket)| echo::secured_task(a, s, w));
    let query = output_size(&|(a, s, w): (Admission, AppState, WebSocket)| {
        echo::query_task(a, s, crate::auth::Mode::Required, w)
    });
    let chat = output_size(&|(a, s, w): (Admission, AppState, WebSocket)| {
        crate::session::route::socket_task(a, s, w)
    });
    assert!(
        secured.max(query).max(chat) <= MAX_SOCKET_TASK,
        "the socket tasks are {secured} bytes (/secured-ws), {query} (/ws) and {chat} (chat)"
    );
    // The loop is all there is to a socket's task once admitted.
    let echo_loop = output_size(&|socket: Socket<Echo>| socket.run(Vec::new()));
    let chat_loop = output_size(&|socket: Socket<Session>| socket.run(Vec::new()));
    assert!(
        secured <= echo_loop + 16 && chat <= chat_loop + 16,
        "{secured} over {echo_loop}, {chat} over {chat_loop}"
    );
}

#[test]
fn admission_is_not_carried_by_the_socket() {
    // Awaited before the loop in the same task: unboxed, its state would size the whole task.
    let settle = output_size(&|(admission, socket): (Admission, WebSocket)| admission.settle(socket));
    assert!(settle <= size_of::<Admission>() + size_of::<WebSocket>() + 64, "settle is {settle} bytes");
}
