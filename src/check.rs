//! `zeod check` (stub: the storage owner fills this in).

use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct CheckArgs {}

pub fn main(_args: CheckArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
