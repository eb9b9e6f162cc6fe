//! Rows as both backends read them, mapped once into the store's types. The flags are INTEGER 0/1
//! in SQLite and BOOLEAN in PostgreSQL, yet decode alike: sqlx reads an SQLite integer into `bool`
//! as `!= 0`. Columns a row does not name (`users.created_at`, `revocations.created_at`) are not
//! read, so `SELECT *` fits.

use super::{Publication, Retention, Revocation, RevocationKind, UserRecord};

/// A `users` row.
#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    username: String,
    email: Option<String>,
    full_name: Option<String>,
    password_hash: String,
    disabled: bool,
}

impl From<UserRow> for UserRecord {
    fn from(row: UserRow) -> Self {
        UserRecord {
            username: row.username,
            email: row.email,
            full_name: row.full_name,
            password_hash: row.password_hash,
            disabled: row.disabled,
        }
    }
}

/// A `users` row and whether the login family is revoked (or unknown): what `principal` reads.
#[derive(sqlx::FromRow)]
pub(super) struct PrincipalRow {
    #[sqlx(flatten)]
    user: UserRow,
    family_revoked: bool,
}

impl From<PrincipalRow> for (UserRecord, bool) {
    fn from(row: PrincipalRow) -> Self {
        (row.user.into(), row.family_revoked)
    }
}

/// A `revocations` row.
#[derive(sqlx::FromRow)]
pub(super) struct RevocationRow {
    id: i64,
    kind: String,
    subject: String,
    username: String,
    expires_at: i64,
    /// Set for user revocations only.
    issued_before: Option<i64>,
}

impl RevocationRow {
    /// The log id and the revocation; `None` (the entry is skipped) for an unknown kind.
    pub(super) fn into_entry(self) -> Option<(i64, Revocation)> {
        let kind = RevocationKind::parse(&self.kind, self.issued_before)?;
        Some((
            self.id,
            Revocation { kind, subject: self.subject, username: self.username, expires_at: self.expires_at },
        ))
    }
}

/// A `publications` row.
#[derive(sqlx::FromRow)]
pub(super) struct PublicationRow {
    channel: String,
    seq: i64,
    sender: Option<String>,
    data: String,
    created_ms: i64,
}

impl From<PublicationRow> for Publication {
    fn from(row: PublicationRow) -> Self {
        Publication {
            channel: row.channel,
            offset: row.seq,
            sender: row.sender,
            data: row.data,
            created_ms: row.created_ms,
        }
    }
}

/// A new channel epoch: random, so that a channel made again never repeats an old one.
pub(super) fn new_epoch() -> String {
    let bytes: [u8; 8] = rand::random();
    hex::encode(bytes)
}

/// The offset at or below which a channel that just published `top` drops publications.
pub(super) fn trim_below(top: i64, retention: &Retention) -> Option<i64> {
    retention.size.map(|size| top - i64::from(size))
}
