//! `connect login`, `connect whoami`, `connect logout`.

use std::io::IsTerminal;

use anyhow::{Context, Result};
use pconnect_link::random::hex as random_hex;
use pconnect_link::tls::normalize_fingerprint;
use pconnect_proto::handshake::{Hello, Role};
use pconnect_proto::wire::PROTOCOL_VERSION;

use crate::cli::LoginArgs;
use crate::foreground::Foreground;
use crate::link::dial::{Credentials, HubAddr, dial, probe_certificate};
use crate::link::forward::ForwardLink;
use crate::shutdown::Shutdown;
use crate::state::Login;
use crate::tls::Trust;
use crate::ui::Ui;
use crate::{home, session};

/// Logs in: dials the hub, pins its certificate (or checks it against `--ca`), saves the login.
pub(crate) async fn login(ui: Ui, args: LoginArgs) -> Result<()> {
    let token = match (args.token.clone(), &args.token_file) {
        (Some(token), _) => token,
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the token file {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => {
            anyhow::bail!("no token given: pass --token, --token-file or set PCONNECT_TOKEN")
        }
    };
    let hub = HubAddr::parse(&args.hub)?;
    let trust = trust_for_login(ui, &hub, &args).await?;
    let fingerprint = match &trust {
        Trust::Pinned(pin) => Some(pin.clone()),
        _ => None,
    };
    let creds = Credentials { hub: hub.clone(), token: token.clone(), trust };
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::Forward,
        token: token.clone(),
        session: random_hex(16),
        services: vec![],
        direct: vec![],
    };
    let (_stream, welcome) = dial(&creds, &hello).await?;
    let login = Login {
        hub: hub.url(),
        token,
        fingerprint,
        ca: args.ca,
        member: welcome.member,
        workspace: welcome.workspace,
        embedded: false,
    };
    login.save(&home::agent_home()?)?;
    ui.logged_in(&login);
    Ok(())
}

/// How this login will check the hub, settled before the token is sent anywhere: a CA file, a
/// certificate the system trusts, the key given with `--fingerprint`, or (for a self-signed hub)
/// the key the user confirmed on the terminal or accepted with `--trust-on-first-use`.
async fn trust_for_login(ui: Ui, hub: &HubAddr, args: &LoginArgs) -> Result<Trust> {
    if let Some(ca) = &args.ca {
        return Ok(Trust::Ca(ca.clone()));
    }
    if let Some(given) = &args.fingerprint {
        let pin = normalize_fingerprint(given).with_context(|| {
            format!("--fingerprint {given:?} is not a SHA-256 fingerprint (SHA256: then 32 bytes of hex, as the hub prints it)")
        })?;
        return Ok(Trust::Pinned(pin));
    }
    let seen = probe_certificate(hub).await?;
    if seen.publicly_trusted {
        return Ok(Trust::System);
    }
    let url = hub.url();
    if args.trust_on_first_use || (std::io::stdin().is_terminal() && !ui.json && ui.ask_trust_hub(&url, &seen.key)) {
        return Ok(Trust::Pinned(seen.key));
    }
    anyhow::bail!(
        "the hub at {url} has a certificate this system does not vouch for (key {key}); nothing was sent to it.\n\
         Compare the key with the `Fingerprint:` line the hub printed at start, then run: \
         connect login --hub {url} --fingerprint {key}",
        key = seen.key
    )
}

/// Shows the login and whether the hub accepts it right now.
pub(crate) async fn whoami(ui: Ui, shutdown: &Shutdown) -> Result<()> {
    let fg = Foreground::new(shutdown);
    let session = session::resolve().await?;
    let online = ForwardLink::connect(session.creds.clone(), session.id.clone(), 1, fg.links()).await;
    if let Err(e) = &online
        && !e.is_retryable()
    {
        return Err(anyhow::anyhow!("{e}"));
    }
    ui.whoami(&session.login, online.is_ok());
    Ok(())
}

/// Forgets the saved login.
pub(crate) fn logout(ui: Ui) -> Result<()> {
    ui.logged_out(Login::remove(&home::agent_home()?)?);
    Ok(())
}
