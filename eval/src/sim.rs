//! `steerfeed eval sim`.

use steerfeed::Config;

/// Arguments of `steerfeed eval sim`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `steerfeed eval sim`.
pub fn run(_config: Config, _args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("steerfeed eval sim is not built yet")
}
