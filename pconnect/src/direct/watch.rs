//! Watching the member at the other end of a direct connection (`POST /v1/direct/watch` on a
//! forward link): the hub answers when that member is removed, and the agent then cuts the
//! member's direct tunnels itself, so a removed member's agent need not cooperate. Both sides hold
//! one: a reach agent for the exposing member ([`super::dialer`]), an exposing agent for the
//! teammate it serves ([`super::listener`]). Past the other side's certificate, only a held watch
//! vouches for them: both sides close a connection that has [`outlived`] it.

use std::time::Duration;

use h2::RecvStream;
use pconnect_proto::control::ErrorCode;
use pconnect_proto::direct::MemberGone;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::link::LinkError;
use crate::link::forward::ForwardLink;

/// A watch that ended without an answer (a hub link dropped) is opened again after this.
const REWATCH_AFTER: Duration = Duration::from_secs(1);
/// Longest line a watch may send.
const MAX_LINE: usize = 4096;

/// Holds a watch of `member` through `link` until `ended` (again after a hub link drops): `true`
/// as soon as the hub says the member was removed, `false` once `ended` fires or the hub does not
/// know the call (an older hub: nothing is watched). `heard` says, all along, whether a watch is
/// held: whether the hub could tell this agent now.
pub(crate) async fn until_removed(
    link: &ForwardLink,
    member: i64,
    ended: &CancellationToken,
    heard: &watch::Sender<bool>,
) -> bool {
    loop {
        let opened = tokio::select! {
            _ = ended.cancelled() => return false,
            opened = link.watch_member(member) => opened,
        };
        match opened {
            Ok((_held, events)) => {
                heard.send_replace(true);
                let removed = tokio::select! {
                    _ = ended.cancelled() => return false,
                    removed = said_gone(events, member) => removed,
                };
                heard.send_replace(false);
                if removed {
                    return true;
                }
            }
            Err(LinkError::Hub(e)) if e.code == ErrorCode::NotFound => {
                tracing::debug!(member, error = %e.message, "the hub does not watch members");
                return false;
            }
            Err(e) => tracing::debug!(member, error = %e, "member watch failed; again shortly"),
        }
        tokio::select! {
            _ = ended.cancelled() => return false,
            _ = tokio::time::sleep(REWATCH_AFTER) => {}
        }
    }
}

/// Longest the hub may go unheard before a connection past its peer's certificate is closed: long
/// enough for a hub restart or a link reconnecting, short against the certificate.
const MAX_UNHEARD: Duration = Duration::from_secs(60);

/// How long a connection past its peer's certificate survives not hearing the hub, for certificates
/// that live `lifetime`: a quarter of it, at most [`MAX_UNHEARD`].
pub(crate) fn unheard_grace(lifetime: Duration) -> Duration {
    (lifetime / 4).min(MAX_UNHEARD)
}

/// Resolves once a direct connection has outlived what vouches for the agent at the other end:
/// its certificate expired (at `expires_at`, unix seconds; unreadable counts as expired) and no
/// watch of its member has been held (`heard`, from [`until_removed`]) for `grace` on end, so the
/// hub could not have told this agent of a removal. A held watch keeps the connection, and so does
/// a hub that is back within `grace` (a restart, a link reconnecting; a removal meanwhile is
/// answered as soon as the watch is held again). Without this, a member removed while this agent
/// is away from the hub would keep their tunnels as long as the connection lasts; with it, at most
/// until the certificate the hub issued them ends, and `grace` more.
pub(crate) async fn outlived(expires_at: Option<i64>, mut heard: watch::Receiver<bool>, grace: Duration) {
    let left = expires_at.map_or(0, |at| at - pconnect_proto::clock::now());
    tokio::time::sleep(Duration::from_secs(u64::try_from(left).unwrap_or(0))).await;
    loop {
        if heard.wait_for(|hearing| !hearing).await.is_err() {
            return;
        }
        tokio::select! {
            // A hub that is back when the grace also ends keeps the connection.
            biased;
            back = heard.wait_for(|hearing| *hearing) => if back.is_err() { return },
            _ = tokio::time::sleep(grace) => return,
        }
    }
}

/// What a side logs when it closes a connection that [`outlived`] its peer's certificate.
pub(crate) const OUTLIVED: &str = "direct connection closed: the teammate's certificate expired, and without the hub \
     this agent cannot tell whether they are still a member (a current certificate opens a new one)";

/// Whether the watch stream said `member` is gone (`false`: it ended without that word).
async fn said_gone(mut events: RecvStream, member: i64) -> bool {
    let mut pending = Vec::new();
    while let Some(Ok(chunk)) = events.data().await {
        let _ = events.flow_control().release_capacity(chunk.len());
        pending.extend_from_slice(&chunk);
        if let Some(end) = pending.iter().position(|b| *b == b'\n') {
            return serde_json::from_slice::<MemberGone>(&pending[..end]).is_ok_and(|gone| gone.member == member);
        }
        if pending.len() > MAX_LINE {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Whether `outlived` has resolved `after` from now.
    async fn resolved_within(outlived: &mut std::pin::Pin<Box<impl Future<Output = ()>>>, after: Duration) -> bool {
        tokio::time::timeout(after, outlived.as_mut()).await.is_ok()
    }

    #[tokio::test]
    async fn past_its_certificate_a_connection_lives_while_the_hub_is_heard_or_back_within_the_grace() {
        const GRACE: Duration = Duration::from_millis(500);
        let expired = Some(pconnect_proto::clock::now() - 1);
        let (heard, hearing) = watch::channel(true);
        let mut outlived = Box::pin(outlived(expired, hearing, GRACE));
        assert!(!resolved_within(&mut outlived, GRACE * 2).await, "closed while the hub was heard");

        // A blip shorter than the grace (a hub restart, a link reconnecting) keeps it.
        heard.send_replace(false);
        assert!(!resolved_within(&mut outlived, GRACE / 5).await, "closed within the grace");
        heard.send_replace(true);
        assert!(!resolved_within(&mut outlived, GRACE * 2).await, "closed after the hub was back");

        // Unheard for the whole grace: closed then, not before.
        let lost = Instant::now();
        heard.send_replace(false);
        assert!(resolved_within(&mut outlived, GRACE * 10).await, "still open long after the grace");
        assert!(lost.elapsed() >= GRACE, "closed {:?} after the hub was lost", lost.elapsed());
    }

    #[tokio::test]
    async fn before_its_certificate_expires_a_connection_is_kept_without_the_hub() {
        let (_heard, hearing) = watch::channel(false);
        let later = Some(pconnect_proto::clock::now() + 3600);
        let mut outlived = Box::pin(outlived(later, hearing, Duration::ZERO));
        assert!(!resolved_within(&mut outlived, Duration::from_millis(300)).await);
    }

    #[test]
    fn the_grace_is_a_quarter_of_the_certificate_lifetime_and_at_most_a_minute() {
        assert_eq!(unheard_grace(Duration::from_secs(3600)), MAX_UNHEARD);
        assert_eq!(unheard_grace(Duration::from_secs(4)), Duration::from_secs(1));
    }
}
