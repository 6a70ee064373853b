//! `connect share`: create a share of everything you expose, list your shares, revoke one.

use anyhow::Result;
use pconnect_proto::rpc;
use pconnect_proto::share::{
    self, CreateShare, DEFAULT_SHARE_SECS, MAX_SHARE_SECS, ShareCode, ShareCreated, ShareListing,
};

use crate::cli::{ShareArgs, ShareCommand};
use crate::foreground::Foreground;
use crate::link::forward::ForwardLink;
use crate::shutdown::Shutdown;
use crate::state::ShareCodes;
use crate::ui::Ui;
use crate::{home, session};

pub(crate) async fn share(ui: Ui, args: ShareArgs, shutdown: &Shutdown) -> Result<()> {
    // The verbs (`share create|list|revoke`) and the older flags say the same things.
    let (name, expires, list, revoke) = match args.command {
        Some(ShareCommand::Create(create)) => (create.name, create.expires, false, None),
        Some(ShareCommand::List) => (None, None, true, None),
        Some(ShareCommand::Revoke { code }) => (None, None, false, Some(code)),
        None => (args.name, args.expires, args.list, args.revoke),
    };
    // Check input before touching the network: nothing is half-created on bad input.
    let expires_in_secs = match &expires {
        Some(text) => pconnect_proto::duration::parse(text, MAX_SHARE_SECS)?,
        None => DEFAULT_SHARE_SECS,
    };
    let revoke = revoke.map(|code| share::parse_code(&code)).transpose()?;
    let fg = Foreground::new(shutdown);
    let session = session::resolve().await?;
    let (link, _) = ForwardLink::connect(session.creds, session.id, 1, fg.links()).await?;
    let home = home::agent_home()?;
    let hub = session.login.hub.clone();
    match (revoke, list) {
        (Some(code), _) => {
            link.call::<rpc::RevokeShareByCode>(&ShareCode { code: code.clone() }).await?;
            let _ = ShareCodes::forget(&home, &code);
            ui.share_revoked(&code);
            Ok(())
        }
        (None, true) => {
            let listing: ShareListing = link.call::<rpc::ListShares>(&()).await?;
            ui.share_list(&listing, &ShareCodes::load(&home), &hub);
            Ok(())
        }
        (None, false) => {
            ui.share_creating();
            let body = CreateShare { name, expires_in_secs, services: None, project: None };
            let created: ShareCreated = link.call::<rpc::CreateShareCall>(&body).await?;
            ShareCodes::remember(&home, &hub, created.share.id, &created.code)?;
            ui.share_created(&created, expires_in_secs);
            Ok(())
        }
    }
}
