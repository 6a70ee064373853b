//! One typed description per control call on a forward link: its method, path, request body and
//! reply body. The agent's client (`ForwardLink::call::<C>`) and the hub's router
//! (`hub/src/conn/forward.rs`) both use these, so a call whose two ends disagree does not
//! compile, and a reader can follow `connect share` to `shares::create` by the type's name.
//!
//! Calls without a request body take `()`; calls answered with `204 No Content` reply `()`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::control::{ServiceList, Unregister, WhoAmI};
use crate::debug::{DebugStarted, DebugSummary, StartDebug, StopDebug};
use crate::direct::{DirectCert, DirectCertRequest, DirectRoute, DirectRouteRequest};
use crate::link::{CreateLink, LinkInfo, LinkListing, RevokeLink, UpdateLink};
use crate::share::{CreateShare, Joined, ShareCode, ShareCreated, ShareId, ShareInfo, ShareListing, UpdateShare};
use crate::wire;

/// The HTTP method of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
        }
    }
}

/// A control call: where it goes and what travels each way.
pub trait Call {
    const VERB: Verb;
    const PATH: &'static str;
    type Request: Serialize + DeserializeOwned + Send;
    type Reply: Serialize + DeserializeOwned + Send;
}

macro_rules! calls {
    ($($(#[$doc:meta])* $name:ident: $verb:ident $path:path, $request:ty => $reply:ty;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $name;

            impl Call for $name {
                const VERB: Verb = Verb::$verb;
                const PATH: &'static str = $path;
                type Request = $request;
                type Reply = $reply;
            }
        )*
    };
}

calls! {
    /// Who the caller is.
    WhoAmICall: Get wire::WHOAMI_PATH, () => WhoAmI;
    /// The workspace's services.
    ListServices: Get wire::SERVICES_PATH, () => ServiceList;
    /// Forget some of the caller's services.
    UnregisterServices: Post wire::UNREGISTER_PATH, Unregister => ();
    /// Share the caller's online services behind a new code.
    CreateShareCall: Post wire::SHARES_PATH, CreateShare => ShareCreated;
    /// The caller's active shares.
    ListShares: Get wire::SHARES_PATH, () => ShareListing;
    /// Revoke a share by its code.
    RevokeShareByCode: Post wire::SHARE_REVOKE_PATH, ShareCode => ();
    /// Revoke one of the caller's shares by id.
    RevokeShareById: Post wire::SHARE_REVOKE_ID_PATH, ShareId => ();
    /// Move a share's expiry in place.
    UpdateShareCall: Post wire::SHARE_UPDATE_PATH, UpdateShare => ShareInfo;
    /// Join a share by its code.
    JoinShare: Post wire::SHARE_JOIN_PATH, ShareCode => Joined;
    /// Publish one of the caller's services.
    CreateLinkCall: Post wire::LINKS_PATH, CreateLink => LinkInfo;
    /// The caller's active links.
    ListLinks: Get wire::LINKS_PATH, () => LinkListing;
    /// End a link.
    RevokeLinkCall: Post wire::LINK_REVOKE_PATH, RevokeLink => ();
    /// Change a link's expiry or policy in place.
    UpdateLinkCall: Post wire::LINK_UPDATE_PATH, UpdateLink => LinkInfo;
    /// Start a debug session for one of the caller's services.
    StartDebugCall: Post wire::DEBUG_START_PATH, StartDebug => DebugStarted;
    /// The caller's debug sessions.
    ListDebug: Get wire::DEBUG_PATH, () => Vec<DebugSummary>;
    /// End a debug session.
    StopDebugCall: Post wire::DEBUG_STOP_PATH, StopDebug => ();
    /// A direct-path certificate for the caller's own key.
    DirectCertCall: Post crate::direct::DIRECT_CERT_PATH, DirectCertRequest => DirectCert;
    /// Candidates and a ticket for a direct tunnel.
    DirectRouteCall: Post crate::direct::DIRECT_ROUTE_PATH, DirectRouteRequest => DirectRoute;
}

/// Whether a request's method and path are those of `C`.
pub fn is<C: Call>(method: &str, path: &str) -> bool {
    method == C::VERB.as_str() && path == C::PATH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_has_one_place() {
        let all = [
            (WhoAmICall::VERB, WhoAmICall::PATH),
            (ListServices::VERB, ListServices::PATH),
            (UnregisterServices::VERB, UnregisterServices::PATH),
            (CreateShareCall::VERB, CreateShareCall::PATH),
            (ListShares::VERB, ListShares::PATH),
            (RevokeShareByCode::VERB, RevokeShareByCode::PATH),
            (RevokeShareById::VERB, RevokeShareById::PATH),
            (UpdateShareCall::VERB, UpdateShareCall::PATH),
            (JoinShare::VERB, JoinShare::PATH),
            (CreateLinkCall::VERB, CreateLinkCall::PATH),
            (ListLinks::VERB, ListLinks::PATH),
            (RevokeLinkCall::VERB, RevokeLinkCall::PATH),
            (UpdateLinkCall::VERB, UpdateLinkCall::PATH),
            (StartDebugCall::VERB, StartDebugCall::PATH),
            (ListDebug::VERB, ListDebug::PATH),
            (StopDebugCall::VERB, StopDebugCall::PATH),
            (DirectCertCall::VERB, DirectCertCall::PATH),
            (DirectRouteCall::VERB, DirectRouteCall::PATH),
        ];
        let unique: std::collections::BTreeSet<(&str, &str)> = all.iter().map(|(v, p)| (v.as_str(), *p)).collect();
        assert_eq!(unique.len(), all.len(), "two calls share a method and path");
        assert!(is::<CreateShareCall>("POST", "/v1/shares") && !is::<ListShares>("POST", "/v1/shares"));
    }
}
