//! The `file` backend: the peer for a request is read from a file whose name
//! is built from the request (the original websocksy's
//! `plugins/backend_file.c`, spec 3.2, without its defects).
//!
//! ```text
//! websocksy -b file -c path=/etc/websocksy/peers \
//!     -c 'expression=%endpoint%.txt' -c 'expression=%cookie:session%.txt' -c expression=default.txt
//! ```
//!
//! # Options
//!
//! - `path`: the directory the files are in. Required; must be a directory
//!   when websocksy starts.
//! - `expression`: a file name template relative to `path`; repeat it to try
//!   several in order. At least one is required. Variables:
//!   - `%endpoint%`: the request target (path and query string as sent, not
//!     decoded) without its leading `/` and without one trailing `/`:
//!     `/test` and `/test/` give `test`, `/a/b` gives `a_b`, `/test?x=1`
//!     gives `test?x=1`, `/` gives an empty string;
//!   - `%cookie:NAME%`: the value of cookie `NAME` (case-sensitive; found in
//!     any `Cookie` header, pairs separated by `;` with or without a space);
//!   - `%header:NAME%`: the value of the first header `NAME` (ASCII
//!     case-insensitive).
//!
//!   In every substituted value `/` (and NUL) becomes `_`, so a value is at
//!   most one path segment: `X-Foo: ../../etc` gives `.._.._etc`. Any other
//!   `%...` is kept literally. An unterminated `%cookie:`/`%header:` is a
//!   configuration error.
//! - `hub`: `on` makes every answer a fan-out hub (one peer connection
//!   shared by every client answered with the same peer; see the README);
//!   default `off`, where a line can still ask for one (below).
//!
//! Any other option is refused as unknown.
//!
//! # Per request
//!
//! The expressions are tried in order. One is skipped when a variable it
//! uses is missing or empty (no such cookie or header), when the file name
//! it gives would leave `path` (any `..` segment, whether written in the
//! expression or substituted, e.g. a header whose value is exactly `..`; the
//! name is checked component by component, never resolved against the
//! file system), or when no regular file of that name can be read. Symbolic
//! links inside `path` are followed: the directory is the administrator's.
//!
//! The first file that yields a line decides. Each line is
//!
//! ```text
//! PEER [SUBPROTOCOL [FRAMING [FRAMING-CONFIG...]]]
//! ```
//!
//! separated by single spaces; the config is the rest of the line and may
//! contain spaces (`tcp://h:1 p separator ; x` has config `; x`). Trailing
//! control characters (`\r`) are cut, trailing spaces kept. Blank lines and
//! lines starting with `#` are skipped (an addition; the original had no
//! comments).
//!
//! - If the client offered subprotocols, the first line whose SUBPROTOCOL is
//!   one of them wins and that offer is accepted; a SUBPROTOCOL of `*` wins
//!   and accepts the first offer. Matching is case-sensitive (`P1` does not
//!   match `p1`), as in the original; the client's spelling is echoed. Lines
//!   without a SUBPROTOCOL are skipped.
//! - If the client offered none, the first line wins whatever its
//!   SUBPROTOCOL, and none is accepted. A line that is only a PEER is fine
//!   (the original crashed on it).
//!
//! A PEER ending in `?hub` (`tcp://feed:9000?hub`, after any
//! `?proxy-protocol=`) asks for a fan-out hub: every client answered with
//! that peer shares one connection to it. It needs a host of ABI 2.2; an
//! older host fails the query (HTTP 500, logged).
//!
//! FRAMING selects the framing by name (default: the host's `auto`); a name
//! the host does not know is logged and `auto` is used, as the original did.
//! A PEER the host cannot parse fails the query (HTTP 500, logged).
//!
//! If no expression yields a line, the upgrade is refused with **404** `no
//! peer for this request` (the original answered 500, which reads as a
//! server fault; nothing is wrong with the server here).
//!
//! Files are read for every request, so edits apply at once. Reading blocks,
//! so queries run on the host's worker threads.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use websocksy_plugin::abi::WSY_EINVAL;
use websocksy_plugin::config::parse_bool;
use websocksy_plugin::{debug, warn, Answer, Backend, ConfigError, HostError, Request};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Endpoint,
    Cookie(String),
    Header(String),
}

/// A parsed `expression`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(i) = rest.find('%') {
            literal.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            let (part, next) = if let Some(r) = after.strip_prefix("endpoint%") {
                (Part::Endpoint, r)
            } else if let Some((kind, r)) = after
                .strip_prefix("cookie:")
                .map(|r| ("cookie", r))
                .or_else(|| after.strip_prefix("header:").map(|r| ("header", r)))
            {
                let end = r
                    .find('%')
                    .ok_or_else(|| format!("unterminated %{kind}: in expression {source:?}"))?;
                let name = &r[..end];
                if name.is_empty() {
                    return Err(format!("empty %{kind}:% name in expression {source:?}"));
                }
                let part = if kind == "cookie" {
                    Part::Cookie(name.to_owned())
                } else {
                    Part::Header(name.to_owned())
                };
                (part, &r[end + 1..])
            } else {
                literal.push('%');
                rest = after;
                continue;
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
            rest = next;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    /// The file name for this request; `None` when a variable is missing.
    fn expand(&self, request: &Request<'_>) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            let value = match part {
                Part::Literal(s) => {
                    out.push_str(s);
                    continue;
                }
                Part::Endpoint => endpoint(request.target())?,
                Part::Cookie(name) => request.cookie(name).filter(|v| !v.is_empty())?,
                Part::Header(name) => request.header(name).filter(|v| !v.is_empty())?,
            };
            out.extend(
                value
                    .chars()
                    .map(|c| if c == '/' || c == '\0' { '_' } else { c }),
            );
        }
        Some(out)
    }
}

/// `%endpoint%`: the target without its leading `/` and one trailing `/`.
fn endpoint(target: &str) -> Option<&str> {
    if target.is_empty() {
        return None;
    }
    let t = if target.len() >= 2 {
        target.strip_suffix('/').unwrap_or(target)
    } else {
        target
    };
    Some(t.strip_prefix('/').unwrap_or(t))
}

/// `base` joined with the relative name `name`, or `None` if it would leave
/// `base` or names `base` itself. Lexical: nothing is resolved.
fn confine(base: &Path, name: &str) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    let mut depth = 0usize;
    for c in Path::new(OsStr::from_bytes(name.as_bytes())).components() {
        match c {
            Component::Normal(s) => {
                out.push(s);
                depth += 1;
            }
            // `path + "/" + name`: a leading `/` is only a separator.
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (depth > 0).then_some(out)
}

/// One usable line of a peer file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line<'a> {
    peer: &'a str,
    subprotocol: Option<&'a str>,
    framing: Option<&'a str>,
    config: Option<&'a str>,
}

fn parse_line(raw: &str) -> Option<Line<'_>> {
    let line = raw
        .trim_end_matches(|c: char| c.is_ascii_control())
        .trim_start();
    if line.trim_end().is_empty() || line.starts_with('#') {
        return None;
    }
    let (peer, rest) = split(line);
    let (subprotocol, rest) = rest.map_or((None, None), |r| {
        let (s, r) = split(r);
        (Some(s), r)
    });
    let (framing, config) = rest.map_or((None, None), |r| {
        let (f, c) = split(r);
        (Some(f).filter(|f| !f.is_empty()), c)
    });
    Some(Line {
        peer,
        subprotocol,
        framing,
        config,
    })
}

fn split(s: &str) -> (&str, Option<&str>) {
    match s.split_once(' ') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

/// The winning line of `lines` for these offers, with the offer to accept.
fn select<'l>(
    lines: impl Iterator<Item = Line<'l>>,
    offers: &[&str],
) -> Option<(Line<'l>, Option<usize>)> {
    for line in lines {
        if offers.is_empty() {
            return Some((line, None));
        }
        let Some(sub) = line.subprotocol else {
            continue;
        };
        if sub == "*" {
            return Some((line, Some(0)));
        }
        if let Some(i) = offers.iter().position(|o| *o == sub) {
            return Some((line, Some(i)));
        }
    }
    None
}

/// The `file` backend.
#[derive(Debug, Default)]
pub struct FileBackend {
    path: Option<PathBuf>,
    expressions: Vec<Template>,
    /// Every answer is a hub (`hub = on`).
    hub: bool,
}

impl FileBackend {
    /// Try one file; `Ok(true)` if it answered.
    fn try_file(
        &self,
        file: &Path,
        offers: &[&str],
        answer: &mut Answer<'_>,
    ) -> Result<bool, String> {
        let f = match std::fs::File::open(file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                warn!("{}: {e}", file.display());
                return Ok(false);
            }
        };
        match f.metadata() {
            Ok(m) if m.is_file() => {}
            _ => return Ok(false),
        }
        let mut lines = Vec::new();
        for (n, l) in BufReader::new(f).split(b'\n').enumerate() {
            match l {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(s) => lines.push(s),
                    Err(_) => warn!("{}: line {} is not UTF-8, skipped", file.display(), n + 1),
                },
                Err(e) => {
                    warn!("{}: {e}", file.display());
                    break;
                }
            }
        }
        let Some((line, index)) = select(lines.iter().filter_map(|l| parse_line(l)), offers) else {
            return Ok(false);
        };
        debug!("{}: {line:?}", file.display());
        let (peer, hub) = match line.peer.strip_suffix("?hub") {
            Some(p) => (p, true),
            None => (line.peer, self.hub),
        };
        answer
            .peer(peer)
            .map_err(|e| format!("{}: peer {peer:?}: {e}", file.display()))?;
        if hub {
            answer
                .hub(true)
                .map_err(|e| format!("{}: hub for {peer:?}: {e}", file.display()))?;
        }
        if let Some(framing) = line.framing {
            match answer.framing(framing, line.config) {
                Ok(()) => {}
                Err(HostError(WSY_EINVAL)) => warn!(
                    "{}: unknown framing {framing:?}, using auto",
                    file.display()
                ),
                Err(e) => return Err(format!("{}: framing {framing:?}: {e}", file.display())),
            }
        }
        if let Some(i) = index {
            answer.protocol(i)?;
        }
        Ok(true)
    }
}

impl Backend for FileBackend {
    const NAME: &'static str = "file";

    fn configure(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "path" => {
                if value.is_empty() {
                    return Err(ConfigError::Invalid("path must not be empty".into()));
                }
                self.path = Some(PathBuf::from(value));
            }
            "expression" => self
                .expressions
                .push(Template::parse(value).map_err(ConfigError::Invalid)?),
            "hub" => self.hub = parse_bool(value).map_err(ConfigError::Invalid)?,
            _ => return Err(ConfigError::UnknownKey),
        }
        Ok(())
    }

    fn start(&mut self) -> Result<(), String> {
        let path = self
            .path
            .as_ref()
            .ok_or("option `path` (the directory of the peer files) is required")?;
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("path {} is not a directory", path.display())),
            Err(e) => return Err(format!("path {}: {e}", path.display())),
        }
        if self.expressions.is_empty() {
            return Err("at least one `expression` is required".into());
        }
        Ok(())
    }

    fn query(&self, request: &Request<'_>, answer: &mut Answer<'_>) -> Result<(), String> {
        let base = self.path.as_deref().ok_or("not started")?;
        let offers: Vec<&str> = request.protocols().collect();
        for t in &self.expressions {
            let Some(name) = t.expand(request) else {
                debug!("{:?}: a variable is missing", t.source);
                continue;
            };
            let Some(file) = confine(base, &name) else {
                debug!("{:?}: {name:?} would leave {}", t.source, base.display());
                continue;
            };
            if self.try_file(&file, &offers, answer)? {
                return Ok(());
            }
        }
        Ok(answer.reject(404, "no peer for this request")?)
    }
}

websocksy_plugin::export!(backends: [FileBackend::default()]);

#[cfg(test)]
mod tests;
