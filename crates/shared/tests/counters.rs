//! The counters' keys in Redis stay bounded: a teen who uses the app every day, whose
//! pages serve all they were granted (so no grant is ever given back), keeps only the
//! last days' items and grants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use steerfeed_core::UserId;
use steerfeed_core::storage::{ItemAsk, Storage};
use steerfeed_shared::servers::Servers;
use steerfeed_shared::{SharedOptions, SharedStore};
use steerfeed_store::StoreOptions;

#[test]
fn a_daily_teens_keys_keep_only_the_last_days() {
    let servers = Servers::shared().expect("test servers");
    let ns = Servers::namespace("k");
    let s = SharedStore::open(SharedOptions::new(
        &servers.postgres_url,
        &servers.nats_url,
        &servers.redis_url,
        &ns,
        StoreOptions::with_dim(8),
    ))
    .unwrap();
    let teen = UserId::new("t").unwrap();
    let first = jiff::civil::date(2026, 11, 1);
    let days: Vec<jiff::civil::Date> = first.series(jiff::Span::new().days(1)).take(10).collect();
    for &day in &days {
        for page in 0..40 {
            let ask = ItemAsk {
                day,
                floor: 0,
                want: 10,
                cap: 1_000,
            };
            let g = s.reserve_items(&teen, ask).unwrap();
            assert_eq!((g.before, g.granted), (page * 10, 10));
        }
    }
    let client = redis::Client::open(servers.redis_url.as_str()).unwrap();
    let mut c = client.get_connection().unwrap();
    let mut key = |suffix: &str| -> String {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("sf:{ns}:*:{suffix}"))
            .query(&mut c)
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        keys[0].clone()
    };
    let (items, grants) = (key("items"), key("grants"));
    let items: Vec<String> = redis::cmd("HKEYS").arg(&items).query(&mut c).unwrap();
    let grants: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg(&grants).query(&mut c).unwrap();
    // The day before the last is the oldest kept.
    let kept = days[8].to_string();
    assert!(items.len() <= 3, "{items:?}");
    assert!(items.iter().all(|d| *d >= kept), "{items:?}");
    assert!(grants.len() <= 1 + 2 * 40, "{} grants kept", grants.len());
    assert!(
        grants
            .iter()
            .filter(|(k, _)| k.as_str() != "#")
            .all(|(_, v)| v.split(' ').next().unwrap() >= kept.as_str()),
        "{grants:?}"
    );
    assert_eq!(grants["#"], "400", "every reservation was numbered");
}
