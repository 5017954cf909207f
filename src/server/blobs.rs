//! Blob transfer: streamed uploads (`storeBlobStart`, `storeBlobChunk`,
//! `storeBlobEnd`) into a temporary file in the storage's blob `tmp`
//! directory, shared-directory uploads (`storeBlobShared`), and downloads
//! (`sendBlob`: `receiveBlobStart`, `receiveBlobChunk`…, `receiveBlobStop`,
//! then the reply).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connection::Connection;
use super::dispatch::{Args, CallError};
use super::reads::blocking;
use super::txnlog::TxnOp;
use crate::ids::Oid;
use crate::protocol::Value;

/// Chunk size of blob downloads (Python's).
const CHUNK: usize = 59_000;

static UPLOADS: AtomicU64 = AtomicU64::new(0);

/// A blob upload in progress; its file is removed unless a store takes it.
pub struct Upload {
    file: Option<tokio::fs::File>,
    path: PathBuf,
    kept: bool,
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The directory of `oid`'s blobs under ZODB's layout (`bushy` unless the
/// directory's `.layout` file says `lawn`).
pub fn oid_dir(blob_dir: &Path, oid: Oid) -> PathBuf {
    let layout = std::fs::read_to_string(blob_dir.join(".layout")).unwrap_or_default();
    if layout.trim() == "lawn" {
        return blob_dir.join(oid.repr());
    }
    let mut dir = blob_dir.to_path_buf();
    for byte in oid.0 {
        dir.push(format!("0x{byte:02x}"));
    }
    dir
}

impl Connection {
    fn blob_storage_dirs(&self) -> Result<(PathBuf, PathBuf), CallError> {
        let exported = self
            .exported
            .as_ref()
            .ok_or_else(|| CallError::close("not registered"))?;
        match (exported.storage.blob_dir(), exported.storage.blob_tmp_dir()) {
            (Some(dir), Some(tmp)) => Ok((dir.to_path_buf(), tmp)),
            _ => Err(CallError::message(
                "ZODB.POSException.Unsupported",
                "storage has no blob directory",
            )),
        }
    }

    /// `storeBlobStart()` (one-way).
    pub(super) async fn store_blob_start(&mut self, a: &Args<'_>) -> Result<Value, CallError> {
        a.arity(0, 0)?;
        if self.read_only {
            return Err(CallError::read_only());
        }
        let (_, tmp) = self.blob_storage_dirs()?;
        let n = UPLOADS.fetch_add(1, Ordering::Relaxed);
        let path = tmp.join(format!(
            "zeod-upload-{}-{}-{n}.tmp",
            std::process::id(),
            self.id
        ));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| {
                CallError::message("builtins.OSError", format!("{}: {e}", path.display()))
            })?;
        self.upload = Some(Upload {
            file: Some(file),
            path,
            kept: false,
        });
        Ok(Value::None)
    }

    /// `storeBlobChunk(chunk)` (one-way).
    pub(super) async fn store_blob_chunk(&mut self, a: &Args<'_>) -> Result<Value, CallError> {
        a.arity(1, 1)?;
        let chunk = a.bytes(0)?;
        let Some(Upload {
            file: Some(file),
            path,
            ..
        }) = self.upload.as_mut()
        else {
            return Err(CallError::close("storeBlobChunk without storeBlobStart"));
        };
        file.write_all(chunk).await.map_err(|e| {
            CallError::message("builtins.OSError", format!("{}: {e}", path.display()))
        })?;
        Ok(Value::None)
    }

    /// `storeBlobEnd(oid, serial, data, txn)` (one-way).
    pub(super) async fn store_blob_end(&mut self, a: &Args<'_>) -> Result<Value, CallError> {
        a.arity(4, 4)?;
        let Some(mut upload) = self.upload.take() else {
            return Err(CallError::close("storeBlobEnd without storeBlobStart"));
        };
        if let Some(mut file) = upload.file.take() {
            file.flush().await.map_err(|e| {
                CallError::message(
                    "builtins.OSError",
                    format!("{}: {e}", upload.path.display()),
                )
            })?;
        }
        let op = TxnOp::StoreBlob {
            oid: a.oid(0)?,
            serial: a.opt_tid(1)?.unwrap_or_default(),
            data: a.bytes(2)?.to_vec(),
            file: upload.path.clone(),
        };
        self.log_blob_store(a, 3, op)?;
        upload.kept = true;
        Ok(Value::None)
    }

    /// `storeBlobShared(oid, serial, data, filename, txn)` (one-way): the
    /// client already wrote the file into the oid's directory.
    pub(super) fn store_blob_shared(&mut self, a: &Args<'_>) -> Result<Value, CallError> {
        a.arity(5, 5)?;
        let oid = a.oid(0)?;
        let name = a.text(3)?;
        // Python's check against path traversal: a bare name ending in
        // `.tmp` (optionally followed by one character).
        let stem_ok = name.ends_with(".tmp")
            || name
                .get(..name.len().saturating_sub(1))
                .is_some_and(|s| s.ends_with(".tmp"));
        if name.contains('/') || name.contains('\\') || name.contains("..") || !stem_ok {
            return Err(CallError::value_error(format!(
                "Invalid blob filename: {name:?}"
            )));
        }
        let (blob_dir, _) = self.blob_storage_dirs()?;
        let file = oid_dir(&blob_dir, oid).join(&name);
        let op = TxnOp::StoreBlob {
            oid,
            serial: a.opt_tid(1)?.unwrap_or_default(),
            data: a.bytes(2)?.to_vec(),
            file,
        };
        self.log_blob_store(a, 4, op)?;
        Ok(Value::None)
    }

    /// `sendBlob(oid, serial)`: streams the file, then replies `None`.
    pub(super) async fn send_blob(&mut self, a: &Args<'_>, msgid: &Value) -> Result<(), CallError> {
        a.arity(2, 2)?;
        let (oid, serial) = (a.oid(0)?, a.tid(1)?);
        let exported = self
            .exported
            .clone()
            .ok_or_else(|| CallError::close("not registered"))?;
        let storage = exported.storage.clone();
        let path = blocking(move || storage.load_blob(oid, serial)).await??;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(_) => return Err(crate::storage::Error::PosKey(oid).into()),
        };
        let ids = || vec![Value::oid(oid), Value::tid(serial)];
        let start = self
            .encode_call("receiveBlobStart", ids())
            .map_err(CallError::Close)?;
        self.reserve().await.map_err(CallError::Close)?.send(start);
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let mut filled = 0;
            while filled < CHUNK {
                let n = file
                    .read(&mut buffer[filled..])
                    .await
                    .map_err(|e| CallError::close(format!("reading {}: {e}", path.display())))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            let mut args = ids();
            args.push(Value::Bytes(buffer[..filled].to_vec()));
            let chunk = self
                .encode_call("receiveBlobChunk", args)
                .map_err(CallError::Close)?;
            self.reserve().await.map_err(CallError::Close)?.send(chunk);
            if filled < CHUNK {
                break;
            }
        }
        let stop = self
            .encode_call("receiveBlobStop", ids())
            .map_err(CallError::Close)?;
        self.reserve().await.map_err(CallError::Close)?.send(stop);
        self.reply(msgid, Ok(Value::None))
            .await
            .map_err(CallError::Close)
    }
}
