//! The embedded engine end to end: builds a small seeded world in a temporary store,
//! steers one user's feed in plain language and prints the page with its explanations.
//!
//! `cargo run --release --example embedded`

#![allow(clippy::print_stdout)]

use steerfeed::demo::load_world;
use steerfeed::world::{World, WorldConfig};
use steerfeed::{AgeBand, Config, Engine, FeedRequest};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.store.path = dir.path().to_path_buf();
    let engine = Engine::open(config)?;

    let world = World::generate(WorldConfig::new(42, 300, 3_000));
    let loaded = load_world(&engine, &world, 1_000)?;
    println!(
        "loaded {} users, {} videos, {} follows, {} events",
        loaded.users, loaded.videos, loaded.follows, loaded.events
    );

    let me = world
        .users
        .iter()
        .find(|u| u.user.age_band == AgeBand::Adult)
        .map(|u| u.user.id.clone())
        .ok_or("the world has no adult")?;
    let now = world.config.now;
    let text = "way more cooking and pets, no politics, nothing longer than a minute";
    let constraints = engine.set_preferences(&me, text, now)?;
    println!(
        "\n{me} asked: {text:?}\ncompiled: {}",
        serde_json::to_string(&constraints)?
    );

    let page = engine.feed(&FeedRequest::new(me.clone(), 10)?.at(now))?;
    println!("\npage for {me}:");
    for (i, item) in page.items.iter().enumerate() {
        let video = engine
            .video(&item.video)?
            .ok_or("served an unknown video")?;
        let topics: Vec<&str> = video.topics.iter().map(|t| t.as_str()).collect();
        println!(
            "{:>2}. {:<7} {:<22} score {:>6.3}  {}",
            i + 1,
            item.video.as_str(),
            topics.join(","),
            item.score,
            item.explanation.text
        );
    }
    for card in &page.cards {
        println!(
            "    [{:?} card at {}] {}",
            card.kind, card.position, card.message
        );
    }
    let summary = engine.profile_summary_at(&me, now)?;
    println!("\nsteering in words: {}", summary.steering.join("; "));
    Ok(())
}
