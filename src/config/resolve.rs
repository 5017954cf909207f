//! From the merged layers to a [`ServerConfig`]: defaults filled in,
//! values checked, schedules parsed. Every error names the key it is about.

use super::*;

pub(super) fn resolve(
    layer: Layer,
    msgpack: bool,
    test: bool,
    mut notes: Vec<String>,
) -> Result<ServerConfig, ConfigError> {
    let address = Address::parse(layer.address.as_deref().unwrap_or(DEFAULT_ADDRESS))?;
    let metrics = match layer.metrics.as_deref().map(Address::parse).transpose()? {
        None => None,
        Some(Address::Tcp(addr)) => Some(addr),
        Some(Address::Unix(path)) => {
            return Err(ConfigError::Address {
                address: path.display().to_string(),
            })
        }
    };
    let seconds =
        |key: &'static str, value: Option<f64>| -> Result<Option<Duration>, ConfigError> {
            match value {
                None => Ok(None),
                Some(v) if v.is_finite() && v >= 0.0 => Ok(Some(Duration::from_secs_f64(v))),
                Some(v) => Err(ConfigError::OutOfRange {
                    key,
                    expected: "a number of seconds",
                    value: v.to_string(),
                }),
            }
        };
    let positive = |key: &'static str, value: u64| -> Result<usize, ConfigError> {
        usize::try_from(value)
            .ok()
            .filter(|v| *v > 0)
            .ok_or(ConfigError::OutOfRange {
                key,
                expected: "a positive number",
                value: value.to_string(),
            })
    };
    // A read-only server still opens its storages as they are configured
    // (as runzeo does); it only refuses writable connections.
    let server_read_only = layer.read_only.unwrap_or(false);
    let mut storages = Vec::new();
    let mut pack_schedules = Vec::new();
    let mut backup_schedules = Vec::new();
    for (name, s) in layer.storages {
        if let Some(plan) = backup_plan(&name, &s, &mut notes)? {
            backup_schedules.push((name.clone(), plan));
        }
        let path = s
            .path
            .ok_or_else(|| ConfigError::StoragePath { name: name.clone() })?;
        if let Some(text) = &s.pack_schedule {
            let schedule =
                text.parse::<PackSchedule>()
                    .map_err(|source| ConfigError::PackSchedule {
                        name: name.clone(),
                        source,
                    })?;
            let days = match s.pack_days {
                None => 0.0,
                Some(d) if d.is_finite() && d >= 0.0 => d,
                Some(d) => {
                    return Err(ConfigError::OutOfRange {
                        key: "pack-days",
                        expected: "a number of days >= 0",
                        value: d.to_string(),
                    })
                }
            };
            pack_schedules.push((name.clone(), ScheduledPack { schedule, days }));
        } else if s.pack_days.is_some() {
            notes.push(format!(
                "storage {name:?}: pack-days without pack-schedule is ignored"
            ));
        }
        let defaults = OpenOptions::default();
        storages.push(StorageConfig {
            name,
            path,
            truncate: s.create.unwrap_or(false),
            options: OpenOptions {
                read_only: s.read_only.unwrap_or(false),
                create: true,
                blob_dir: s.blob_dir,
                pack_gc: s.pack_gc.unwrap_or(defaults.pack_gc),
                pack_keep_old: s.pack_keep_old.unwrap_or(defaults.pack_keep_old),
                quota: s.quota,
                // With client-conflict-resolution the clients resolve; the
                // storage must hand every conflict back untouched.
                resolve_conflicts: !layer.client_conflict_resolution.unwrap_or(false),
                ..defaults
            },
        });
    }
    if storages.is_empty() {
        return Err(ConfigError::NoStorage);
    }
    let tls = match (layer.ssl_certificate, layer.ssl_key, layer.ssl_authenticate) {
        (Some(certificate), key, authenticate) => {
            if authenticate.is_none() {
                notes.push(
                    "TLS without client certificates (no ssl authenticate): any client that \
                     reaches the port is trusted, as without TLS"
                        .to_string(),
                );
            }
            Some(TlsFiles {
                certificate,
                key,
                authenticate,
            })
        }
        (None, Some(_), _) => return Err(ConfigError::SslWithoutCertificate { key: "ssl-key" }),
        (None, None, Some(_)) => {
            return Err(ConfigError::SslWithoutCertificate {
                key: "ssl-authenticate",
            })
        }
        (None, None, None) => None,
    };
    Ok(ServerConfig {
        address,
        read_only: server_read_only,
        invalidation_queue_size: layer
            .invalidation_queue_size
            .unwrap_or(DEFAULT_INVALIDATION_QUEUE_SIZE) as usize,
        invalidation_age: match seconds("invalidation-age", layer.invalidation_age)? {
            None => Some(DEFAULT_INVALIDATION_AGE),
            Some(age) if age.is_zero() => None,
            Some(age) => Some(age),
        },
        invalidation_max_oids: usize::try_from(
            layer
                .invalidation_max_oids
                .unwrap_or(DEFAULT_INVALIDATION_MAX_OIDS),
        )
        .unwrap_or(usize::MAX),
        transaction_timeout: seconds("transaction-timeout", layer.transaction_timeout)?
            .filter(|d| !d.is_zero()),
        client_conflict_resolution: layer.client_conflict_resolution.unwrap_or(false),
        msgpack,
        pid_file: layer.pid_file,
        address_file: layer.address_file,
        max_frame_size: positive(
            "max-frame-size",
            layer.max_frame_size.unwrap_or(DEFAULT_MAX_FRAME_SIZE),
        )?,
        max_connections: positive(
            "max-connections",
            layer.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        )?,
        max_output_buffer: positive(
            "max-output-buffer",
            layer.max_output_buffer.unwrap_or(DEFAULT_MAX_OUTPUT_BUFFER),
        )?,
        handshake_timeout: seconds(
            "handshake-timeout",
            Some(layer.handshake_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT)),
        )?
        .filter(|d| !d.is_zero())
        .ok_or(ConfigError::OutOfRange {
            key: "handshake-timeout",
            expected: "a positive number of seconds",
            value: "0".to_string(),
        })?,
        metrics,
        log_format: layer
            .log_format
            .as_deref()
            .and_then(env::parse_log_format)
            .unwrap_or_default(),
        eventlog: layer.eventlog.map(|path| {
            (
                path,
                layer.eventlog_level.unwrap_or_else(|| "INFO".to_string()),
            )
        }),
        storages,
        test,
        notes,
        pack_schedules,
        tls,
        backup_schedules,
    })
}

/// A storage's `backup-*` keys as a plan, if it has a `backup-schedule`.
fn backup_plan(
    name: &str,
    s: &StorageLayer,
    notes: &mut Vec<String>,
) -> Result<Option<ScheduledBackup>, ConfigError> {
    let Some(text) = &s.backup_schedule else {
        if s.backup_repository.is_some() || s.backup_keep.is_some() {
            notes.push(format!(
                "storage {name:?}: backup-* keys without backup-schedule are ignored"
            ));
        }
        return Ok(None);
    };
    let schedule = text
        .parse::<PackSchedule>()
        .map_err(|source| ConfigError::PackSchedule {
            name: name.to_string(),
            source,
        })?;
    let repository = s
        .backup_repository
        .clone()
        .ok_or_else(|| ConfigError::BackupRepository {
            name: name.to_string(),
        })?;
    let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Ok(Some(ScheduledBackup {
        schedule,
        repository,
        keep: s.backup_keep.filter(|k| *k > 0).map(count),
        full_every: s.backup_full_every.map(count).unwrap_or(DEFAULT_FULL_EVERY),
        gzip: s.backup_gzip.unwrap_or(false),
    }))
}
