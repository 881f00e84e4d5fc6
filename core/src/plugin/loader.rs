//! Finding and opening plugin libraries.
//!
//! Like the original (spec §2.6), every `*.so` in the plugin directory whose
//! name does not start with `backend_` (or `libbackend_`, cargo's name for a
//! `backend_*` cdylib) is loaded at start-up, in name order, and its framings
//! join the registry (replacing built-ins of the same name). `-b NAME` loads
//! `backend_NAME.so` (or `libbackend_NAME.so`) from the same directory unless
//! an already loaded library registers a backend called NAME; a NAME with a
//! `/` or ending in `.so` is a path. `--plugin PATH` loads one library
//! explicitly.
//!
//! The directory is `--plugin-dir` / `[core] plugin-dir`, else the first
//! that exists of `<exe dir>/plugins`, `<exe dir>/../lib/websocksy`, the
//! compile-time `WEBSOCKSY_PLUGIN_DIR`, and `<exe dir>` itself (cargo puts a
//! workspace's cdylibs next to the binary). Only that last fallback is
//! lenient: a library there that fails to load is skipped with a log line,
//! since the build directory holds whatever was last built. Everywhere else
//! a failure is a one-line start-up error naming the file.
//!
//! Libraries are opened with `RTLD_NOW | RTLD_LOCAL` (a missing symbol fails
//! here, not mid-traffic) and are never closed: they are leaked, so nothing a
//! plugin handed out (descriptors, userdata, threads it started) can outlive
//! its code.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libloading::os::unix::{Library as UnixLibrary, RTLD_LOCAL, RTLD_NOW};
use libloading::Library;
use websocksy_abi::{wsy_entry_fn, WSY_ENTRY_SYMBOL, WSY_OK};

use super::backend::PluginBackend;
use super::framing::PluginFraming;
use super::host_api::{BackendDesc, ErrorSlot, FramingDesc, PluginCtx, HOST_API};
use super::{one_line, v1};
use crate::backend::Backend;
use crate::config::{BackendOption, Settings};
use crate::framing::Registry;

/// Names of the built-in backends.
pub const BUILTIN_BACKENDS: [&str; 2] = ["defaultpeer", "default"];

/// The directory plugins are discovered in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDir {
    pub path: PathBuf,
    /// Skip libraries that fail to load instead of failing start-up (only
    /// for the `<exe dir>` fallback).
    pub lenient: bool,
}

impl PluginDir {
    /// `configured` (which must exist), else the first default that exists.
    pub fn resolve(configured: Option<&Path>) -> Result<Option<PluginDir>, String> {
        if let Some(dir) = configured {
            return match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => Ok(Some(PluginDir {
                    path: dir.to_path_buf(),
                    lenient: false,
                })),
                Ok(_) => Err(format!(
                    "plugin directory '{}': not a directory",
                    dir.display()
                )),
                Err(e) => Err(format!("plugin directory '{}': {e}", dir.display())),
            };
        }
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf));
        let found = Self::defaults(exe_dir.as_deref())
            .into_iter()
            .find(|d| d.path.is_dir());
        match &found {
            Some(d) => log::debug!("plugin directory: {}", d.path.display()),
            None => log::debug!("no plugin directory (none of the defaults exists)"),
        }
        Ok(found)
    }

    /// The default directories, in order of preference.
    fn defaults(exe_dir: Option<&Path>) -> Vec<PluginDir> {
        let strict = |path: PathBuf| PluginDir {
            path,
            lenient: false,
        };
        let mut v = Vec::new();
        if let Some(e) = exe_dir {
            v.push(strict(e.join("plugins")));
            v.push(strict(e.join("..").join("lib").join("websocksy")));
        }
        if let Some(d) = option_env!("WEBSOCKSY_PLUGIN_DIR").filter(|d| !d.is_empty()) {
            v.push(strict(PathBuf::from(d)));
        }
        if let Some(e) = exe_dir {
            v.push(PluginDir {
                path: e.to_path_buf(),
                lenient: true,
            });
        }
        v
    }

    /// The libraries to load at start-up: `*.so` files that are not backends, by name.
    fn scan(&self) -> Result<Vec<PathBuf>, String> {
        let entries = std::fs::read_dir(&self.path)
            .map_err(|e| format!("plugin directory '{}': {e}", self.path.display()))?;
        let mut v: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
                    return false;
                };
                name.ends_with(".so")
                    && !name.starts_with('.')
                    && !name.starts_with("backend_")
                    && !name.starts_with("libbackend_")
                    && p.is_file()
            })
            .collect();
        v.sort();
        Ok(v)
    }
}

/// How `-b`/`backend =` names a backend.
#[derive(Debug, PartialEq, Eq)]
pub enum BackendRef<'a> {
    Builtin,
    Path(&'a Path),
    Name(&'a str),
}

impl<'a> BackendRef<'a> {
    pub fn of(name: &'a str) -> BackendRef<'a> {
        if BUILTIN_BACKENDS.contains(&name) {
            BackendRef::Builtin
        } else if name.contains('/') || name.ends_with(".so") {
            BackendRef::Path(Path::new(name))
        } else {
            BackendRef::Name(name)
        }
    }
}

enum Kind {
    /// An ABI 2 library and the backends it registered (its framings are in
    /// the registry).
    V2 {
        ctx: &'static PluginCtx,
        backends: Vec<BackendDesc>,
    },
    /// A version 1 library: framings registered from its constructors,
    /// and/or a v1 backend (`init`, `query`).
    V1,
}

struct Lib {
    path: PathBuf,
    /// Canonical path: the same file is loaded once.
    key: PathBuf,
    lib: &'static Library,
    kind: Kind,
}

/// A failure to load one library.
struct LoadError {
    msg: String,
    /// Not a plugin at all (for the lenient directory: a debug line, not a warning).
    foreign: bool,
}

impl LoadError {
    fn new(msg: String) -> LoadError {
        LoadError {
            msg,
            foreign: false,
        }
    }
}

/// The plugin libraries loaded at start-up. Libraries stay loaded until the
/// process exits, whatever happens to this value.
#[derive(Default)]
pub struct Plugins {
    dir: Option<PluginDir>,
    libs: Vec<Lib>,
    /// The library `-b` named (by path, or as `backend_NAME.so`).
    backend_lib: Option<usize>,
}

impl Plugins {
    /// Load the plugin directory's libraries, the `--plugin` ones, and the
    /// library of the backend `-b` names; register their framings into
    /// `registry`. Errors are one line naming the file.
    pub fn load(settings: &Settings, registry: &mut Registry) -> Result<Plugins, String> {
        let mut p = Plugins {
            dir: PluginDir::resolve(settings.plugin_dir.as_deref())?,
            ..Plugins::default()
        };
        if let Some(dir) = p.dir.clone() {
            for path in dir.scan()? {
                match p.open(&path, registry) {
                    Ok(_) => {}
                    Err(e) if dir.lenient && e.foreign => {
                        log::debug!("skipping {}: {}", path.display(), e.msg)
                    }
                    Err(e) if dir.lenient => log::warn!("skipping plugin: {}", e.msg),
                    Err(e) => return Err(e.msg),
                }
            }
        }
        for path in &settings.plugins {
            p.open(path, registry).map_err(|e| e.msg)?;
        }
        match BackendRef::of(&settings.backend) {
            BackendRef::Builtin => {}
            BackendRef::Path(path) => {
                let i = p.open(path, registry).map_err(|e| e.msg)?;
                p.backend_lib = Some(i);
            }
            BackendRef::Name(name) if p.registered_backend(name).is_some() => {}
            BackendRef::Name(name) => {
                let i = match p.backend_file(name) {
                    Ok(path) => p.open(&path, registry).map_err(|e| e.msg)?,
                    Err(e) => return Err(e),
                };
                p.backend_lib = Some(i);
            }
        }
        Ok(p)
    }

    /// `backend_NAME.so` or `libbackend_NAME.so` in the plugin directory.
    fn backend_file(&self, name: &str) -> Result<PathBuf, String> {
        let Some(dir) = &self.dir else {
            return Err(format!(
                "unknown backend '{name}' (built in: defaultpeer; no plugin directory, see --plugin-dir)"
            ));
        };
        let names = [
            format!("backend_{name}.so"),
            format!("libbackend_{name}.so"),
        ];
        names.iter().map(|n| dir.path.join(n)).find(|p| p.is_file()).ok_or_else(|| {
            format!(
                "unknown backend '{name}': no {} or {} in plugin directory '{}' (built in: defaultpeer)",
                names[0],
                names[1],
                dir.path.display()
            )
        })
    }

    /// The first loaded ABI 2 library's backend called `name`.
    fn registered_backend(&self, name: &str) -> Option<(&'static PluginCtx, &BackendDesc)> {
        self.libs.iter().find_map(|l| match &l.kind {
            Kind::V2 { ctx, backends } => {
                backends.iter().find(|b| b.name == name).map(|b| (*ctx, b))
            }
            Kind::V1 => None,
        })
    }

    /// Open one library (once per file), call its entry, register its framings.
    fn open(&mut self, path: &Path, registry: &mut Registry) -> Result<usize, LoadError> {
        // dlopen searches the library path for a name without '/'.
        let path = if path.components().count() == 1 && path.is_relative() {
            Path::new(".").join(path)
        } else {
            path.to_path_buf()
        };
        let shown = path.display().to_string();
        if let Err(e) = std::fs::metadata(&path) {
            return Err(LoadError::new(format!("cannot load plugin '{shown}': {e}")));
        }
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if let Some(i) = self.libs.iter().position(|l| l.key == key) {
            return Ok(i);
        }
        // SAFETY: loading a library runs its constructors; that is what
        // loading a plugin means. Only files the user pointed us at (the
        // plugin directory, --plugin, -b) are opened.
        let opened = unsafe { UnixLibrary::open(Some(&path), RTLD_NOW | RTLD_LOCAL) };
        // Taken even on failure: a constructor may have run.
        let v1_framings = v1::take_registered_framings();
        let lib: &'static Library = match opened {
            Ok(l) => Box::leak(Box::new(Library::from(l))),
            Err(e) => {
                return Err(LoadError {
                    msg: format!(
                        "cannot load plugin '{shown}': {}",
                        dl_message(&e.to_string(), &shown)
                    ),
                    foreign: true,
                })
            }
        };
        // SAFETY: the symbol is declared by the ABI as wsy_entry_fn.
        let entry = unsafe { lib.get::<wsy_entry_fn>(WSY_ENTRY_SYMBOL) }
            .ok()
            .map(|s| *s);
        let mut v2_framings = Vec::new();
        let kind = match entry {
            Some(entry) => {
                let (kind, framings) = call_entry(&path, entry)?;
                v2_framings = framings;
                kind
            }
            None => {
                // SAFETY: looking symbols up calls nothing.
                let v1_backend = unsafe {
                    lib.get::<*const ()>(b"init\0").is_ok()
                        && lib.get::<*const ()>(b"query\0").is_ok()
                };
                if v1_framings.is_empty() && !v1_backend {
                    return Err(LoadError {
                        msg: format!(
                            "{shown}: not a websocksy plugin (no {} symbol)",
                            entry_name()
                        ),
                        foreign: true,
                    });
                }
                Kind::V1
            }
        };
        let mut framings: Vec<String> = Vec::new();
        for (name, f) in v1_framings {
            replace_note(registry.register(&name, f).is_some(), &name, &shown);
            framings.push(name);
        }
        if let Kind::V2 { ctx, .. } = &kind {
            for desc in v2_framings {
                let name = desc.name.clone();
                replace_note(
                    registry
                        .register(&name, Arc::new(PluginFraming::new(desc, ctx)))
                        .is_some(),
                    &name,
                    &shown,
                );
                framings.push(name);
            }
        }
        let backends: Vec<&str> = match &kind {
            Kind::V2 { backends, .. } => backends.iter().map(|b| b.name.as_str()).collect(),
            Kind::V1 => Vec::new(),
        };
        log::debug!(
            "plugin {shown} ({}): framings [{}], backends [{}]",
            if matches!(kind, Kind::V1) { "v1" } else { "v2" },
            framings.join(", "),
            backends.join(", ")
        );
        self.libs.push(Lib {
            path,
            key,
            lib,
            kind,
        });
        Ok(self.libs.len() - 1)
    }

    /// Build the backend `-b` named, from the libraries loaded by
    /// [`Plugins::load`]: configure it with `options` and start it.
    pub fn create_backend(
        &self,
        name: &str,
        options: &[BackendOption],
        registry: &Registry,
    ) -> Result<Arc<dyn Backend>, String> {
        if let Some(lib) = self.backend_lib.and_then(|i| self.libs.get(i)) {
            let shown = lib.path.display();
            return match &lib.kind {
                Kind::V2 { ctx, backends } => {
                    let wanted = match BackendRef::of(name) {
                        BackendRef::Path(p) => backend_stem(p),
                        _ => name.to_string(),
                    };
                    let desc = match backends.as_slice() {
                        [] => return Err(format!("{shown}: the plugin registers no backend")),
                        [only] => only,
                        several => several.iter().find(|b| b.name == wanted).ok_or_else(|| {
                            let names: Vec<&str> =
                                several.iter().map(|b| b.name.as_str()).collect();
                            format!(
                                "{shown}: registers backends {}; none is called '{wanted}'",
                                names.join(", ")
                            )
                        })?,
                    };
                    Ok(Arc::new(PluginBackend::start(
                        desc.clone(),
                        ctx,
                        options,
                        registry,
                    )?))
                }
                Kind::V1 => match v1::backend(lib.lib, &lib.path, options, registry)? {
                    Some(b) => Ok(b),
                    None => Err(format!(
                        "{shown}: not a websocksy backend (it registers framings only)"
                    )),
                },
            };
        }
        match self.registered_backend(name) {
            Some((ctx, desc)) => Ok(Arc::new(PluginBackend::start(
                desc.clone(),
                ctx,
                options,
                registry,
            )?)),
            None => Err(format!("unknown backend '{name}' (built in: defaultpeer)")),
        }
    }
}

/// Call a library's entry; what it registered, or why it failed.
fn call_entry(path: &Path, entry: wsy_entry_fn) -> Result<(Kind, Vec<FramingDesc>), LoadError> {
    let shown = path.display();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let ctx = PluginCtx::leak(&stem, path.to_path_buf());
    let error = ErrorSlot::default();
    let status = ctx.registering(|| {
        // SAFETY: the library's entry, called once, on the main thread, with
        // a context and an error slot that outlive the call and the static
        // host table.
        unsafe { entry(ctx.as_ptr(), &HOST_API, error.as_ptr()) }
    });
    let (backends, framings, errors) = ctx.take();
    if let Some(e) = errors.first() {
        return Err(LoadError::new(format!("{shown}: {e}")));
    }
    if status != WSY_OK {
        return Err(LoadError::new(format!(
            "{shown}: plugin initialisation failed: {}",
            error.describe(status)
        )));
    }
    Ok((Kind::V2 { ctx, backends }, framings))
}

fn replace_note(replaced: bool, name: &str, shown: &str) {
    if replaced {
        log::info!("framing '{name}' from {shown} replaces the one registered before");
    }
}

/// The entry symbol's name, without its NUL.
fn entry_name() -> &'static str {
    std::str::from_utf8(&WSY_ENTRY_SYMBOL[..WSY_ENTRY_SYMBOL.len() - 1])
        .unwrap_or("websocksy_plugin_v2")
}

/// dlerror's text without the file name it usually starts with (we print it already).
fn dl_message(err: &str, shown: &str) -> String {
    let msg = err.trim();
    let msg = msg.strip_prefix("dlopen failed: ").unwrap_or(msg);
    let msg = msg
        .strip_prefix("An unknown error occurred: ")
        .unwrap_or(msg);
    let msg = msg.strip_prefix(&format!("{shown}: ")).unwrap_or(msg);
    one_line(msg)
}

/// `backend_NAME` / `libbackend_NAME` → `NAME` for a backend file's stem.
fn backend_stem(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = stem.strip_prefix("lib").unwrap_or(&stem).to_string();
    stem.strip_prefix("backend_").unwrap_or(&stem).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_refs() {
        assert_eq!(BackendRef::of("defaultpeer"), BackendRef::Builtin);
        assert_eq!(BackendRef::of("file"), BackendRef::Name("file"));
        assert_eq!(BackendRef::of("./x"), BackendRef::Path(Path::new("./x")));
        assert_eq!(
            BackendRef::of("backend_x.so"),
            BackendRef::Path(Path::new("backend_x.so"))
        );
        assert_eq!(backend_stem(Path::new("/a/libbackend_hello.so")), "hello");
        assert_eq!(backend_stem(Path::new("backend_x.so")), "x");
        assert_eq!(backend_stem(Path::new("mine.so")), "mine");
    }

    #[test]
    fn default_dirs_in_order() {
        let d = PluginDir::defaults(Some(Path::new("/opt/ws/bin")));
        let paths: Vec<_> = d
            .iter()
            .map(|d| (d.path.display().to_string(), d.lenient))
            .collect();
        assert_eq!(paths[0], ("/opt/ws/bin/plugins".to_string(), false));
        assert_eq!(
            paths[1],
            ("/opt/ws/bin/../lib/websocksy".to_string(), false)
        );
        assert_eq!(paths.last(), Some(&("/opt/ws/bin".to_string(), true)));
    }

    #[test]
    fn dl_messages_lose_the_repeated_path() {
        assert_eq!(
            dl_message("/t/x.so: invalid ELF header", "/t/x.so"),
            "invalid ELF header"
        );
        assert_eq!(dl_message("other: thing", "/t/x.so"), "other: thing");
    }

    #[test]
    fn missing_explicit_dir_is_an_error() {
        let e = PluginDir::resolve(Some(Path::new("/nonexistent/websocksy-plugins"))).unwrap_err();
        assert!(
            e.starts_with("plugin directory '/nonexistent/websocksy-plugins': "),
            "{e}"
        );
    }
}
