//! Resolving who this agent is and how to reach its hub: the saved login, or the embedded local hub.

use anyhow::Result;
use pconnect_link::random::hex as random_hex;

use crate::link::dial::{Credentials, HubAddr};
use crate::state::Login;
use crate::tls::Trust;
use crate::{embedded, home};

/// The agent's identity for this run.
pub(crate) struct Session {
    pub(crate) login: Login,
    pub(crate) creds: Credentials,
    /// Random id of this agent process (all its connections share it).
    pub(crate) id: String,
}

/// Loads the login, starting and logging in to the embedded local hub when there is none.
pub(crate) async fn resolve() -> Result<Session> {
    let home = home::agent_home()?;
    let login = match Login::load(&home)? {
        Some(login) if !login.embedded => login,
        previous => {
            crate::ui::progress::while_waiting("Starting the local hub…", embedded::ensure_login(&home, previous))
                .await?
        }
    };
    let creds = credentials(&login)?;
    Ok(Session { login, creds, id: random_hex(16) })
}

/// Dial credentials of a saved login.
pub fn credentials(login: &Login) -> Result<Credentials> {
    let trust = match (&login.ca, &login.fingerprint) {
        (Some(ca), _) => Trust::Ca(ca.clone()),
        (None, Some(pin)) => Trust::Pinned(pin.clone()),
        // Logged in to a hub whose certificate the system trusts: nothing to pin.
        (None, None) => Trust::System,
    };
    Ok(Credentials { hub: HubAddr::parse(&login.hub)?, token: login.token.clone(), trust })
}

/// The session of a project command (`plan`, `up`). The hub a project names is layered:
/// `PCONNECT_HUB` over the file's `hub:`; when either names one, it must be the hub this machine is
/// logged in to (a token belongs to one hub), else the saved login or the embedded hub is used.
pub(crate) async fn resolve_for_project(declared: Option<&str>) -> Result<Session> {
    let env = std::env::var("PCONNECT_HUB").ok().filter(|v| !v.is_empty());
    let Some(wanted) = env.as_deref().or(declared) else {
        return resolve().await;
    };
    let source = if env.is_some() { "PCONNECT_HUB" } else { "pconnect.yml's `hub:`" };
    let wanted_addr = HubAddr::parse(wanted).map_err(|e| anyhow::anyhow!("{source}: {e:#}"))?;
    match Login::load(&home::agent_home()?)? {
        Some(login) if !login.embedded => {
            anyhow::ensure!(
                HubAddr::parse(&login.hub).ok().as_ref() == Some(&wanted_addr),
                "{source} names the hub {wanted}, but this machine is logged in to {}: run `connect login --hub {wanted}`",
                login.hub
            );
            resolve().await
        }
        _ => anyhow::bail!(
            "{source} names the hub {wanted}, but this machine is not logged in to it: run `connect login --hub {wanted}`"
        ),
    }
}
