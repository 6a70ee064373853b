//! `connect services`: the workspace's services with owner, port and online state.

use anyhow::Result;
use pconnect_proto::control::ServiceList;
use pconnect_proto::wire::SERVICES_PATH;
use tokio_util::sync::CancellationToken;

use crate::link::forward::ForwardLink;
use crate::session;
use crate::ui::Ui;

pub(crate) async fn services(ui: Ui) -> Result<()> {
    let session = session::resolve().await?;
    let cancel = CancellationToken::new();
    let (link, _) = ForwardLink::connect(session.creds, session.id, 1, cancel.clone()).await?;
    let list: ServiceList = link.get(SERVICES_PATH).await?;
    cancel.cancel();
    ui.services(&list.services);
    Ok(())
}
