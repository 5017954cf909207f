//! Rendering the config templates with minijinja and writing the results
//! atomically (temp file in the target's directory, fsync, rename, fsync of
//! the directory), with the mode and owner asked. A target whose bytes,
//! mode and owner already match is left untouched, so a re-render that
//! changes nothing does not disturb the child.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use minijinja::{Environment, UndefinedBehavior};

use super::settings::{Settings, Target};
use super::values::{Mode, Size};

/// Files in the template dir that are documentation, not templates.
const NOT_TEMPLATES: &[&str] = &["README.md", "README"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("template dir {dir}: {source}")]
    TemplateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("template {name}: {source:#}")]
    Render {
        name: String,
        source: minijinja::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: output path has no file name or parent directory")]
    BadOutput { path: PathBuf },
}

/// The outcome of writing one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub template: String,
    pub output: PathBuf,
    pub changed: bool,
}

/// Renders every target. All templates render in memory first, so an
/// error in one leaves every output as it was.
pub fn render_all(settings: &Settings) -> Result<Vec<Rendered>, Error> {
    let targets = targets(settings)?;
    let mut env = Environment::new();
    env.set_loader(minijinja::path_loader(&settings.templates));
    // A misspelt variable must fail the render, not produce an empty line
    // that Zope would reject later, or worse, accept.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env.add_filter("bytes", bytes_filter);
    let context = minijinja::Value::from_serialize(context(settings));
    let mut outputs = Vec::with_capacity(targets.len());
    for (name, target) in &targets {
        let text = env
            .get_template(name)
            .and_then(|t| t.render(&context))
            .map_err(|source| Error::Render {
                name: name.clone(),
                source,
            })?;
        outputs.push((name, target, text));
    }
    outputs
        .into_iter()
        .map(|(name, target, text)| {
            let changed = write_atomic(target, text.as_bytes())?;
            Ok(Rendered {
                template: name.clone(),
                output: target.output.clone(),
                changed,
            })
        })
        .collect()
}

/// `{{ zope.max_request_body_size | bytes }}`: a size as a plain byte
/// count, for consumers that do not read `128MB` (waitress, haproxy).
fn bytes_filter(value: String) -> Result<u64, minijinja::Error> {
    Size::parse(&value).map(|s| s.0).ok_or_else(|| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("bytes: expected a size like 128MB, got '{value}'"),
        )
    })
}

/// The template context: every setting, `hostname`, and each `vars` entry
/// at the top level too (without shadowing a setting).
fn context(settings: &Settings) -> serde_json::Value {
    let mut context = serde_json::to_value(settings).unwrap_or_default();
    if let serde_json::Value::Object(map) = &mut context {
        let hostname = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        map.insert(
            "hostname".to_owned(),
            serde_json::Value::String(hostname.trim().to_owned()),
        );
        for (k, v) in &settings.vars {
            map.entry(k.clone())
                .or_insert_with(|| serde_json::Value::String(v.clone()));
        }
    }
    context
}

/// The explicit `render` map, or else every template file in the dir.
fn targets(settings: &Settings) -> Result<Vec<(String, Target)>, Error> {
    if !settings.render.is_empty() {
        return Ok(settings
            .render
            .iter()
            .map(|(name, target)| (name.clone(), target.clone()))
            .collect());
    }
    let dir_error = |source| Error::TemplateDir {
        dir: settings.templates.clone(),
        source,
    };
    let mut found = Vec::new();
    for entry in fs::read_dir(&settings.templates).map_err(dir_error)? {
        let entry = entry.map_err(dir_error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Dot entries include Kubernetes' `..data` machinery; `_` marks
        // partials meant for `{% include %}`.
        let is_file = fs::metadata(entry.path())
            .map(|m| m.is_file())
            .unwrap_or(false);
        if !is_file || name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if NOT_TEMPLATES.contains(&name.as_str()) {
            continue;
        }
        let output = settings.output_dir.join(&name);
        found.push((
            name,
            Target {
                output,
                mode: Mode(0o644),
                owner: None,
            },
        ));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Writes `bytes` to the target unless it already holds exactly them with
/// the asked mode and owner. Returns whether anything changed.
pub fn write_atomic(target: &Target, bytes: &[u8]) -> Result<bool, Error> {
    let path = &target.output;
    let io = |source| Error::Write {
        path: path.clone(),
        source,
    };
    if let (Ok(old), Ok(meta)) = (fs::read(path), fs::metadata(path)) {
        let same_owner = target
            .owner
            .is_none_or(|o| meta.uid() == o.uid && meta.gid() == o.gid);
        if old == bytes && meta.permissions().mode() & 0o7777 == target.mode.0 && same_owner {
            return Ok(false);
        }
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::BadOutput { path: path.clone() });
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.zeod-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(target.mode.0)
            .open(&tmp)?;
        file.write_all(bytes)?;
        // The umask narrowed the mode given to open(2).
        file.set_permissions(fs::Permissions::from_mode(target.mode.0))?;
        if let Some(owner) = target.owner {
            std::os::unix::fs::fchown(&file, Some(owner.uid), Some(owner.gid))?;
            // chown clears setuid/setgid bits; put the asked mode back.
            file.set_permissions(fs::Permissions::from_mode(target.mode.0))?;
        }
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)?;
    Ok(true)
}
