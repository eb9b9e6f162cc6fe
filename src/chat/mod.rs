//! The chat of DESIGN.md: rooms, presence and history over `/chat/ws`. `protocol` is the wire
//! format, `hub` this node's rooms and delivery, `session` one socket's commands.

pub mod hub;
pub mod protocol;
pub mod session;
