//! The layers the settings are assembled from, and how an error is traced
//! back to the variable it came from: the environment (plone's names, our
//! `ZEOD_INIT_*` and `ZEOD_VAR_*`) and the command line are `Layer`s of
//! strings that remember each value's name; a config file is wrapped in
//! `Named` so errors cite the file.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider, Source};

use super::Environment;

/// Environment names the plone/plone-backend and eeacms images document,
/// with the setting each one maps to.
pub const PLONE_ENV: &[(&str, &str)] = &[
    ("ZEO_ADDRESS", "zeo.address"),
    ("ZEO_STORAGE", "zeo.storage"),
    ("ZEO_CLIENT_CACHE_SIZE", "zeo.cache_size"),
    ("ZEO_CLIENT_BLOB_CACHE_SIZE", "zeo.blob_cache_size"),
    ("ZEO_SHARED_BLOB_DIR", "zeo.shared_blob_dir"),
    ("ZEO_READ_ONLY", "zeo.read_only"),
    ("ZEO_CLIENT_READ_ONLY_FALLBACK", "zeo.read_only_fallback"),
    (
        "ZEO_DROP_CACHE_RATHER_VERIFY",
        "zeo.drop_cache_rather_verify",
    ),
    ("ZEO_CLIENT_NAME", "zeo.client_name"),
    ("LISTEN_PORT", "zope.listen_port"),
    ("ZOPE_THREADS", "zope.threads"),
    ("ZODB_CACHE_SIZE", "zope.zodb_cache_size"),
    ("DEBUG_MODE", "zope.debug_mode"),
    (
        "SECURITY_POLICY_IMPLEMENTATION",
        "zope.security_policy_implementation",
    ),
    ("VERBOSE_SECURITY", "zope.verbose_security"),
    (
        "DEFAULT_ZPUBLISHER_ENCODING",
        "zope.default_zpublisher_encoding",
    ),
    ("ZOPE_FORM_MEMORY_LIMIT", "zope.form_memory_limit"),
];

/// Our own prefix; `ZEOD_INIT_ZEO__CACHE_SIZE` sets `zeo.cache_size`.
pub const PREFIX: &str = "ZEOD_INIT_";
/// Free template variables: `ZEOD_VAR_SITE_ID` is `vars.site_id`.
pub const VAR_PREFIX: &str = "ZEOD_VAR_";
/// `ZEOD_INIT_*` names read by the command line, not by these layers.
const CLI_ONLY: &[&str] = &["ZEOD_INIT_CONFIG", "ZEOD_INIT_LOG_FORMAT"];

/// Renders one figment error as `<variable>: <what was wrong>`.
pub(super) fn describe(e: figment::Error) -> String {
    let mut path = e.path.clone();
    if let figment::error::Kind::UnknownField(field, _) = &e.kind {
        path.push(field.clone());
    }
    let message = match &e.kind {
        figment::error::Kind::Message(m) => m.clone(),
        figment::error::Kind::UnknownField(_, expected) => {
            format!("unknown setting (expected one of: {})", expected.join(", "))
        }
        other => other.to_string(),
    };
    let profile = e.profile.clone().unwrap_or(Profile::Default);
    let name = match &e.metadata {
        Some(md) => match &md.source {
            Some(Source::File(file)) => format!("{} in {}", path.join("."), file.display()),
            _ => md.interpolate(&profile, &path),
        },
        None => path.join("."),
    };
    format!("{name}: {message}")
}

/// Every environment name that sets the dotted `key`, plone's first.
pub fn env_names(key: &str) -> Vec<String> {
    let mut names: Vec<String> = PLONE_ENV
        .iter()
        .filter(|(_, k)| *k == key)
        .map(|(name, _)| (*name).to_owned())
        .collect();
    names.push(prefixed_name(&key.split('.').collect::<Vec<_>>()));
    names
}

fn prefixed_name(path: &[&str]) -> String {
    match path {
        ["vars", name] => format!("{VAR_PREFIX}{}", name.to_ascii_uppercase()),
        _ => format!("{PREFIX}{}", path.join("__").to_ascii_uppercase()),
    }
}

/// A figment provider given a metadata of our choosing, so errors point at
/// the file the value came from.
pub(super) struct Named<P>(pub P, pub Metadata);

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        self.1.clone()
    }
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.0.data()
    }
}

/// One layer of string values (environment or command line): each entry
/// is the name it was given under, the settings path it sets, and its
/// value. Values stay strings; `values` parses them.
#[derive(Debug, Clone)]
pub struct Layer {
    name: &'static str,
    entries: Vec<(String, Vec<String>, String)>,
}

impl Layer {
    /// The command-line options: (option, dotted settings key, value).
    pub fn command_line(options: Vec<(&str, &str, String)>) -> Layer {
        let entries = options
            .into_iter()
            .map(|(option, key, value)| {
                let path = key.split('.').map(str::to_owned).collect();
                (option.to_owned(), path, value)
            })
            .collect();
        Layer {
            name: "command line",
            entries,
        }
    }

    pub(super) fn plone(env: &Environment) -> Layer {
        let entries = env
            .iter()
            .filter_map(|(name, value)| {
                let (_, key) = PLONE_ENV.iter().find(|(n, _)| n == name)?;
                let path = key.split('.').map(str::to_owned).collect();
                Some((name.clone(), path, value.clone()))
            })
            .collect();
        Layer {
            name: "plone environment variable",
            entries,
        }
    }

    pub(super) fn prefixed(env: &Environment) -> Layer {
        let entries = env
            .iter()
            .filter(|(name, _)| !CLI_ONLY.contains(&name.as_str()))
            .filter_map(|(name, value)| {
                let path: Vec<String> = if let Some(var) = name.strip_prefix(VAR_PREFIX) {
                    vec!["vars".to_owned(), var.to_ascii_lowercase()]
                } else {
                    let rest = name.strip_prefix(PREFIX)?;
                    rest.split("__").map(str::to_ascii_lowercase).collect()
                };
                (!path.iter().any(String::is_empty)).then(|| (name.clone(), path, value.clone()))
            })
            .collect();
        Layer {
            name: "ZEOD environment variable",
            entries,
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let names: Vec<(Vec<String>, String)> = self
            .entries
            .iter()
            .map(|(name, path, _)| (path.clone(), name.clone()))
            .collect();
        Metadata::named(self.name).interpolater(move |_: &Profile, keys: &[&str]| {
            // The variable that set this path or a parent of it.
            names
                .iter()
                .filter(|(path, _)| {
                    path.len() <= keys.len() && path.iter().zip(keys).all(|(p, k)| p == k)
                })
                .max_by_key(|(path, _)| path.len())
                .map(|(_, name)| name.clone())
                .unwrap_or_else(|| prefixed_name(keys))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (_, path, value) in &self.entries {
            let leaf = Value::from(value.clone());
            let nested = path.iter().rev().fold(leaf, |acc, key| {
                Value::from(Dict::from([(key.clone(), acc)]))
            });
            if let Value::Dict(_, d) = nested {
                dict = merge(dict, d);
            }
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn merge(mut into: Dict, from: Dict) -> Dict {
    for (k, v) in from {
        match (into.remove(&k), v) {
            (Some(Value::Dict(tag, a)), Value::Dict(_, b)) => {
                into.insert(k, Value::Dict(tag, merge(a, b)));
            }
            (_, v) => {
                into.insert(k, v);
            }
        }
    }
    into
}
