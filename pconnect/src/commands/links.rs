//! `connect links`: your public links with their request counts; `connect links revoke <sub>`.

use anyhow::Result;
use pconnect_proto::link::{LinkListing, RevokeLink};
use pconnect_proto::rpc;

use crate::cli::LinksCommand;
use crate::foreground::Foreground;
use crate::link::forward::ForwardLink;
use crate::session;
use crate::shutdown::Shutdown;
use crate::ui::Ui;

pub(crate) async fn links(ui: Ui, command: Option<LinksCommand>, shutdown: &Shutdown) -> Result<()> {
    let fg = Foreground::new(shutdown);
    let session = session::resolve().await?;
    let (link, _) = ForwardLink::connect(session.creds, session.id, 1, fg.links()).await?;
    match command {
        Some(LinksCommand::Revoke { subdomain }) => {
            let subdomain = subdomain.split("://").last().unwrap_or(&subdomain).split('.').next().unwrap_or_default();
            link.call::<rpc::RevokeLinkCall>(&RevokeLink { subdomain: subdomain.to_string() }).await?;
            ui.link_revoked(subdomain);
            Ok(())
        }
        None | Some(LinksCommand::List) => {
            let listing: LinkListing = link.call::<rpc::ListLinks>(&()).await?;
            ui.links(&listing);
            Ok(())
        }
    }
}
