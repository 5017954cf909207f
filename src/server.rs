//! The ZEO server (stub: the server owner fills this in).

use std::process::ExitCode;

use crate::config::ServeArgs;

pub fn main(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
