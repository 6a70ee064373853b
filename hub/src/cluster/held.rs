//! What the registry keeps of each held route's agent besides who it is: its declaration
//! (`ServiceSpec`: kind, env, project) and its direct-path candidates, as one JSON text in the
//! route's `spec` column. Read back, both are checked again (they came from another replica, and
//! before that from an agent).

use pconnect_proto::control::ServiceSpec;
use pconnect_proto::direct::{Candidate, Candidates};
use serde::{Deserialize, Serialize};

use crate::store::RemoteRoute;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Held {
    #[serde(default)]
    spec: Option<ServiceSpec>,
    #[serde(default)]
    direct: Vec<Candidate>,
}

/// The column's text: empty when there is nothing to keep.
pub(crate) fn encode(spec: Option<ServiceSpec>, direct: &[Candidate]) -> String {
    if spec.is_none() && direct.is_empty() {
        return String::new();
    }
    serde_json::to_string(&Held { spec, direct: direct.to_vec() }).unwrap_or_default()
}

/// The declaration and candidates of `remote`'s agent; what does not parse or check is left out.
/// A bare `ServiceSpec` (written before candidates were kept) still reads.
pub(crate) fn decode(remote: &RemoteRoute) -> (Option<ServiceSpec>, Vec<Candidate>) {
    let text = &remote.route.spec;
    let (spec, direct) = match serde_json::from_str::<Held>(text) {
        Ok(held) => (held.spec, held.direct),
        Err(_) => (serde_json::from_str::<ServiceSpec>(text).ok(), Vec::new()),
    };
    let spec = spec.filter(|spec| spec.name == remote.route.service && spec.check().is_ok());
    let direct = Candidates { candidates: direct };
    let direct = if direct.check().is_ok() { direct.candidates } else { Vec::new() };
    (spec, direct)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::HeldRoute;

    fn remote(service: &str, spec: String) -> RemoteRoute {
        RemoteRoute {
            replica: "r1".into(),
            peer_addr: "127.0.0.1:1".into(),
            route: HeldRoute { workspace_id: 1, service: service.into(), owner_id: 2, owner: "alice".into(), spec },
        }
    }

    fn spec(name: &str) -> ServiceSpec {
        ServiceSpec { name: name.into(), port: 5432, kind: None, env: Default::default(), project: None }
    }

    #[test]
    fn declarations_and_candidates_round_trip_and_bad_ones_are_left_out() {
        let tcp = Candidate::Tcp { addr: "10.0.0.2:4000".into() };
        let both = remote("db", encode(Some(spec("db")), std::slice::from_ref(&tcp)));
        assert_eq!(decode(&both), (Some(spec("db")), vec![tcp.clone()]));
        assert_eq!(encode(None, &[]), "");
        assert_eq!(decode(&remote("db", String::new())), (None, vec![]));
        let legacy = remote("db", serde_json::to_string(&spec("db")).unwrap());
        assert_eq!(decode(&legacy), (Some(spec("db")), vec![]));
        let other_name = remote("db", encode(Some(spec("web")), &[]));
        assert_eq!(decode(&other_name).0, None, "a declaration of another service");
        let not_an_address = Candidate::Tcp { addr: "evil.example:1; rm -rf".into() };
        let bad = remote("db", encode(None, &[not_an_address]));
        assert_eq!(decode(&bad).1, vec![], "a candidate that is not IP:port");
    }
}
