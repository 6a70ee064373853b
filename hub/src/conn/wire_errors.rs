//! The edge between features and the wire: each feature error becomes the code an agent acts on
//! and the sentence (with the next step) its user reads. Store failures are logged here and never
//! described over the wire.

use pconnect_proto::control::{ErrorBody, ErrorCode};

use crate::features::links::LinkError;
use crate::features::shares::ShareError;
use crate::rpc::store_error;

impl From<ShareError> for ErrorBody {
    fn from(error: ShareError) -> Self {
        let label = |code: Option<String>| code.map_or_else(|| "this share".to_string(), |c| format!("share {c}"));
        match error {
            ShareError::BadLifetime => ErrorBody::new(ErrorCode::BadRequest, "a share lasts at most 7 days"),
            ShareError::BadName => ErrorBody::new(
                ErrorCode::BadRequest,
                "a share name is at most 100 characters, without control characters",
            ),
            ShareError::BadProject(why) | ShareError::BadCode(why) => ErrorBody::new(ErrorCode::BadRequest, why),
            ShareError::NothingOnline => {
                ErrorBody::new(ErrorCode::BadRequest, "none of your services is online, so there is nothing to share")
                    .with_hint("expose one first (connect expose <port>), then run connect share again")
            }
            ShareError::UnknownCode(code) => {
                ErrorBody::new(ErrorCode::NotFound, format!("no share with code {code} in this workspace"))
                    .with_hint("check the code with the person who shared it")
            }
            ShareError::NotYours(id) => ErrorBody::new(ErrorCode::NotFound, format!("you have no active share #{id}"))
                .with_hint("connect share --list shows yours"),
            ShareError::NotCreator { code, creator } => ErrorBody::new(
                ErrorCode::Forbidden,
                format!("only {creator} (who created share {code}) or a workspace admin can revoke it"),
            ),
            ShareError::Revoked { code } => {
                ErrorBody::new(ErrorCode::Gone, format!("{} was revoked by its creator", label(code)))
                    .with_hint("ask for a new share code")
            }
            ShareError::Expired { code } => ErrorBody::new(ErrorCode::Gone, format!("{} has expired", label(code)))
                .with_hint("ask for a new share code"),
            ShareError::NotInShare(service) => {
                ErrorBody::new(ErrorCode::NotFound, format!("'{service}' is not part of this share"))
            }
            ShareError::UnknownJoin => {
                ErrorBody::new(ErrorCode::NotFound, "this join is not known to the hub; run connect join again")
            }
            ShareError::RateLimited { wait_secs } => {
                let minutes = wait_secs / 60;
                let when =
                    if minutes > 0 { format!("{minutes}m {}s", wait_secs % 60) } else { format!("{wait_secs}s") };
                let mut body =
                    ErrorBody::new(ErrorCode::RateLimited, format!("too many wrong share codes: try again in {when}"));
                body.retry_after_secs = Some(wait_secs);
                body
            }
            ShareError::NoFreeCode => {
                ErrorBody::new(ErrorCode::Internal, "could not draw a free share code; try again")
            }
            ShareError::Store(e) => store_error(e),
        }
    }
}

impl From<LinkError> for ErrorBody {
    fn from(error: LinkError) -> Self {
        match error {
            LinkError::NoSuchService(service) => {
                ErrorBody::new(ErrorCode::NotFound, format!("you do not expose a service named '{service}'"))
            }
            LinkError::BadPolicy(why) | LinkError::BadProject(why) => ErrorBody::new(ErrorCode::BadRequest, why),
            LinkError::BadLifetime => ErrorBody::new(ErrorCode::BadRequest, "a temporary link lasts at most 30 days"),
            LinkError::NotYours(subdomain) => {
                ErrorBody::new(ErrorCode::NotFound, format!("you have no active link '{subdomain}'"))
                    .with_hint("connect links lists them")
            }
            LinkError::NoFreeSubdomain => {
                ErrorBody::new(ErrorCode::Internal, "could not draw a free subdomain; try again")
            }
            LinkError::Store(e) => store_error(e),
        }
    }
}
