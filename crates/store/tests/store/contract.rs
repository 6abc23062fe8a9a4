//! The contract every `Storage` backend passes (`steerfeed_store::contract`), run on a
//! fresh temporary sled store per contract.

steerfeed_store::storage_contract_tests!(|| std::sync::Arc::new(
    steerfeed_store::Store::temporary(steerfeed_store::StoreOptions::with_dim(
        steerfeed_store::contract::DIM
    ))
    .unwrap()
));
