//! Loads the language model with the default configuration and shows how it relates a
//! few feed preferences: `cargo run --release --example embed`.

#![allow(clippy::print_stdout)]

use steerfeed::{Config, open_parser};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let parser = open_parser(&Config::default())?; // the encoder, without a store
    let texts = [
        "more cooking videos",
        "recipes and food",
        "less politics",
        "cute dogs doing tricks",
    ];
    let vectors = texts
        .iter()
        .map(|t| parser.encoder().embed(t))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, a) in texts.iter().enumerate() {
        for (j, b) in texts.iter().enumerate().skip(i + 1) {
            println!("{:.3}  {a:?} ~ {b:?}", vectors[i].dot(&vectors[j]));
        }
    }
    Ok(())
}
