//! `zeod init` (stub: the init owner fills this in).

use std::process::ExitCode;

#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {}

pub fn main(_args: InitArgs) -> ExitCode {
    ExitCode::FAILURE
}
