//! The hub's share key: share codes are stored and looked up only as
//! HMAC-SHA256(hub key, workspace, code), with the key kept in the store.

use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::store::{Store, StoreError, WorkspaceId};

/// The keyed hash of share codes; the key is read from the store once, on first use.
pub(crate) struct ShareKey {
    store: Arc<dyn Store>,
    key: OnceCell<ring::hmac::Key>,
}

impl ShareKey {
    pub(crate) fn new(store: Arc<dyn Store>) -> Self {
        Self { store, key: OnceCell::new() }
    }

    /// HMAC-SHA256(hub key, workspace, code): what a share code is stored and looked up by.
    pub(crate) async fn code_hash(&self, workspace: WorkspaceId, code: &str) -> Result<[u8; 32], StoreError> {
        let key = self
            .key
            .get_or_try_init(|| async {
                let secret = self.store.secret_key().await?;
                Ok::<_, StoreError>(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret))
            })
            .await?;
        let mut ctx = ring::hmac::Context::with_key(key);
        ctx.update(&workspace.to_be_bytes());
        ctx.update(code.as_bytes());
        Ok(ctx.sign().as_ref().try_into().expect("HMAC-SHA256 is 32 bytes"))
    }
}
