//! `connect login`, `connect whoami`, `connect logout`.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use pconnect_hub::auth::random_hex;
use pconnect_proto::handshake::{Hello, Role};
use pconnect_proto::wire::PROTOCOL_VERSION;

use crate::cli::LoginArgs;
use crate::link::dial::{Credentials, HubAddr, dial};
use crate::link::forward::ForwardLink;
use crate::state::Login;
use crate::tls::Trust;
use crate::ui::Ui;
use crate::{home, session};

/// Logs in: dials the hub, pins its certificate (or checks it against `--ca`), saves the login.
pub(crate) async fn login(ui: Ui, args: LoginArgs) -> Result<()> {
    let token = match (args.token, &args.token_file) {
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
    let seen = Arc::new(Mutex::new(None));
    let trust = match &args.ca {
        Some(ca) => Trust::Ca(ca.clone()),
        None => Trust::FirstUse(seen.clone()),
    };
    let creds = Credentials { hub: hub.clone(), token: token.clone(), trust };
    let hello = Hello {
        version: PROTOCOL_VERSION,
        role: Role::Forward,
        token: token.clone(),
        session: random_hex(16),
        services: vec![],
    };
    let (_stream, welcome) = dial(&creds, &hello).await?;
    let fingerprint = if args.ca.is_some() { None } else { seen.lock().unwrap_or_else(|p| p.into_inner()).clone() };
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

/// Shows the login and whether the hub accepts it right now.
pub(crate) async fn whoami(ui: Ui) -> Result<()> {
    let session = session::resolve().await?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let online = ForwardLink::connect(session.creds.clone(), session.id.clone(), 1, cancel.clone()).await;
    cancel.cancel();
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
