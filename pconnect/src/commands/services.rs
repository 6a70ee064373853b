//! `connect services`: the workspace's services with owner, port and online state.

use anyhow::Result;
use pconnect_proto::control::ServiceList;
use pconnect_proto::rpc;

use crate::foreground::Foreground;
use crate::link::forward::ForwardLink;
use crate::session;
use crate::shutdown::Shutdown;
use crate::ui::Ui;

pub(crate) async fn services(ui: Ui, shutdown: &Shutdown) -> Result<()> {
    let fg = Foreground::new(shutdown);
    let session = session::resolve().await?;
    let (link, _) = ForwardLink::connect(session.creds, session.id, 1, fg.links()).await?;
    let list: ServiceList = link.call::<rpc::ListServices>(&()).await?;
    ui.services(&list.services);
    Ok(())
}
