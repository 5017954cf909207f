//! `zeod health` (stub: the server owner fills this in).

use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {}

pub fn main(_args: HealthArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
