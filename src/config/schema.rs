//! The `zeo.conf` schema: turns a parsed ZConfig tree into a settings
//! [`Layer`], accepting what `runzeo` accepts for the storages zeod serves
//! (`<zeo>`, `<filestorage>`, `<blobstorage>`, `<eventlog>`, `<runner>`) and
//! rejecting the rest with the line it was found on.

use std::path::Path;

use super::zconfig::{Key, Section};
use super::{Layer, StorageLayer};

/// A configuration that parses but does not fit the schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SchemaError {
    pub line: usize,
    pub message: String,
}

fn error(line: usize, message: impl Into<String>) -> SchemaError {
    SchemaError {
        line,
        message: message.into(),
    }
}

/// What the schema found besides settings: notes to log once logging is up.
#[derive(Debug, Default)]
pub struct Notes(pub Vec<String>);

/// Relative paths in `zeo.conf` are relative to the process's working
/// directory, as with runzeo (ZEO's test-suite relies on it).
pub fn layer_from_tree(root: &Section, notes: &mut Notes) -> Result<Layer, SchemaError> {
    if !root.keys.is_empty() {
        let key = &root.keys[0];
        return Err(error(
            key.line,
            format!("key {:?} outside of any section", key.name),
        ));
    }
    for (package, line) in &root.imports {
        notes.0.push(format!(
            "line {line}: %import {package} ignored (zeod serves only filestorage and blobstorage)"
        ));
    }
    let mut layer = Layer::default();
    let mut saw_zeo = false;
    let mut unnamed_line = None;
    for section in &root.sections {
        match section.kind.as_str() {
            "zeo" => {
                if saw_zeo {
                    return Err(error(section.line, "more than one <zeo> section"));
                }
                saw_zeo = true;
                zeo_section(section, &mut layer, notes)?;
            }
            "filestorage" | "blobstorage" => {
                let storage = storage_section(section)?;
                let name = match &section.name {
                    Some(name) => name.clone(),
                    None => {
                        unnamed_line = Some(section.line);
                        "1".to_string()
                    }
                };
                if layer.storages.contains_key(&name) {
                    return Err(error(
                        section.line,
                        format!("a second storage named {name:?}"),
                    ));
                }
                layer.storages.insert(name, storage);
            }
            "eventlog" => eventlog_section(section, &mut layer, notes)?,
            "runner" => {}
            "mappingstorage"
            | "demostorage"
            | "zeoclient"
            | "hexstorage"
            | "serverhexstorage"
            | "loaddelayed_storage" => {
                return Err(error(
                    section.line,
                    format!(
                        "storage type <{}> is not supported by zeod (use <filestorage> or <blobstorage>)",
                        section.kind
                    ),
                ));
            }
            other => {
                return Err(error(
                    section.line,
                    format!("unknown section type <{other}>"),
                ))
            }
        }
    }
    if !saw_zeo {
        return Err(error(1, "no <zeo> section"));
    }
    if let Some(line) = unnamed_line {
        if root.sections.iter().filter(|s| is_storage(s)).count() > 1
            && root
                .sections
                .iter()
                .any(|s| is_storage(s) && s.name.as_deref() == Some("1"))
        {
            return Err(error(
                line,
                "an unnamed storage (named \"1\") next to a storage named \"1\"",
            ));
        }
    }
    Ok(layer)
}

fn is_storage(section: &Section) -> bool {
    matches!(section.kind.as_str(), "filestorage" | "blobstorage")
}

fn zeo_section(section: &Section, layer: &mut Layer, notes: &mut Notes) -> Result<(), SchemaError> {
    for key in &section.keys {
        match key.name.as_str() {
            "address" => layer.address = Some(key.value.clone()),
            "read-only" => layer.read_only = Some(boolean(key)?),
            "invalidation-queue-size" => layer.invalidation_queue_size = Some(integer(key)?),
            "invalidation-age" => layer.invalidation_age = Some(float(key)?),
            "invalidation-max-oids" => layer.invalidation_max_oids = Some(integer(key)?),
            "transaction-timeout" => layer.transaction_timeout = Some(float(key)?),
            "pid-filename" => layer.pid_file = Some(key.value.clone().into()),
            "client-conflict-resolution" => layer.client_conflict_resolution = Some(boolean(key)?),
            "msgpack" => layer.msgpack = Some(boolean(key)?),
            "metrics-address" => layer.metrics = Some(key.value.clone()),
            // zeod's limits (docs/SECURITY.md); runzeo has none of them.
            "max-frame-size" => layer.max_frame_size = Some(byte_size(key)?),
            "max-connections" => layer.max_connections = Some(integer(key)?),
            "max-output-buffer" => layer.max_output_buffer = Some(byte_size(key)?),
            "handshake-timeout" => layer.handshake_timeout = Some(float(key)?),
            "monitor-address"
            | "drop-cache-rather-verify"
            | "authentication-protocol"
            | "authentication-database"
            | "authentication-realm" => notes.0.push(format!(
                "line {}: <zeo> {} is a ZEO 4 option; ignored",
                key.line, key.name
            )),
            other => return Err(error(key.line, format!("unknown key {other:?} in <zeo>"))),
        }
    }
    let mut saw_ssl = false;
    for inner in &section.sections {
        if inner.kind != "ssl" {
            return Err(error(
                inner.line,
                format!("unknown section <{}> in <zeo>", inner.kind),
            ));
        }
        if saw_ssl {
            return Err(error(inner.line, "more than one <ssl> section"));
        }
        saw_ssl = true;
        ssl_section(inner, layer)?;
    }
    Ok(())
}

/// `<ssl>` in `<zeo>`, with runzeo's keys (ZEO's server.xml). Paths stay
/// as written; the files are read when the server starts.
fn ssl_section(section: &Section, layer: &mut Layer) -> Result<(), SchemaError> {
    if let Some(inner) = section.sections.first() {
        return Err(error(
            inner.line,
            format!("unexpected <{}> inside <ssl>", inner.kind),
        ));
    }
    for key in &section.keys {
        match key.name.as_str() {
            "certificate" => layer.ssl_certificate = Some(key.value.clone().into()),
            "key" => layer.ssl_key = Some(key.value.clone().into()),
            "authenticate" if key.value == "DYNAMIC" => {
                return Err(error(
                    key.line,
                    "authenticate DYNAMIC (certificates added at run time by Python code) \
                     is not supported: name a certificate file or directory",
                ))
            }
            "authenticate" => layer.ssl_authenticate = Some(key.value.clone().into()),
            "password-function" => {
                return Err(error(
                    key.line,
                    "password-function names a Python function, which zeod cannot call: \
                     store the key decrypted (`openssl pkey -in KEY -out PLAIN`) in a file \
                     only zeod can read, and drop password-function",
                ))
            }
            other => return Err(error(key.line, format!("unknown key {other:?} in <ssl>"))),
        }
    }
    if layer.ssl_certificate.is_none() {
        return Err(error(section.line, "<ssl> needs a certificate"));
    }
    Ok(())
}

/// `<eventlog>`: its level and the first `<logfile>` path (stderr gets the
/// log anyway); other handlers are ignored with a note.
fn eventlog_section(
    section: &Section,
    layer: &mut Layer,
    notes: &mut Notes,
) -> Result<(), SchemaError> {
    for key in &section.keys {
        match key.name.as_str() {
            "level" => layer.eventlog_level = Some(key.value.clone()),
            "propagate" => {}
            other => {
                return Err(error(
                    key.line,
                    format!("unknown key {other:?} in <eventlog>"),
                ))
            }
        }
    }
    for handler in &section.sections {
        let path = handler.keys.iter().find(|k| k.name == "path");
        match (handler.kind.as_str(), path) {
            ("logfile", Some(path)) if !matches!(path.value.as_str(), "STDERR" | "STDOUT") => {
                if layer.eventlog.is_none() {
                    layer.eventlog = Some(path.value.clone().into());
                }
            }
            ("logfile", _) => {}
            (other, _) => notes.0.push(format!(
                "line {}: <{other}> log handler ignored (zeod logs to stderr and <logfile> only)",
                handler.line
            )),
        }
    }
    Ok(())
}

fn storage_section(section: &Section) -> Result<StorageLayer, SchemaError> {
    if section.kind == "blobstorage" {
        let mut blob_dir = None;
        for key in &section.keys {
            match key.name.as_str() {
                "blob-dir" => blob_dir = Some(key.value.clone()),
                other => {
                    return Err(error(
                        key.line,
                        format!("unknown key {other:?} in <blobstorage>"),
                    ))
                }
            }
        }
        let blob_dir =
            blob_dir.ok_or_else(|| error(section.line, "<blobstorage> needs a blob-dir"))?;
        let inner = match section.sections.as_slice() {
            [inner] if inner.kind == "filestorage" => inner,
            [inner] => {
                return Err(error(
                    inner.line,
                    format!(
                        "<blobstorage> over <{}> is not supported (only <filestorage>)",
                        inner.kind
                    ),
                ))
            }
            _ => {
                return Err(error(
                    section.line,
                    "<blobstorage> needs exactly one nested <filestorage>",
                ))
            }
        };
        let mut storage = storage_section(inner)?;
        if storage.blob_dir.is_some() {
            return Err(error(
                inner.line,
                "blob-dir given both in <blobstorage> and its <filestorage>",
            ));
        }
        storage.blob_dir = Some(blob_dir.into());
        return Ok(storage);
    }
    if let Some(inner) = section.sections.first() {
        return Err(error(
            inner.line,
            format!("unexpected <{}> inside <filestorage>", inner.kind),
        ));
    }
    let mut storage = StorageLayer::default();
    for key in &section.keys {
        match key.name.as_str() {
            "path" => storage.path = Some(key.value.clone().into()),
            "create" => storage.create = Some(boolean(key)?),
            "read-only" => storage.read_only = Some(boolean(key)?),
            "blob-dir" => storage.blob_dir = Some(key.value.clone().into()),
            "quota" => storage.quota = Some(byte_size(key)?),
            "pack-gc" => storage.pack_gc = Some(boolean(key)?),
            "pack-keep-old" => storage.pack_keep_old = Some(boolean(key)?),
            "pack-schedule" => storage.pack_schedule = Some(key.value.clone()),
            "pack-days" => storage.pack_days = Some(float(key)?),
            "backup-schedule" => storage.backup_schedule = Some(key.value.clone()),
            "backup-repository" => storage.backup_repository = Some(key.value.clone().into()),
            "backup-keep" => storage.backup_keep = Some(integer(key)?),
            "backup-full-every" => storage.backup_full_every = Some(integer(key)?),
            "backup-gzip" => storage.backup_gzip = Some(boolean(key)?),
            // A Python callable; zeod has one packer.
            "packer" => {}
            other => {
                return Err(error(
                    key.line,
                    format!("unknown key {other:?} in <filestorage>"),
                ))
            }
        }
    }
    if storage
        .path
        .as_deref()
        .is_none_or(|p: &Path| p.as_os_str().is_empty())
    {
        return Err(error(section.line, "<filestorage> needs a path"));
    }
    Ok(storage)
}

/// ZConfig's boolean: true/false, yes/no, on/off (any case).
fn boolean(key: &Key) -> Result<bool, SchemaError> {
    parse_bool(&key.value).ok_or_else(|| {
        error(
            key.line,
            format!(
                "{}: {:?} is not a boolean (true/false)",
                key.name, key.value
            ),
        )
    })
}

pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn integer(key: &Key) -> Result<u64, SchemaError> {
    key.value.trim().parse().map_err(|_| {
        error(
            key.line,
            format!("{}: {:?} is not a whole number", key.name, key.value),
        )
    })
}

fn float(key: &Key) -> Result<f64, SchemaError> {
    match key.value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(error(
            key.line,
            format!("{}: {:?} is not a number of seconds", key.name, key.value),
        )),
    }
}

/// ZConfig's byte-size: a number with an optional KB/MB/GB suffix.
fn byte_size(key: &Key) -> Result<u64, SchemaError> {
    let value = key.value.trim().to_ascii_uppercase();
    let (digits, factor) = [("KB", 1u64 << 10), ("MB", 1 << 20), ("GB", 1 << 30)]
        .iter()
        .find_map(|(suffix, factor)| {
            value
                .strip_suffix(suffix)
                .map(|d| (d.trim().to_string(), *factor))
        })
        .unwrap_or((value.clone(), 1));
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| {
            error(
                key.line,
                format!("{}: {:?} is not a byte size", key.name, key.value),
            )
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::zconfig::parse;
    use super::*;

    fn layer(text: &str) -> Result<Layer, SchemaError> {
        layer_from_tree(&parse(text).unwrap(), &mut Notes::default())
    }

    #[test]
    fn reads_the_runzeo_example() {
        let l = layer(
            "<zeo>\n address 127.0.0.1:8100\n invalidation-queue-size 100\n transaction-timeout 300\n</zeo>\n<blobstorage 1>\n blob-dir /var/zeo/blobs\n <filestorage>\n  path /var/zeo/Data.fs\n </filestorage>\n</blobstorage>\n<filestorage ro>\n path ro.fs\n read-only true\n quota 2MB\n</filestorage>\n<eventlog>\n level INFO\n <logfile>\n path server.log\n </logfile>\n</eventlog>\n",
        )
        .unwrap();
        assert_eq!(l.address.as_deref(), Some("127.0.0.1:8100"));
        assert_eq!(l.transaction_timeout, Some(300.0));
        let one = &l.storages["1"];
        assert_eq!(one.path.as_deref(), Some(Path::new("/var/zeo/Data.fs")));
        assert_eq!(one.blob_dir.as_deref(), Some(Path::new("/var/zeo/blobs")));
        assert_eq!(l.storages["ro"].read_only, Some(true));
        assert_eq!(l.storages["ro"].quota, Some(2 << 20));
        assert_eq!(l.eventlog.as_deref(), Some(Path::new("server.log")));
        assert_eq!(l.eventlog_level.as_deref(), Some("INFO"));
    }

    #[test]
    fn unnamed_storage_is_one() {
        let l = layer("<zeo>\naddress 8100\n</zeo>\n<filestorage>\npath Data.fs\n</filestorage>\n")
            .unwrap();
        assert!(l.storages.contains_key("1"));
    }

    #[test]
    fn reads_runzeos_ssl_section() {
        let l = layer(
            "<zeo>\n address 8100\n <ssl>\n  certificate server.pem\n  key server_key.pem\n  authenticate clients/\n </ssl>\n</zeo>\n",
        )
        .unwrap();
        assert_eq!(l.ssl_certificate.as_deref(), Some(Path::new("server.pem")));
        assert_eq!(l.ssl_key.as_deref(), Some(Path::new("server_key.pem")));
        assert_eq!(l.ssl_authenticate.as_deref(), Some(Path::new("clients/")));

        let pw = layer("<zeo>\n<ssl>\ncertificate a.pem\npassword-function m.pw\n</ssl>\n</zeo>\n")
            .unwrap_err();
        assert_eq!(pw.line, 4);
        assert!(pw.message.contains("decrypted"), "{pw}");
        assert_eq!(
            layer("<zeo>\n<ssl>\nkey k.pem\n</ssl>\n</zeo>\n")
                .unwrap_err()
                .line,
            2
        );
        assert_eq!(
            layer("<zeo>\n<ssl>\ncertificate a\n</ssl>\n<ssl>\ncertificate b\n</ssl>\n</zeo>\n")
                .unwrap_err()
                .line,
            5
        );
        assert_eq!(
            layer("<zeo>\n<ssl>\ncertificate a\nciphers ALL\n</ssl>\n</zeo>\n")
                .unwrap_err()
                .line,
            4
        );
    }

    #[test]
    fn rejects_with_line_numbers() {
        let e = layer("<zeo>\naddress 1\n</zeo>\n<mappingstorage 1/>\n").unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("mappingstorage"), "{e}");
        assert_eq!(
            layer("<zeo>\n read-only maybe\n</zeo>\n").unwrap_err().line,
            2
        );
        assert_eq!(
            layer("<zeo>\n</zeo>\n<filestorage>\n</filestorage>\n")
                .unwrap_err()
                .line,
            3
        );
        assert_eq!(layer("<zeo>\n bogus 1\n</zeo>\n").unwrap_err().line, 2);
        assert!(layer("<filestorage>\npath x\n</filestorage>\n").is_err());
        let dup = "<zeo>\n</zeo>\n<filestorage 1>\npath a\n</filestorage>\n<filestorage 1>\npath b\n</filestorage>\n";
        assert_eq!(layer(dup).unwrap_err().line, 6);
    }
}
