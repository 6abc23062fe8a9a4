//! `steerfeed eval microlens`.

use steerfeed::Config;

/// Arguments of `steerfeed eval microlens`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `steerfeed eval microlens`.
pub fn run(_config: Config, _args: &Args) -> anyhow::Result<()> {
    anyhow::bail!("steerfeed eval microlens is not built yet")
}
