//! The configuration file: INI-like, `[core]` keys from the table in
//! `keys.rs`, `[backend]` and `[framing:NAME]` lines carried with their
//! file and line for the backend's or framing's own checks.

use std::path::Path;

use super::connect_keys::{self, Draft};
use super::values::framing_name_value;
use super::{keys, BackendOption, ConfigError, FramingOption, Origin, Settings, LOG_TARGET};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Section {
    Core,
    Backend,
    /// `[framing:NAME]`, holding NAME.
    Framing(String),
    /// `[connect]`: the last of `drafts`.
    Connect,
}

/// Far beyond any real configuration; without a limit, a huge file named
/// by mistake (or one that keeps growing, like a log) would eat memory.
const MAX_FILE_SIZE: u64 = 1 << 20;

/// Applies the file at `path` to `s`; each `[connect]` section is added
/// to `drafts`, to be checked once the command line is applied too.
pub(super) fn apply(
    s: &mut Settings,
    path: &Path,
    drafts: &mut Vec<Draft>,
) -> Result<(), ConfigError> {
    let name = path.display().to_string();
    let bytes = read_config_file(path)
        .map_err(|why| ConfigError(format!("cannot read config file '{name}': {why}")))?;
    apply_text(s, &name, &bytes, drafts)
}

/// Reads a regular file of at most [`MAX_FILE_SIZE`] bytes.
fn read_config_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    // Stat before opening: opening a FIFO blocks until a writer comes, and
    // the bridge would hang silently before it even listens.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    check_regular_file(&meta)?;
    // Non-blocking, in case the path became a FIFO since the stat; the
    // second check below then refuses it. Regular files ignore the flag.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    check_regular_file(&file.metadata().map_err(|e| e.to_string())?)?;
    read_bounded(file, MAX_FILE_SIZE)
}

fn check_regular_file(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() {
        if meta.len() > MAX_FILE_SIZE {
            return Err(too_large());
        }
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "of an unknown type"
    };
    Err(format!("not a regular file ({kind})"))
}

/// Reads at most `limit` bytes; the stat's size is only a hint, since a file
/// may grow after it (and files under /proc report 0).
fn read_bounded(r: impl std::io::Read, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// A file read at start-up that is not the configuration (credentials, an
/// opening message): at most `limit` bytes. Pipes are fine here, so that
/// `<(...)` works; a directory is refused by name rather than by errno.
pub(super) fn read_start_up_file(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    if std::fs::metadata(path).map_err(|e| e.to_string())?.is_dir() {
        return Err("a directory".into());
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(bytes)
}

fn too_large() -> String {
    format!(
        "larger than {} MiB, the limit for a configuration file",
        MAX_FILE_SIZE >> 20
    )
}

/// Applies the file's contents; `name` is only used in messages and origins.
fn apply_text(
    s: &mut Settings,
    name: &str,
    bytes: &[u8],
    drafts: &mut Vec<Draft>,
) -> Result<(), ConfigError> {
    // Editors on Windows may prepend a BOM, which would hide the first header.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut section = Section::Core;
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let at = Origin::File {
            path: name.to_string(),
            line: index + 1,
        };
        let line = std::str::from_utf8(raw)
            .map_err(|_| ConfigError(format!("{at}: not valid UTF-8")))?
            .trim_end();
        // Prefix match at column 0 like the original, so `[core] # x` works.
        if line.starts_with('[') {
            section =
                if line.starts_with("[core]") {
                    Section::Core
                } else if line.starts_with("[backend]") {
                    Section::Backend
                } else if line.starts_with("[connect]") {
                    drafts.push(Draft::section(name, index + 1));
                    Section::Connect
                } else if let Some(rest) = line.strip_prefix("[framing:") {
                    Section::Framing(framing_section_name(rest).map_err(|why| {
                        ConfigError(format!("{at}: invalid section '{line}': {why}"))
                    })?)
                } else {
                    return Err(ConfigError(format!(
                        "{at}: unknown section '{line}' \
                     (expected [core], [backend], [framing:NAME] or [connect], case-sensitive)"
                    )));
                };
            continue;
        }
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') || content.starts_with(';') {
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            if content.starts_with('[') {
                log::warn!(
                    target: LOG_TARGET,
                    "{at}: ignoring indented '{content}': section headers start in column 0"
                );
            } else {
                log::warn!(target: LOG_TARGET, "{at}: ignoring line without '='");
            }
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(ConfigError(format!("{at}: missing key before '='")));
        }
        match &section {
            Section::Core => match keys::find(key) {
                Some(k) => k.apply(s, value, &at).map_err(|reason| {
                    ConfigError(format!(
                        "{at}: invalid value '{}' for '{key}': {reason}",
                        k.shown(value)
                    ))
                })?,
                None => log::warn!(
                    target: LOG_TARGET,
                    "{at}: ignoring unknown [core] key '{key}'"
                ),
            },
            Section::Backend => s.backend_options.push(BackendOption {
                key: key.to_string(),
                value: value.to_string(),
                origin: at,
            }),
            Section::Framing(framing) => s.framing_options.push(FramingOption {
                framing: framing.clone(),
                key: key.to_string(),
                value: value.to_string(),
                origin: at,
            }),
            Section::Connect => {
                let Some(draft) = drafts.last_mut() else {
                    continue;
                };
                connect_line(draft, key, value, &at, index + 1)?;
            }
        }
    }
    Ok(())
}

/// One `key = value` of a `[connect]` section. Stricter than `[core]`,
/// which warns about unknown keys for the original's sake: a section is
/// new, so a misspelt option (`retry-intervall`) is an error rather than a
/// connection that silently runs with the default.
fn connect_line(
    d: &mut Draft,
    key: &str,
    value: &str,
    at: &Origin,
    line: usize,
) -> Result<(), ConfigError> {
    let Some(k) = connect_keys::find(key) else {
        return Err(ConfigError(format!(
            "{at}: unknown [connect] key '{key}' (see websocksy connect --help)"
        )));
    };
    // Two `url`s in one section are most likely a missing header: refused
    // rather than letting the last one win, as it does in [core].
    if let (false, Some(first)) = (k.repeatable, d.given_at(key)) {
        return Err(ConfigError(format!(
            "{at}: '{key}' given twice in one [connect] section (first on line {first}); \
             each connection starts with its own [connect] header"
        )));
    }
    k.apply(d, value, line).map_err(|why| {
        ConfigError(format!(
            "{at}: invalid value '{}' for '{key}': {why}",
            k.shown(value)
        ))
    })
}

/// NAME of a `[framing:NAME]` header, from what follows `[framing:`. Like
/// the other headers, anything after the `]` is ignored.
fn framing_section_name(rest: &str) -> Result<String, String> {
    let Some((name, _)) = rest.split_once(']') else {
        return Err("expected [framing:NAME]".into());
    };
    framing_name_value(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::*;
    use crate::config::*;

    #[test]
    fn spec_example_file_matches_its_equivalent_command_line() {
        let file = TempFile::new(SPEC_EXAMPLE.as_bytes());
        let path = file.path();
        let from_file = run(&[&path]);
        let from_cli = run(&[
            "-l",
            "127.0.0.1",
            "-p",
            "8951",
            "-k",
            "0",
            "-c",
            "host=tcp://127.0.0.1",
            "-c",
            "port=7951",
            "-c",
            "framing=newline",
            "-c",
            "framing-config=lf",
            "-c",
            "protocol=*",
        ]);
        // Only the origins (and the recorded file name) may differ.
        let strip = |s: &Settings| {
            let mut s = s.clone();
            s.config_file = None;
            for o in &mut s.backend_options {
                o.origin = Origin::Argument(String::new());
            }
            s
        };
        assert_eq!(strip(&from_file), strip(&from_cli));
        assert_eq!(from_file.config_file, Some(path.clone()));
        assert_eq!(from_file.ping, None);
        assert_eq!(
            from_file.backend_options,
            vec![
                file_opt("host", "tcp://127.0.0.1", &path, 6),
                file_opt("port", "7951", &path, 7),
                file_opt("framing", "newline", &path, 8),
                file_opt("framing-config", "lf", &path, 9),
                file_opt("protocol", "*", &path, 10),
            ]
        );
        assert_eq!(
            from_file.backend_options[0].origin.to_string(),
            format!("{path}:6")
        );
    }

    #[test]
    fn spec_file_backend_example_keeps_repeated_keys() {
        let file = TempFile::new(
            b"[core]\nport = 8000\nbackend = file\n\n[backend]\npath = files/\n\
              expression = %endpoint%.txt\nexpression = %cookie:session%.txt\n",
        );
        let s = run(&[&file.path()]);
        assert_eq!((s.port, s.backend.as_str()), (8000, "file"));
        let keys: Vec<_> = s
            .backend_options
            .iter()
            .map(|o| (o.key.as_str(), o.value.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("path", "files/"),
                ("expression", "%endpoint%.txt"),
                ("expression", "%cookie:session%.txt")
            ]
        );
    }

    #[test]
    fn crlf_file_works() {
        let file = TempFile::new(SPEC_EXAMPLE.replace('\n', "\r\n").as_bytes());
        let path = file.path();
        let s = run(&[&path]);
        assert_eq!(
            (s.port, s.listen.as_str(), s.ping),
            (8951, "127.0.0.1", None)
        );
        assert_eq!(s.backend_options[4], file_opt("protocol", "*", &path, 10));
    }

    #[test]
    fn comments_blank_and_equals_less_lines() {
        let file = TempFile::new(
            b"# top comment\n; port = 1\n\n   \t\n[backend] ; trailing text\n\
              # host = not-a-backend-key\n  ; framing = x\nhost=a\nno equals sign here\n\
              \x20 [core]\nport = 2\n",
        );
        let path = file.path();
        let s = run(&[&path]);
        // The indented `[core]` is not a header, so `port = 2` stays in [backend].
        assert_eq!(s.port, 8001);
        assert_eq!(
            s.backend_options,
            vec![
                file_opt("host", "a", &path, 8),
                file_opt("port", "2", &path, 11)
            ]
        );
    }

    #[test]
    fn section_headers() {
        let file = TempFile::new(b"[backend]\nport = 1\n[core]junk\nport = 2\n");
        let s = run(&[&file.path()]);
        assert_eq!(s.port, 2);
        assert_eq!(s.backend_options.len(), 1);

        let file = TempFile::new(b"[core]\nport = 2\n[Core]\nport = 3\n");
        let msg = fail(&[&file.path()]);
        assert_eq!(
            msg,
            format!(
                "{}:3: unknown section '[Core]' \
                 (expected [core], [backend], [framing:NAME] or [connect], case-sensitive)",
                file.path()
            )
        );
        let file = TempFile::new(b"[backendx]\n");
        assert!(fail(&[&file.path()]).contains(":1: unknown section '[backendx]'"));
    }

    #[test]
    fn framing_sections_and_flags_keep_order_and_origins() {
        let file = TempFile::new(
            b"[core]\nport = 1\n[framing:json]\nmax-depth = 4\n# invalid = binary\n\
              invalid = close\n[framing:semicolon] ; trailing text\nseparator = a=b\n\
              [backend]\nframing = json\n[framing:json]\nmax-depth=8\n",
        );
        let path = file.path();
        // The file's lines come first, wherever the file name stands.
        let s = run(&[
            "--framing-option",
            "json:max-depth=2",
            &path,
            "--framing-option=semicolon:k= a:b=c ",
        ]);
        assert_eq!(s.port, 1);
        assert_eq!(
            s.backend_options,
            vec![file_opt("framing", "json", &path, 10)]
        );
        let arg = |a: &str| Origin::Argument(a.into());
        assert_eq!(
            s.framing_options,
            vec![
                framing_opt("json", "max-depth", "4", at(&path, 4)),
                framing_opt("json", "invalid", "close", at(&path, 6)),
                framing_opt("semicolon", "separator", "a=b", at(&path, 8)),
                framing_opt("json", "max-depth", "8", at(&path, 12)),
                framing_opt(
                    "json",
                    "max-depth",
                    "2",
                    arg("--framing-option json:max-depth=2")
                ),
                framing_opt(
                    "semicolon",
                    "k",
                    " a:b=c ",
                    arg("--framing-option semicolon:k= a:b=c ")
                ),
            ]
        );
        assert_eq!(s.framing_options[2].origin.to_string(), format!("{path}:8"));
        assert_eq!(
            s.framing_options[4].origin.to_string(),
            "argument '--framing-option json:max-depth=2'"
        );
        assert!(run(&[]).framing_options.is_empty());
    }

    #[test]
    fn bad_framing_sections_name_file_and_line() {
        for (text, why) in [
            ("[framing:]\n", "the framing name is empty"),
            ("[framing:a b]\n", "the framing name 'a b' has spaces"),
            ("[framing:json\n", "expected [framing:NAME]"),
        ] {
            let file = TempFile::new(format!("[core]\n{text}").as_bytes());
            let header = text.trim_end();
            assert_eq!(
                fail(&[&file.path()]),
                format!("{}:2: invalid section '{header}': {why}", file.path())
            );
        }
        // Case-sensitive, like the others.
        let file = TempFile::new(b"[Framing:json]\n");
        assert!(fail(&[&file.path()]).contains(":1: unknown section '[Framing:json]'"));
        let file = TempFile::new(b"[framing:json]\n = 1\n");
        assert_eq!(
            fail(&[&file.path()]),
            format!("{}:2: missing key before '='", file.path())
        );
    }

    #[test]
    fn missing_file_names_path_and_os_error() {
        let file = TempFile::new(b"");
        let path = format!("{}.missing", file.path());
        let msg = fail(&[&path]);
        assert!(
            msg.starts_with(&format!("cannot read config file '{path}': ")),
            "{msg}"
        );
        assert!(msg.contains("os error"), "{msg}");
        let dir = std::env::temp_dir().display().to_string();
        assert!(fail(&[&dir]).starts_with("cannot read config file"));
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = std::env::temp_dir().display().to_string();
        assert_eq!(
            fail(&[&dir]),
            format!("cannot read config file '{dir}': not a regular file (a directory)")
        );
        assert_eq!(
            fail(&["/dev/null"]),
            "cannot read config file '/dev/null': not a regular file (a character device)"
        );
    }

    #[test]
    fn file_size_is_bounded() {
        let mut big = b"[core]\nport = 1\n".to_vec();
        big.resize(MAX_FILE_SIZE as usize, b'\n');
        let file = TempFile::new(&big);
        assert_eq!(run(&[&file.path()]).port, 1);
        big.push(b'\n');
        let file = TempFile::new(&big);
        assert_eq!(
            fail(&[&file.path()]),
            format!(
                "cannot read config file '{}': \
                 larger than 1 MiB, the limit for a configuration file",
                file.path()
            )
        );
        // A source that never ends (or grows after the stat) is cut off too.
        assert_eq!(read_bounded(std::io::repeat(b'#'), 10), Err(too_large()));
        assert_eq!(
            read_bounded(&b"0123456789"[..], 10),
            Ok(b"0123456789".to_vec())
        );
    }

    #[test]
    fn bom_and_empty_file() {
        let file = TempFile::new(b"\xEF\xBB\xBF[backend]\nhost = x\n");
        assert_eq!(run(&[&file.path()]).backend_options.len(), 1);
        let file = TempFile::new(b"");
        assert_eq!(run(&[&file.path()]).port, 8001);
    }
}
