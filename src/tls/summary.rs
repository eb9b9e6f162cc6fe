//! What the log says of a certificate, read from its DER: no parser dependency for three fields.

/// What the log says of a certificate: its subject's common attributes, serial number and the end
/// of its validity (`YYYY-MM-DDTHH:MM:SSZ`), read from its DER by [`Der`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Summary {
    pub(super) subject: String,
    pub(super) serial: String,
    pub(super) not_after: String,
}

impl Summary {
    /// `None` for DER this small reader does not follow (the certificate still works: rustls and
    /// the client judge it, this is only for the log).
    pub(super) fn of(cert: &[u8]) -> Option<Summary> {
        let (_, certificate, _) = Der::next(cert, 0x30)?;
        let (_, tbs, _) = Der::next(certificate, 0x30)?;
        let mut fields = Der(tbs);
        let mut item = fields.take()?;
        if item.0 == 0xa0 {
            item = fields.take()?; // [0] version
        }
        let serial = (item.0 == 0x02).then(|| hex::encode(item.1))?;
        let _signature = fields.take()?;
        let _issuer = fields.take()?;
        let (_, validity, _) = Der::next(fields.take_raw()?, 0x30)?;
        let mut times = Der(validity);
        let _not_before = times.take()?;
        let not_after = time_of(times.take()?)?;
        let (_, subject, _) = Der::next(fields.take_raw()?, 0x30)?;
        Some(Summary { subject: subject_of(subject), serial, not_after })
    }
}

/// A DER reader: tag, contents, one element after another. Definite lengths up to 4 bytes, low tag
/// numbers: what certificates use.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The element at the start of `input`, which must have tag `tag`, and what follows it.
    fn next(input: &'a [u8], tag: u8) -> Option<(u8, &'a [u8], &'a [u8])> {
        let element = Der::split(input)?;
        (element.0 == tag).then_some(element)
    }

    fn split(input: &'a [u8]) -> Option<(u8, &'a [u8], &'a [u8])> {
        let (&tag, rest) = input.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            0x81..=0x84 => {
                let n = usize::from(first & 0x7f);
                let bytes = rest.get(..n)?;
                (bytes.iter().fold(0usize, |len, &b| len << 8 | usize::from(b)), &rest[n..])
            }
            _ => return None,
        };
        Some((tag, rest.get(..len)?, rest.get(len..)?))
    }

    /// The next element's tag and contents.
    fn take(&mut self) -> Option<(u8, &'a [u8])> {
        let (tag, contents, rest) = Der::split(self.0)?;
        self.0 = rest;
        Some((tag, contents))
    }

    /// The next element whole (tag and length included).
    fn take_raw(&mut self) -> Option<&'a [u8]> {
        let start = self.0;
        let (_, _, rest) = Der::split(start)?;
        self.0 = rest;
        Some(&start[..start.len() - rest.len()])
    }
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as `YYYY-MM-DDTHH:MM:SSZ`.
fn time_of((tag, contents): (u8, &[u8])) -> Option<String> {
    let text = std::str::from_utf8(contents).ok()?;
    let digits = text.strip_suffix('Z').filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?;
    let full = match (tag, digits.len()) {
        (0x17, 12) => format!("{}{digits}", if &digits[..2] >= "50" { "19" } else { "20" }),
        (0x18, 14) => digits.to_owned(),
        _ => return None,
    };
    let d = |range: std::ops::Range<usize>| &full[range];
    Some(format!("{}-{}-{}T{}:{}:{}Z", d(0..4), d(4..6), d(6..8), d(8..10), d(10..12), d(12..14)))
}

/// `CN=…, O=…` from a Name's common attributes (others are left out), without control characters,
/// commas in values escaped (`\,`).
fn subject_of(name: &[u8]) -> String {
    const ATTRIBUTES: [(&[u8], &str); 6] = [
        (&[0x55, 0x04, 0x03], "CN"),
        (&[0x55, 0x04, 0x0b], "OU"),
        (&[0x55, 0x04, 0x0a], "O"),
        (&[0x55, 0x04, 0x07], "L"),
        (&[0x55, 0x04, 0x08], "ST"),
        (&[0x55, 0x04, 0x06], "C"),
    ];
    let mut parts = Vec::new();
    let mut rdns = Der(name);
    while let Some((0x31, set)) = rdns.take() {
        let mut attributes = Der(set);
        while let Some((0x30, attribute)) = attributes.take() {
            let mut pair = Der(attribute);
            let (Some((0x06, oid)), Some((0x0c | 0x13 | 0x16, value))) = (pair.take(), pair.take()) else {
                continue;
            };
            let Some((_, short)) = ATTRIBUTES.iter().find(|(known, _)| *known == oid) else { continue };
            let value =
                String::from_utf8_lossy(value).chars().filter(|c| !c.is_control()).collect::<String>();
            parts.push(format!("{short}={}", value.replace(',', "\\,")));
        }
    }
    parts.join(", ")
}
