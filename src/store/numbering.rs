//! Numbering a batch of publications written in one transaction (see `group_commit`): what each
//! backend's three statements need, worked out once for both.
//!
//! A batch bumps each channel's row once, by the number of its publications in the batch; the
//! channel's publications then take the offsets below the new top, in queue order. What the
//! channel's retention would trim at once is not inserted, and older rows are deleted up to the
//! highest offset any publication of the batch trims below, as one publication after another would.

use super::{NewPublication, Position, Publication, Retention};
use std::collections::{BTreeMap, HashMap};

/// One publication waiting to be stored.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub channel: String,
    pub sender: Option<String>,
    pub data: String,
    pub created_ms: i64,
    pub retention: Retention,
}

impl Request {
    /// The publication, copied to wait in the writer's queue.
    pub(super) fn new(publication: NewPublication<'_>) -> Self {
        let NewPublication { channel, sender, data, created_ms, retention } = publication;
        Request {
            channel: channel.to_owned(),
            sender: sender.map(str::to_owned),
            data: data.to_owned(),
            created_ms,
            retention,
        }
    }

    pub(super) fn expires_ms(&self) -> i64 {
        self.retention.expires_ms(self.created_ms)
    }

    /// Roughly what the request weighs in a batch's statements.
    pub(super) fn bytes(&self) -> usize {
        self.channel.len() + self.sender.as_ref().map_or(0, String::len) + self.data.len() + 64
    }

    /// The stored publication, once numbered.
    pub(super) fn into_publication(self, offset: i64) -> Publication {
        Publication {
            channel: self.channel,
            offset,
            sender: self.sender,
            data: self.data,
            created_ms: self.created_ms,
        }
    }
}

/// How one channel's row changes: its counter goes up by `count`; a channel made by this batch
/// starts with `epoch`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Bump<'a> {
    pub channel: &'a str,
    pub count: i64,
    pub expires_ms: i64,
    pub epoch: String,
}

/// The channels of a batch, sorted by name: every writer (one per node) locks channel rows in this
/// order, so two batches never wait on each other in a cycle.
pub(super) fn bumps(requests: &[Request]) -> Vec<Bump<'_>> {
    let mut channels: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for request in requests {
        let (count, expires_ms) = channels.entry(&request.channel).or_insert((0, i64::MIN));
        *count += 1;
        *expires_ms = (*expires_ms).max(request.expires_ms());
    }
    channels
        .into_iter()
        .map(|(channel, (count, expires_ms))| Bump { channel, count, expires_ms, epoch: new_epoch() })
        .collect()
}

/// A new channel epoch: random, so that a channel made again never repeats an old one.
fn new_epoch() -> String {
    let bytes: [u8; 8] = rand::random();
    hex::encode(bytes)
}

/// A batch numbered from its channels' rows after the bump.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Numbered<'a> {
    /// Each request's place, in queue order.
    pub positions: Vec<Position>,
    /// The requests to insert (by index): those the batch itself does not trim at once.
    pub kept: Vec<usize>,
    /// Per channel, the offset at or below which its publications go.
    pub trims: Vec<(&'a str, i64)>,
}

/// Numbers `requests` given each channel's `(top_offset, epoch)` after the bump. Fails if a
/// channel's row was not returned, which a correct bump never does.
pub(super) fn number<'a>(
    requests: &'a [Request],
    tops: &HashMap<String, (i64, String)>,
) -> sqlx::Result<Numbered<'a>> {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for request in requests {
        *counts.entry(&request.channel).or_default() += 1;
    }
    // Per channel: the next offset to give and the highest trim so far.
    let mut next: HashMap<&str, (i64, Option<i64>)> = HashMap::new();
    let mut positions = Vec::with_capacity(requests.len());
    for request in requests {
        let (top, epoch) = tops
            .get(&request.channel)
            .ok_or_else(|| sqlx::Error::Protocol("a channel's row was not returned".into()))?;
        let (offset, trim) =
            next.entry(&request.channel).or_insert((top - counts[&*request.channel] + 1, None));
        if let Some(below) = request.retention.trim_below(*offset) {
            *trim = Some(trim.map_or(below, |t: i64| t.max(below)));
        }
        positions.push(Position { offset: *offset, epoch: epoch.clone() });
        *offset += 1;
    }
    let kept = (0..requests.len())
        .filter(|&i| next[&*requests[i].channel].1.is_none_or(|below| positions[i].offset > below))
        .collect();
    let mut trims: Vec<(&str, i64)> = next
        .into_iter()
        .filter_map(|(channel, (_, trim))| trim.filter(|&b| b >= 1).map(|b| (channel, b)))
        .collect();
    trims.sort_unstable();
    Ok(Numbered { positions, kept, trims })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(channel: &str, size: Option<u32>) -> Request {
        Request {
            channel: channel.to_owned(),
            sender: None,
            data: "{}".to_owned(),
            created_ms: 1_000,
            retention: Retention { size, ttl_ms: None },
        }
    }

    fn tops(rows: &[(&str, i64)]) -> HashMap<String, (i64, String)> {
        rows.iter().map(|(c, top)| (c.to_string(), (*top, format!("e-{c}")))).collect()
    }

    #[test]
    fn bumps_count_each_channel_once_sorted() {
        let requests = [request("b", None), request("a", None), request("b", None)];
        let bumps = bumps(&requests);
        let got: Vec<_> = bumps.iter().map(|b| (b.channel, b.count)).collect();
        assert_eq!(got, [("a", 1), ("b", 2)]);
        assert_eq!(bumps[0].expires_ms, i64::MAX, "kept forever");
    }

    #[test]
    fn offsets_follow_queue_order_below_the_new_top() {
        let requests = [request("b", None), request("a", None), request("b", None), request("b", None)];
        let numbered = number(&requests, &tops(&[("a", 1), ("b", 10)])).unwrap();
        let offsets: Vec<_> = numbered.positions.iter().map(|p| p.offset).collect();
        assert_eq!(offsets, [8, 1, 9, 10]);
        assert_eq!(numbered.positions[1].epoch, "e-a");
        assert_eq!(numbered.kept, [0, 1, 2, 3]);
        assert!(numbered.trims.is_empty());
    }

    #[test]
    fn retention_trims_within_the_batch_and_before_it() {
        // Three kept: of a batch of four after offset 6, 7..10, only 8..10 stay, and 7 and
        // everything before it go.
        let requests: Vec<_> = (0..4).map(|_| request("c", Some(3))).collect();
        let numbered = number(&requests, &tops(&[("c", 10)])).unwrap();
        assert_eq!(numbered.kept, [1, 2, 3]);
        assert_eq!(numbered.trims, [("c", 7)]);
        // A young channel trims nothing.
        let numbered = number(&requests[..2], &tops(&[("c", 2)])).unwrap();
        assert_eq!((numbered.kept.len(), numbered.trims.len()), (2, 0));
    }

    #[test]
    fn a_missing_row_fails_the_batch() {
        let requests = [request("a", None)];
        assert!(number(&requests, &tops(&[("b", 1)])).is_err());
    }
}
