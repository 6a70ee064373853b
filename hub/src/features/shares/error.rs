//! What can go wrong with a share, in the feature's own words. The wire code and the sentence the
//! user reads are chosen at the edge (`conn/wire_errors.rs`).

use crate::store::StoreError;

/// A share call that did not go through.
#[derive(Debug)]
pub(crate) enum ShareError {
    /// The requested lifetime is zero or longer than a share may last.
    BadLifetime,
    /// The name is too long or holds control characters.
    BadName,
    /// The project tag is not one the hub accepts.
    BadProject(String),
    /// Not in the share-code format.
    BadCode(String),
    /// None of the caller's services is online: nothing to share.
    NothingOnline,
    /// No share with this code in the caller's workspace (another workspace's code reads the same).
    UnknownCode(String),
    /// No share with this id that the caller created.
    NotYours(i64),
    /// Only the creator (or a workspace admin) may revoke it.
    NotCreator {
        code: String,
        creator: String,
    },
    /// Revoked by its creator (`code` when the caller named it).
    Revoked {
        code: Option<String>,
    },
    /// Past its expiry.
    Expired {
        code: Option<String>,
    },
    /// A tunnel through the share asked for a service it does not hold.
    NotInShare(String),
    /// The join token is not the caller's, or not known.
    UnknownJoin,
    /// Too many wrong codes lately.
    RateLimited {
        wait_secs: u64,
    },
    /// Every code drawn was taken.
    NoFreeCode,
    Store(StoreError),
}

impl From<StoreError> for ShareError {
    fn from(e: StoreError) -> Self {
        ShareError::Store(e)
    }
}

impl ShareError {
    /// For a failed join: what the audit log says (never the code tried: it may be another
    /// workspace's live code), or `None` when the failure is the hub's and must not count
    /// against the member's join budget.
    pub(crate) fn failed_join(&self) -> Option<&'static str> {
        match self {
            ShareError::UnknownCode(_) => Some("no share with that code in this workspace"),
            ShareError::Revoked { .. } | ShareError::Expired { .. } => Some("the share was revoked or has expired"),
            ShareError::BadCode(_) => Some("not a share code"),
            ShareError::Store(_) | ShareError::NoFreeCode | ShareError::RateLimited { .. } => None,
            _ => Some("refused"),
        }
    }
}
