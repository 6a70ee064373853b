//! The secret store: the hub's secret key.

use super::Fixture;

async fn secret_key_is_stable_across_reopen(fixture: Fixture) {
    let store = fixture.store();
    let key = store.secret_key().await.unwrap();
    assert_ne!(key, [0; 32]);
    assert_eq!(store.secret_key().await.unwrap(), key);

    let reopened = fixture.reopen().await;
    assert_eq!(reopened.store().secret_key().await.unwrap(), key);
}

on_both_stores!(secret_key_is_stable_across_reopen,);
