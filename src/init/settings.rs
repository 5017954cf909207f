//! The init configuration: its schema, its defaults, and `load`, which
//! layers built-in defaults < a config file (TOML or YAML) < the
//! environment < the command line. The environment accepts the names the
//! plone images document (`ZEO_ADDRESS`, `LISTEN_PORT`, …), our own
//! `ZEOD_INIT_<SECTION>__<KEY>` names (which win over the plone ones), and
//! `ZEOD_VAR_<NAME>` for free template variables. Errors name the variable
//! the bad value came from.

mod layers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml, Yaml};
use figment::{Figment, Metadata, Source};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use self::layers::{describe, Named};
pub use self::layers::{env_names, Layer, PLONE_ENV};
use super::values::{self, Addresses, Mode, Owner, Reopen, SignalName, Size, Span};

/// Everything `zeod init` is configured with. All of it (after
/// validation) is the template context.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Directory holding the templates.
    pub templates: PathBuf,
    /// Where templates go when `render` names no explicit targets.
    pub output_dir: PathBuf,
    /// Template name → target. Empty: every template in `templates` is
    /// rendered to `output_dir/<name>`.
    pub render: BTreeMap<String, Target>,
    /// Dotted settings that must be non-empty before anything starts.
    #[serde(deserialize_with = "values::list")]
    pub required: Vec<String>,
    /// Time between the stop signal and SIGKILL.
    pub grace: Span,
    /// Drop to this uid:gid before exec of the child.
    pub user: Option<Owner>,
    /// `HOST:PORT`s that must accept TCP before the child starts.
    pub wait_for: Addresses,
    pub wait_timeout: Span,
    /// Become a child subreaper when not PID 1, so orphans still come to us.
    #[serde(deserialize_with = "values::flag")]
    pub subreaper: bool,
    /// Start the child in its own process group and signal the group.
    #[serde(deserialize_with = "values::flag")]
    pub process_group: bool,
    /// Watch the config file and template dir and re-render on change.
    #[serde(deserialize_with = "values::flag")]
    pub watch: bool,
    pub reload: Reload,
    /// How often rotation conditions are checked.
    pub rotate_interval: Span,
    pub rotate: Vec<Rotate>,
    pub zeo: Zeo,
    pub zope: Zope,
    pub lb: Lb,
    /// Free template variables (`ZEOD_VAR_<NAME>`, or `[vars]`).
    pub vars: BTreeMap<String, String>,
}

/// Where one template is written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub output: PathBuf,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default)]
    pub owner: Option<Owner>,
}

fn default_mode() -> Mode {
    Mode(0o644)
}

/// What to do with the child when a rendered file changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReloadAction {
    /// Send `reload.signal` (haproxy -W reloads on SIGUSR2, nginx on SIGHUP).
    Signal,
    /// Stop the child (signal, grace, SIGKILL) and start it again: Zope
    /// reads zope.conf only at startup.
    Restart,
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reload {
    pub action: ReloadAction,
    pub signal: SignalName,
    /// The signal that stops the child, on restart and on our own SIGTERM.
    pub stop_signal: SignalName,
    /// Quiet time after the last file event before re-rendering.
    pub debounce: Span,
}

/// A log file the child writes, rotated by size and/or age.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    pub path: PathBuf,
    #[serde(default)]
    pub max_size: Option<Size>,
    #[serde(default)]
    pub every: Option<Span>,
    /// Rotated copies kept: `path.1` … `path.<keep>`.
    #[serde(default = "default_keep", deserialize_with = "values::number")]
    pub keep: u32,
    /// Tells the child to reopen its logs (runzeo: SIGUSR2). The default,
    /// `none`, suits Zope: its WatchedFileHandler notices by itself, and a
    /// WSGI Zope has no SIGUSR2 handler, so that signal would kill it.
    #[serde(default = "default_reopen")]
    pub signal: Reopen,
}

fn default_keep() -> u32 {
    5
}

fn default_reopen() -> Reopen {
    Reopen(None)
}

/// The ZEO client (`<zeoclient>` in zope.conf).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Zeo {
    pub address: Addresses,
    #[serde(deserialize_with = "values::text")]
    pub storage: String,
    pub cache_size: Size,
    pub blob_cache_size: Option<Size>,
    #[serde(deserialize_with = "values::flag")]
    pub shared_blob_dir: bool,
    pub blob_dir: PathBuf,
    #[serde(deserialize_with = "values::flag")]
    pub read_only: bool,
    #[serde(deserialize_with = "values::flag")]
    pub read_only_fallback: bool,
    #[serde(deserialize_with = "values::flag")]
    pub drop_cache_rather_verify: bool,
    /// Names the persistent client cache file; unset keeps it in memory.
    pub client_name: Option<String>,
    /// The storage's name in Zope's Control Panel and logs.
    pub name: String,
    /// How this client introduces itself in the server's log.
    pub client_label: Option<String>,
    /// Directory of the persistent client cache.
    pub var_dir: PathBuf,
}

/// The Zope instance (zope.conf main section, zope.ini).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Zope {
    pub listen_host: String,
    #[serde(deserialize_with = "values::number")]
    pub listen_port: u16,
    #[serde(deserialize_with = "values::number")]
    pub threads: u32,
    #[serde(deserialize_with = "values::number")]
    pub zodb_cache_size: u64,
    #[serde(deserialize_with = "values::flag")]
    pub debug_mode: bool,
    pub security_policy_implementation: String,
    #[serde(deserialize_with = "values::flag")]
    pub verbose_security: bool,
    pub default_zpublisher_encoding: String,
    pub form_memory_limit: Size,
    pub max_request_body_size: Size,
    pub instance_home: PathBuf,
    pub client_home: PathBuf,
    /// Event log file; unset logs to stderr. Written through Python's
    /// WatchedFileHandler, which reopens the file after a rotation.
    pub event_log: Option<PathBuf>,
    /// Access log file; unset logs to stdout.
    pub access_log: Option<PathBuf>,
    /// Chameleon's template cache; it must exist. Unset: no disk cache.
    pub chameleon_cache: Option<PathBuf>,
}

/// Client affinity of the load balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    None,
    /// By client address (`balance source`).
    Source,
    /// By a request header, `lb.affinity_header` (`balance hdr(Host)`).
    Header,
    /// By a cookie haproxy inserts, `lb.cookie`.
    Cookie,
}

/// The haproxy load balancer in front of the renderers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lb {
    #[serde(deserialize_with = "values::number")]
    pub listen_port: u16,
    /// DNS name that resolves to every renderer (a compose service name or
    /// a headless Kubernetes service).
    pub renderer_host: String,
    #[serde(deserialize_with = "values::number")]
    pub renderer_port: u16,
    /// Server slots `server-template` pre-allocates.
    #[serde(deserialize_with = "values::number")]
    pub renderer_slots: u32,
    /// Concurrent requests per renderer (Zope's worker threads).
    #[serde(deserialize_with = "values::number")]
    pub renderer_maxconn: u32,
    pub resolver: String,
    pub affinity: Affinity,
    pub affinity_header: String,
    pub cookie: String,
    pub health_path: String,
    pub health_interval: Span,
    #[serde(deserialize_with = "values::number")]
    pub retries: u32,
    /// Stats page port; 0 disables it.
    #[serde(deserialize_with = "values::number")]
    pub stats_port: u16,
    pub timeout_connect: Span,
    pub timeout_client: Span,
    pub timeout_server: Span,
    pub timeout_queue: Span,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            templates: PathBuf::from("/etc/zeod/templates"),
            output_dir: PathBuf::from("/app/etc"),
            render: BTreeMap::new(),
            required: vec!["zeo.address".to_owned()],
            // Below docker's 10 s stop timeout, so we still get to SIGKILL
            // the child and exit with its status ourselves.
            grace: Span(Duration::from_secs(8)),
            user: None,
            wait_for: Addresses::default(),
            wait_timeout: Span(Duration::from_secs(60)),
            subreaper: true,
            process_group: false,
            watch: true,
            reload: Reload::default(),
            rotate_interval: Span(Duration::from_secs(10)),
            rotate: Vec::new(),
            zeo: Zeo::default(),
            zope: Zope::default(),
            lb: Lb::default(),
            vars: BTreeMap::new(),
        }
    }
}

impl Default for Reload {
    fn default() -> Self {
        Reload {
            action: ReloadAction::Restart,
            signal: SignalName(Signal::SIGHUP),
            stop_signal: SignalName(Signal::SIGTERM),
            debounce: Span(Duration::from_millis(500)),
        }
    }
}

impl Default for Zeo {
    fn default() -> Self {
        // The defaults of plone/plone-backend's entrypoint.
        Zeo {
            address: Addresses::default(),
            storage: "1".to_owned(),
            cache_size: Size(128 << 20),
            blob_cache_size: None,
            shared_blob_dir: false,
            blob_dir: PathBuf::from("/data/blobstorage"),
            read_only: false,
            read_only_fallback: false,
            drop_cache_rather_verify: false,
            client_name: None,
            name: "zeostorage".to_owned(),
            client_label: None,
            var_dir: PathBuf::from("/data/cache"),
        }
    }
}

impl Default for Zope {
    fn default() -> Self {
        Zope {
            listen_host: "0.0.0.0".to_owned(),
            listen_port: 8080,
            threads: 2,
            zodb_cache_size: 50_000,
            debug_mode: false,
            security_policy_implementation: "C".to_owned(),
            verbose_security: false,
            default_zpublisher_encoding: "utf-8".to_owned(),
            form_memory_limit: Size(4 << 20),
            max_request_body_size: Size(1 << 30),
            instance_home: PathBuf::from("/app"),
            client_home: PathBuf::from("/data"),
            event_log: None,
            access_log: None,
            chameleon_cache: None,
        }
    }
}

impl Default for Lb {
    fn default() -> Self {
        Lb {
            listen_port: 8080,
            renderer_host: "renderer".to_owned(),
            renderer_port: 8080,
            renderer_slots: 10,
            renderer_maxconn: 2,
            resolver: "127.0.0.11:53".to_owned(),
            affinity: Affinity::None,
            affinity_header: "Host".to_owned(),
            cookie: "ZEODLB".to_owned(),
            health_path: "/ok".to_owned(),
            health_interval: Span(Duration::from_secs(2)),
            retries: 3,
            stats_port: 1936,
            timeout_connect: Span(Duration::from_secs(5)),
            timeout_client: Span(Duration::from_secs(300)),
            timeout_server: Span(Duration::from_secs(300)),
            timeout_queue: Span(Duration::from_secs(60)),
        }
    }
}

/// Why the settings could not be assembled. Each message starts with the
/// name of the variable (or file key) at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config file {path}: {source}")]
    ConfigUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
    #[error("{name}: required but not set")]
    Missing { name: String },
}

/// A snapshot of the process environment, so tests and re-renders read the
/// same variables the same way.
pub type Environment = Vec<(String, String)>;

/// Assembles the layers: defaults < `config` file < environment < command
/// line.
pub fn load(config: Option<&Path>, env: &Environment, cli: &Layer) -> Result<Settings, Error> {
    let mut figment = Figment::new();
    if let Some(path) = config {
        // Read it ourselves: figment's file providers treat a missing file
        // as empty, and a typo in --config must not go unnoticed.
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigUnreadable {
            path: path.to_owned(),
            source,
        })?;
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        let named = |m: Metadata| m.source(Source::File(path.to_owned()));
        figment = if yaml {
            figment.merge(Named(
                Yaml::string(&text),
                named(Metadata::named("YAML file")),
            ))
        } else {
            figment.merge(Named(
                Toml::string(&text),
                named(Metadata::named("TOML file")),
            ))
        };
    }
    figment = figment
        .merge(Layer::plone(env))
        .merge(Layer::prefixed(env))
        .merge(cli.clone());
    let settings: Settings = figment
        .extract()
        .map_err(|e| Error::Invalid(e.into_iter().map(describe).collect()))?;
    check_required(&settings)?;
    Ok(settings)
}

fn check_required(settings: &Settings) -> Result<(), Error> {
    let context = serde_json::to_value(settings).unwrap_or_default();
    for key in &settings.required {
        let value = key.split('.').try_fold(&context, |v, k| v.get(k));
        let empty = match value {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::String(s)) => s.is_empty(),
            Some(serde_json::Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
        if empty {
            return Err(Error::Missing {
                name: env_names(key).join(" or "),
            });
        }
    }
    Ok(())
}
