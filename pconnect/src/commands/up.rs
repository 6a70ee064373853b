//! `connect up [--detach]`: runs the project's engine in the foreground (`dev::up`), or starts it
//! in the background and returns once it is applied (`commands::detach`).

use anyhow::Result;

use crate::cli::UpArgs;
use crate::dev;
use crate::shutdown::Shutdown;
use crate::ui::Ui;

pub(crate) async fn up(ui: Ui, args: UpArgs, shutdown: &Shutdown) -> Result<()> {
    let path = dev::up::project_path(args.file)?;
    if args.detach {
        return super::detach::detach(ui, &path, &args.direct).await;
    }
    dev::up::up(ui, &path, args.direct, shutdown).await
}
