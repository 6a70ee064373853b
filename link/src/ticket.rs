//! Direct-path tickets on the wire: `base64url(JSON)` `.` `base64url(Ed25519 signature)`, signed by
//! the hub with its workspace CA's key and checked by the exposing agent on every direct stream.
//! Verifying checks the signature over the exact bytes received before reading any of them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pconnect_proto::direct::Ticket;
use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};

/// Longest ticket accepted (a real one is a few hundred bytes).
const MAX_TICKET: usize = 4096;

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("the ticket is malformed")]
    Malformed,
    #[error("the ticket's signature is not the workspace's")]
    BadSignature,
    #[error("the ticket expired")]
    Expired,
}

/// The wire form of `ticket`, signed with `key`.
pub fn sign(ticket: &Ticket, key: &Ed25519KeyPair) -> String {
    let body = serde_json::to_vec(ticket).expect("a ticket serialises");
    let signature = key.sign(&body);
    format!("{}.{}", URL_SAFE_NO_PAD.encode(&body), URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// The ticket in `text` if `ca_key` (Ed25519, raw) signed it and it has not expired at `now_ms`.
pub fn verify(text: &str, ca_key: &[u8], now_ms: i64) -> Result<Ticket, TicketError> {
    if text.len() > MAX_TICKET {
        return Err(TicketError::Malformed);
    }
    let (body, signature) = text.split_once('.').ok_or(TicketError::Malformed)?;
    let body = URL_SAFE_NO_PAD.decode(body).map_err(|_| TicketError::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TicketError::Malformed)?;
    UnparsedPublicKey::new(&ED25519, ca_key).verify(&body, &signature).map_err(|_| TicketError::BadSignature)?;
    let ticket: Ticket = serde_json::from_slice(&body).map_err(|_| TicketError::Malformed)?;
    if ticket.expires_at <= now_ms {
        return Err(TicketError::Expired);
    }
    Ok(ticket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::KeyPair;

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn ticket(expires_at: i64) -> Ticket {
        Ticket {
            workspace: 1,
            member: 2,
            owner: 3,
            service: "db".into(),
            share: Some(4),
            share_expires_at: None,
            expires_at,
        }
    }

    #[test]
    fn a_signed_ticket_verifies_until_it_expires_and_only_under_its_key() {
        let (ca, stranger) = (key(), key());
        let text = sign(&ticket(1_000), &ca);
        assert_eq!(verify(&text, ca.public_key().as_ref(), 999), Ok(ticket(1_000)));
        assert_eq!(verify(&text, ca.public_key().as_ref(), 1_000), Err(TicketError::Expired));
        assert_eq!(verify(&text, stranger.public_key().as_ref(), 0), Err(TicketError::BadSignature));
        assert_eq!(
            verify(&sign(&ticket(1_000), &stranger), ca.public_key().as_ref(), 0),
            Err(TicketError::BadSignature)
        );
    }

    #[test]
    fn a_changed_byte_or_garbage_is_refused() {
        let ca = key();
        let text = sign(&ticket(i64::MAX), &ca);
        let (body, sig) = text.split_once('.').unwrap();
        let mut json = URL_SAFE_NO_PAD.decode(body).unwrap();
        let at = json.iter().position(|b| *b == b'3').unwrap();
        json[at] = b'9';
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(&json));
        assert_eq!(verify(&forged, ca.public_key().as_ref(), 0), Err(TicketError::BadSignature));
        for garbage in ["", ".", "abc", "a.b", &"x".repeat(MAX_TICKET + 1)] {
            assert!(verify(garbage, ca.public_key().as_ref(), 0).is_err(), "{garbage}");
        }
    }
}
