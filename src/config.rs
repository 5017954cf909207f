//! `zeod serve` configuration (stub: the server owner fills this in).

/// runzeo's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {}
