//! The store contracts (`steerfeed_store::contract`) against the shared backend, each on
//! a fresh namespace of one set of throwaway servers (PostgreSQL, NATS JetStream, Redis).

use steerfeed_shared::servers::Servers;
use steerfeed_shared::{SharedOptions, SharedStore};
use steerfeed_store::StoreOptions;

fn fresh() -> SharedStore {
    let servers = Servers::shared().expect("test servers");
    SharedStore::open(SharedOptions::new(
        &servers.postgres_url,
        &servers.nats_url,
        &servers.redis_url,
        &Servers::namespace("c"),
        StoreOptions::with_dim(steerfeed_store::contract::DIM),
    ))
    .expect("shared store")
}

steerfeed_store::storage_contract_tests!(|| std::sync::Arc::new(fresh()));
