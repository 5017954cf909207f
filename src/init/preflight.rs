//! Checks of the machine before the child starts, for mistakes that Zope
//! would only report deep in a traceback: a blob directory whose `.layout`
//! marker contradicts `shared-blob-dir` (plone.docker#135: a private ZEO
//! blob cache (`zeocache`) and the server's shared directory (`bushy` or
//! `lawn`) cannot be swapped for one another).

use std::fs;
use std::io;
use std::path::PathBuf;

use super::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "ZEO_SHARED_BLOB_DIR is on, but {dir}/.layout says '{layout}': that is a private \
         ZEO client cache, not the server's blob directory; mount the server's blob volume \
         there or turn ZEO_SHARED_BLOB_DIR off"
    )]
    CacheAsShared { dir: PathBuf, layout: String },
    #[error(
        "ZEO_SHARED_BLOB_DIR is off, but {dir}/.layout says '{layout}': that is a server's \
         blob directory; turn ZEO_SHARED_BLOB_DIR on, or point ZEOD_INIT_ZEO__BLOB_DIR at \
         a directory of its own for the client's blob cache"
    )]
    SharedAsCache { dir: PathBuf, layout: String },
    #[error("reading {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
}

/// Runs the checks that apply to `settings`.
pub fn check(settings: &Settings) -> Result<(), Error> {
    if settings.zeo.address.0.is_empty() {
        // Not a ZEO client (the load balancer, say).
        return Ok(());
    }
    let dir = &settings.zeo.blob_dir;
    let marker = dir.join(".layout");
    let layout = match fs::read_to_string(&marker) {
        Ok(text) => text.trim().to_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if settings.zeo.shared_blob_dir && !dir.is_dir() {
                tracing::warn!(
                    dir = %dir.display(),
                    "shared blob dir does not exist yet: is the server's blob volume mounted?"
                );
            }
            return Ok(());
        }
        Err(source) => {
            return Err(Error::Unreadable {
                path: marker,
                source,
            })
        }
    };
    let dir = dir.clone();
    match (settings.zeo.shared_blob_dir, layout.as_str()) {
        (true, "zeocache") => Err(Error::CacheAsShared { dir, layout }),
        (false, "bushy" | "lawn") => Err(Error::SharedAsCache { dir, layout }),
        _ => Ok(()),
    }
}
