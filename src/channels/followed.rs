//! A subscriber's channels: how it follows each (its view, whether the namespace tracks presence)
//! and how far it has delivered each numbered one (its cursor), kept in name order.

use crate::broker::View;
use crate::store::Position;

/// How far a subscriber has delivered a numbered channel: the last offset, in which epoch (`""`:
/// none yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) offset: i64,
    pub(crate) epoch: String,
}

impl From<Option<Position>> for Cursor {
    fn from(position: Option<Position>) -> Cursor {
        position.map_or_else(Cursor::default, |p| Cursor { offset: p.offset, epoch: p.epoch })
    }
}

impl Cursor {
    /// Where nothing is delivered yet: nothing is numbered beyond `i64::MAX`, so every
    /// publication is held back until the subscriber says where to start.
    pub(super) fn held_back() -> Cursor {
        Cursor { offset: i64::MAX, epoch: String::new() }
    }
}

/// How a subscriber follows a channel, whether the channel's namespace tracks presence, and how
/// far it has delivered the channel's numbered publications (`None`: a namespace without
/// history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Following {
    pub(super) view: View,
    pub(super) presence: bool,
    pub(super) cursor: Option<Cursor>,
    /// When the application's consent runs out (Unix seconds): a subscription token's `exp`, a
    /// subscribe proxy's `expire_at`. `None`: it lasts as long as the connection.
    pub(super) expires_at: Option<i64>,
}

/// A subscriber's channels by name, in name order. A sorted Vec, not a BTreeMap: a socket follows
/// a few channels (at most 32), and a BTreeMap's first node takes 720 bytes however few it holds,
/// which every idle subscribed socket paid.
#[derive(Debug, Default)]
pub(super) struct Followed(Vec<(String, Following)>);

impl Followed {
    pub(super) fn new() -> Followed {
        Followed(Vec::new())
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(followed, _)| followed.as_str().cmp(name))
    }

    pub(super) fn get(&self, name: &str) -> Option<&Following> {
        self.find(name).ok().map(|i| &self.0[i].1)
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut Following> {
        self.find(name).ok().map(|i| &mut self.0[i].1)
    }

    /// Follows `name`, or replaces how it was followed.
    pub(super) fn insert(&mut self, name: String, following: Following) {
        match self.find(&name) {
            Ok(i) => self.0[i].1 = following,
            Err(i) => {
                // Room for this one only: most sockets follow one or two channels.
                self.0.reserve_exact(1);
                self.0.insert(i, (name, following));
            }
        }
    }

    pub(super) fn remove(&mut self, name: &str) -> Option<Following> {
        let i = self.find(name).ok()?;
        Some(self.0.remove(i).1)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(name, _)| name)
    }

    /// The first time a channel's consent runs out, if any does.
    pub(super) fn earliest_expiry(&self) -> Option<i64> {
        self.0.iter().filter_map(|(_, following)| following.expires_at).min()
    }

    /// The channels whose consent has run out by `now`.
    pub(super) fn expired(&self, now: i64) -> Vec<String> {
        let ended = self.0.iter().filter(|(_, f)| f.expires_at.is_some_and(|at| at <= now));
        ended.map(|(name, _)| name.clone()).collect()
    }
}

impl IntoIterator for Followed {
    type Item = (String, Following);
    type IntoIter = std::vec::IntoIter<(String, Following)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_starts_where_the_channel_stands() {
        assert_eq!(Cursor::from(None), Cursor { offset: 0, epoch: String::new() });
        let position = Position { offset: 7, epoch: "e1".into() };
        assert_eq!(Cursor::from(Some(position)), Cursor { offset: 7, epoch: "e1".into() });
    }

    #[test]
    fn followed_channels_stay_in_name_order_and_take_room_for_what_they_hold() {
        let how = |view| Following { view, presence: false, cursor: None, expires_at: None };
        let mut followed = Followed::new();
        followed.insert("b".to_owned(), how(View::Channel));
        assert_eq!(followed.0.capacity(), 1, "one channel, one place");
        followed.insert("c".to_owned(), how(View::Channel));
        followed.insert("a".to_owned(), how(View::Channel));
        followed.insert("b".to_owned(), how(View::Room));
        assert_eq!(followed.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(followed.get("b").map(|f| f.view), Some(View::Room));
        assert_eq!(followed.remove("a").map(|f| f.view), Some(View::Channel));
        assert!(followed.remove("a").is_none() && followed.get("a").is_none());
        assert_eq!(followed.into_iter().map(|(name, _)| name).collect::<Vec<_>>(), ["b", "c"]);
    }
}
