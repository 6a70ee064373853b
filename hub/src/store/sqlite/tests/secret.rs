//! The secret store: the hub's secret key.

use super::Fixture;

#[tokio::test]
async fn secret_key_is_stable_across_reopen() {
    let fixture = Fixture::new().await;
    let store = fixture.store();
    let key = store.secret_key().await.unwrap();
    assert_ne!(key, [0; 32]);
    assert_eq!(store.secret_key().await.unwrap(), key);

    let reopened = fixture.reopen().await;
    assert_eq!(reopened.store().secret_key().await.unwrap(), key);
}
