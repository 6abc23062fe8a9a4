//! `steerfeed eval report`.

use steerfeed::Config;

/// Arguments of `steerfeed eval report`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `steerfeed eval report`.
pub fn run(_config: Config, _args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("steerfeed eval report is not built yet")
}
