//! `ZEOD_*` environment variables as a configuration layer (the table is
//! in the `config` module docs).

use super::{schema, ConfigError, Layer};
use crate::telemetry::LogFormat;

/// The `ZEOD_*` variables among `vars`, as a layer; names zeod does not
/// know are left alone (other tools share the prefix).
pub(super) fn env_layer(
    vars: impl Iterator<Item = (String, String)>,
) -> Result<Layer, ConfigError> {
    let mut layer = Layer::default();
    for (var, value) in vars {
        let Some(key) = var
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("ZEOD_"))
            .map(|_| var[5..].to_ascii_lowercase())
        else {
            continue;
        };
        let bad = |expected: &'static str| ConfigError::Env {
            var: var.clone(),
            value: value.clone(),
            expected,
        };
        let boolean = || schema::parse_bool(&value).ok_or_else(|| bad("true or false"));
        let number = || {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| bad("a whole number"))
        };
        let seconds = || {
            value
                .trim()
                .parse::<f64>()
                .map_err(|_| bad("a number of seconds"))
        };
        match key.as_str() {
            "address" => layer.address = Some(value.clone()),
            "read_only" => layer.read_only = Some(boolean()?),
            "invalidation_queue_size" => layer.invalidation_queue_size = Some(number()?),
            "invalidation_age" => layer.invalidation_age = Some(seconds()?),
            "invalidation_max_oids" => layer.invalidation_max_oids = Some(number()?),
            "transaction_timeout" => layer.transaction_timeout = Some(seconds()?),
            "pid_file" => layer.pid_file = Some(value.clone().into()),
            "client_conflict_resolution" => layer.client_conflict_resolution = Some(boolean()?),
            "msgpack" => layer.msgpack = Some(boolean()?),
            "max_frame_size" => layer.max_frame_size = Some(number()?),
            "max_connections" => layer.max_connections = Some(number()?),
            "max_output_buffer" => layer.max_output_buffer = Some(number()?),
            "handshake_timeout" => layer.handshake_timeout = Some(seconds()?),
            "metrics" => layer.metrics = Some(value.clone()),
            "log_file" => layer.eventlog = Some(value.clone().into()),
            "ssl_certificate" => layer.ssl_certificate = Some(value.clone().into()),
            "ssl_key" => layer.ssl_key = Some(value.clone().into()),
            "ssl_authenticate" => layer.ssl_authenticate = Some(value.clone().into()),
            "log_format" => {
                parse_log_format(&value).ok_or_else(|| bad("text or json"))?;
                layer.log_format = Some(value.trim().to_ascii_lowercase());
            }
            _ => {
                let Some((name, field)) = key.strip_prefix("storage_").and_then(|rest| {
                    // The name keeps its case: storage names are case-sensitive.
                    let original = &var[5 + "storage_".len()..];
                    let at = rest.find('_')?;
                    Some((original[..at].to_string(), rest[at + 1..].to_string()))
                }) else {
                    continue;
                };
                if name.is_empty() {
                    continue;
                }
                let storage = layer.storages.entry(name).or_default();
                match field.as_str() {
                    "path" => storage.path = Some(value.clone().into()),
                    "blob_dir" => storage.blob_dir = Some(value.clone().into()),
                    "read_only" => storage.read_only = Some(boolean()?),
                    "create" => storage.create = Some(boolean()?),
                    "quota" => storage.quota = Some(number()?),
                    "pack_gc" => storage.pack_gc = Some(boolean()?),
                    "pack_keep_old" => storage.pack_keep_old = Some(boolean()?),
                    "pack_schedule" => storage.pack_schedule = Some(value.clone()),
                    "pack_days" => {
                        storage.pack_days = Some(
                            value
                                .trim()
                                .parse::<f64>()
                                .map_err(|_| bad("a number of days"))?,
                        )
                    }
                    "backup_schedule" => storage.backup_schedule = Some(value.clone()),
                    "backup_repository" => {
                        storage.backup_repository = Some(value.clone().into())
                    }
                    "backup_keep" => storage.backup_keep = Some(number()?),
                    "backup_full_every" => storage.backup_full_every = Some(number()?),
                    "backup_gzip" => storage.backup_gzip = Some(boolean()?),
                    _ => return Err(bad("a storage key: PATH, BLOB_DIR, READ_ONLY, CREATE, QUOTA, PACK_GC, PACK_KEEP_OLD, PACK_SCHEDULE, PACK_DAYS or BACKUP_{SCHEDULE,REPOSITORY,KEEP,FULL_EVERY,GZIP}")),
                }
            }
        }
    }
    Ok(layer)
}

pub(super) fn parse_log_format(value: &str) -> Option<LogFormat> {
    match value.trim().to_ascii_lowercase().as_str() {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        _ => None,
    }
}
