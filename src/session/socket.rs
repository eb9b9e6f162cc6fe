//! One JSON socket's session: its subscriber (what it follows, what reaches it), its commands
//! answered (`commands`), and what the socket layer asks of it.

use super::commands;
use crate::auth::Identity;
use crate::broker::Utf8Bytes;
use crate::channels::protocol::{self, ErrorCode, Refusal};
use crate::channels::{Ended, Subscriber};
use crate::ws::close::{self, Close};
use crate::ws::socket::{Endpoint, Outgoing};

pub(crate) struct Session {
    subscriber: Subscriber,
}

impl Session {
    pub(super) fn new(subscriber: Subscriber) -> Session {
        Session { subscriber }
    }
}

impl Endpoint for Session {
    const TAKES_BATCHES: bool = true;

    async fn on_texts(
        &mut self,
        texts: Vec<Utf8Bytes>,
        identity: Option<&Identity>,
    ) -> (Vec<String>, Option<Close>) {
        commands::answer_all(&mut self.subscriber, texts, identity).await
    }

    async fn on_text(&mut self, text: &str, identity: Option<&Identity>) -> Result<Vec<String>, Close> {
        // Boxed: a command's future (store calls) would otherwise enlarge every socket's task.
        let subscriber = &mut self.subscriber;
        let (result, about) = Box::pin(async move {
            match protocol::parse(text) {
                Ok(command) => {
                    let about = command.about().map(|(key, name)| (key, name.to_owned()));
                    (commands::apply(subscriber, command, identity).await, about)
                }
                Err(refusal) => (Err(refusal), None),
            }
        })
        .await;
        match result {
            Ok(frames) => Ok(frames),
            Err(refusal) => match refusal.close() {
                Some(close) => Err(close),
                None => Ok(vec![refusal.frame_about(about.as_ref().map(|(k, n)| (*k, n.as_str())))]),
            },
        }
    }

    /// Ends each channel and room the new identity may no longer subscribe to (a trusted
    /// issuer's token whose `channels` claim dropped one, say), saying so with `unsubscribed`.
    async fn rebound(&mut self, identity: &Identity) -> Vec<String> {
        let ended = self.subscriber.recheck(identity).await;
        ended.iter().map(|(name, view, refusal)| protocol::unsubscribed(name, *view, refusal)).collect()
    }

    fn on_binary(&mut self) -> Result<Vec<String>, Close> {
        Ok(vec![Refusal::new(ErrorCode::BadRequest, "binary frames are not accepted").frame()])
    }

    async fn outgoing(&mut self) -> Outgoing {
        match self.subscriber.next().await {
            Ok(frame) => Outgoing::Frame(frame),
            Err(ended) => Outgoing::Close(closed(ended)),
        }
    }

    fn ready(&mut self) -> Option<Outgoing> {
        self.subscriber.ready().map(Outgoing::Frame)
    }
}

/// Why deliveries ended, as a close: the client reconnects and recovers.
fn closed(ended: Ended) -> Close {
    let reason = match ended {
        Ended::TooSlow => "too slow: reconnect and recover",
        Ended::Missed => "missed publications: reconnect and recover",
        // wsguard's frames end only the channel (`unsubscribed`), never the socket.
        Ended::SubscriptionExpired => "subscription expired: reconnect",
    };
    Close::new(close::TRY_AGAIN_LATER, reason)
}
