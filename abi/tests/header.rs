//! `include/websocksy.h` is the source of truth; this crate restates it in
//! Rust. These tests compile C and C++ programs against the header with the
//! system compiler (`$CC`, default `cc`; `$CXX`, default `c++`) and check:
//!
//! - every struct's size and alignment, and every field's offset and size,
//!   against `size_of`, `align_of` and `offset_of!` of the Rust mirror;
//! - every constant (ABI version, entry symbol, status codes, opcodes,
//!   flags, log levels) against the Rust constants;
//! - that nothing in the header is left out of the comparison: every
//!   `#define WSY_*` constant and every struct field is listed here;
//! - as C99, C11 (also with extra warnings) and C++11, each with
//!   `-Wall -Wextra -Werror -pedantic`;
//! - that the header can be included twice in one unit and in two units
//!   linked together, in C and in C++ (wasmtime's double-include test);
//! - that `WSY_STR` and `WSY_HAS_FIELD` compile and work in C and C++;
//! - that the example backend in the header's own comment compiles;
//! - that the ABI only grew by appending: the 2.0 header as it shipped
//!   (`tests/fixtures/abi-2.0/websocksy.h`) compiled, every 2.0 struct's
//!   fields keep their offsets and sizes, later fields start at or after the
//!   2.0 sizeof, and every 2.0 constant keeps its value.
//!
//! No compiler is a failure, not a skip: the header would go untested.

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of, MaybeUninit};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use websocksy_abi as abi;

/// `-Wall -Wextra -Werror -pedantic`, the flags every C example builds with.
const WARN: &[&str] = &["-Wall", "-Wextra", "-Werror", "-pedantic"];

/// More warnings for one C build: what a careful plugin author turns on
/// must not fire inside the header's macros.
const STRICT: &[&str] = &[
    "-Wconversion",
    "-Wsign-conversion",
    "-Wshadow",
    "-Wstrict-prototypes",
    "-Wmissing-prototypes",
    "-Wcast-qual",
    "-Wundef",
];

fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../include")
}

/// The ABI 2.0 header as it shipped, frozen.
fn abi20_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/abi-2.0")
}

fn header_text() -> String {
    std::fs::read_to_string(include_dir().join("websocksy.h")).expect("read include/websocksy.h")
}

/// A fresh directory for one compilation.
fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "header-{}-{}-{}",
        std::process::id(),
        tag,
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// `$VAR` split on whitespace (so `CC="ccache gcc"` works), else `default`.
fn compiler(var: &str, default: &str) -> Vec<String> {
    let v = std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let words: Vec<String> = v
        .as_deref()
        .unwrap_or(default)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let probe = Command::new(&words[0])
        .args(&words[1..])
        .arg("--version")
        .output();
    match probe {
        Ok(o) if o.status.success() => words,
        Ok(o) => panic!(
            "the compiler {words:?} (from ${var} or the default {default:?}) failed on --version: {}\n\
             These header tests need a working C and C++ compiler and fail rather than skip without one \
             (Debian: apt-get install -y build-essential).",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "no C/C++ compiler: could not run {words:?} (set ${var}, or install one, e.g. \
             apt-get install -y build-essential): {e}\n\
             These header tests fail rather than skip without a compiler: the header would go untested."
        ),
    }
}

fn cc() -> Vec<String> {
    compiler("CC", "cc")
}

fn cxx() -> Vec<String> {
    compiler("CXX", "c++")
}

/// Run `compiler flags... -I include files... -o out`; panic with the
/// compiler's output (and the sources) on failure.
fn compile(compiler: &[String], flags: &[&str], files: &[&Path], out: &Path) {
    compile_with(compiler, flags, &include_dir(), files, out)
}

/// [`compile`] against the header in `include`.
fn compile_with(compiler: &[String], flags: &[&str], include: &Path, files: &[&Path], out: &Path) {
    let mut cmd = Command::new(&compiler[0]);
    cmd.args(&compiler[1..])
        .args(flags)
        .arg("-I")
        .arg(include)
        .args(files)
        .arg("-o")
        .arg(out);
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !o.status.success() {
        let sources: String = files
            .iter()
            .map(|f| {
                format!(
                    "--- {}\n{}\n",
                    f.display(),
                    std::fs::read_to_string(f).unwrap_or_default()
                )
            })
            .collect();
        panic!(
            "compilation failed: {cmd:?}\n{}{}\n{sources}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Run a compiled test program; its stdout, or a panic with everything.
fn run(exe: &Path) -> String {
    let o = Command::new(exe)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", exe.display()));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "{} exited with {}\nstdout:\n{out}\nstderr:\n{}",
        exe.display(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

// ---------------------------------------------------------------------------
// The Rust side: what the C program must print.

struct Field {
    name: &'static str,
    offset: usize,
    size: usize,
}

struct Layout {
    name: &'static str,
    size: usize,
    align: usize,
    fields: Vec<Field>,
}

fn size_of_pointee<F>(_: *const F) -> usize {
    size_of::<F>()
}

/// Every struct of the header with every field, in declaration order.
macro_rules! layouts {
    ($($ty:ident { $($field:ident),* $(,)? })*) => {
        vec![$(Layout {
            name: stringify!($ty),
            size: size_of::<abi::$ty>(),
            align: align_of::<abi::$ty>(),
            fields: vec![$(Field {
                name: stringify!($field),
                offset: offset_of!(abi::$ty, $field),
                size: {
                    let u = MaybeUninit::<abi::$ty>::uninit();
                    // SAFETY: only the field's address is taken, nothing is read.
                    size_of_pointee(unsafe { std::ptr::addr_of!((*u.as_ptr()).$field) })
                },
            }),*],
        }),*]
    };
}

fn layouts() -> Vec<Layout> {
    layouts! {
        wsy_str { ptr, len }
        wsy_header { name, value }
        wsy_framing {
            size, abi_major, abi_minor, name, userdata, state_new, state_free, frame, finish,
            configure,
        }
        wsy_request {
            size, target, path, query, headers, header_count, protocols, protocol_count,
            client_address, tls, reserved, user, tls_subject, tls_sans, tls_san_count,
        }
        wsy_backend { size, abi_major, abi_minor, name, userdata, flags, configure, start, query, cleanup }
        wsy_host_api {
            size, abi_major, abi_minor, log, register_backend, register_framing, error_set,
            answer_peer, answer_framing, answer_protocol, answer_header, answer_reject,
            request_header, request_cookie, answer_hub,
        }
    }
}

/// Every integer constant of the header.
macro_rules! constants {
    ($($name:ident)*) => {
        vec![$((stringify!($name), i128::from(abi::$name))),*]
    };
}

fn constants() -> Vec<(&'static str, i128)> {
    constants! {
        WSY_ABI_MAJOR WSY_ABI_MINOR
        WSY_OK WSY_ERROR WSY_EINVAL WSY_EUNKNOWN_KEY WSY_EVERSION WSY_EEXIST WSY_ESTATE
        WSY_OPCODE_TEXT WSY_OPCODE_BINARY WSY_OPCODE_DISCARD
        WSY_BACKEND_NONBLOCKING
        WSY_LOG_ERROR WSY_LOG_WARN WSY_LOG_INFO WSY_LOG_DEBUG WSY_LOG_TRACE
    }
}

/// `key -> value` lines the C program must print, from the Rust mirror.
fn expected() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for l in layouts() {
        m.insert(format!("size {}", l.name), l.size.to_string());
        m.insert(format!("align {}", l.name), l.align.to_string());
        for f in &l.fields {
            m.insert(
                format!("offset {}.{}", l.name, f.name),
                f.offset.to_string(),
            );
            m.insert(
                format!("fieldsize {}.{}", l.name, f.name),
                f.size.to_string(),
            );
        }
    }
    for (name, value) in constants() {
        m.insert(format!("const {name}"), value.to_string());
    }
    let sym = abi::WSY_ENTRY_SYMBOL;
    assert_eq!(
        sym.last(),
        Some(&0),
        "WSY_ENTRY_SYMBOL must be NUL-terminated for dlsym"
    );
    let sym = std::str::from_utf8(&sym[..sym.len() - 1]).expect("entry symbol is UTF-8");
    m.insert("const WSY_ENTRY_SYMBOL".into(), sym.into());
    m
}

// ---------------------------------------------------------------------------
// The C side: one source, valid C99, C11 and C++11.

fn layout_program() -> String {
    let mut s = String::from(
        "/* generated by abi/tests/header.rs */\n\
         #include <stdio.h>\n\
         #include <string.h>\n\
         #include <stddef.h>\n\
         #include \"websocksy.h\"\n\n",
    );
    // Alignment without C11's _Alignof: the offset of T after one char.
    for l in layouts() {
        s += &format!("struct align_{0} {{ char c; {0} t; }};\n", l.name);
    }
    s += r#"
static int failures;

static void check(int ok, const char *what) {
    printf("check %s %s\n", what, ok ? "ok" : "FAILED");
    if (!ok) {
        failures++;
    }
}

static size_t str_len(wsy_str s) {
    return s.ptr == NULL ? (size_t)-1 : s.len;
}

/* The entry as the header documents it: must match wsy_entry_fn. */
static wsy_status entry(wsy_plugin *plugin, const wsy_host_api *host, wsy_error *error) {
    (void)plugin;
    (void)host;
    (void)error;
    return WSY_OK;
}

static void macros(void) {
    wsy_str s = WSY_STR("tcp://127.0.0.1:22");
    wsy_str e = WSY_STR("");
    wsy_request r;
    wsy_host_api h;
    wsy_framing fr;
    wsy_entry_fn f = entry;

    check(s.ptr != NULL && s.len == 18 && memcmp(s.ptr, "tcp://127.0.0.1:22", 18) == 0, "WSY_STR");
    check(e.ptr != NULL && e.len == 0, "WSY_STR_empty_is_present");
    check(str_len(WSY_STR("abc")) == 3, "WSY_STR_as_argument");

    memset(&r, 0, sizeof r);
    r.size = (uint32_t)sizeof r;
    check(WSY_HAS_FIELD(&r, wsy_request, tls), "WSY_HAS_FIELD_full_size");
    r.size = (uint32_t)offsetof(wsy_request, tls);
    check(!WSY_HAS_FIELD(&r, wsy_request, tls), "WSY_HAS_FIELD_older_struct_lacks_field");
    check(WSY_HAS_FIELD(&r, wsy_request, client_address), "WSY_HAS_FIELD_older_struct_has_earlier_field");
    r.size = (uint32_t)(offsetof(wsy_request, tls) + 1);
    check(!WSY_HAS_FIELD(&r, wsy_request, tls), "WSY_HAS_FIELD_partial_field_is_absent");

    /* A 2.0 host's request: sizeof ended at `reserved`. */
    r.size = (uint32_t)sizeof r;
    check(WSY_HAS_FIELD(&r, wsy_request, user) && WSY_HAS_FIELD(&r, wsy_request, tls_subject)
              && WSY_HAS_FIELD(&r, wsy_request, tls_sans) && WSY_HAS_FIELD(&r, wsy_request, tls_san_count),
          "WSY_HAS_FIELD_2_1_request_has_2_1_fields");
    r.size = (uint32_t)(offsetof(wsy_request, reserved) + sizeof r.reserved);
    check(WSY_HAS_FIELD(&r, wsy_request, tls) && WSY_HAS_FIELD(&r, wsy_request, reserved),
          "WSY_HAS_FIELD_2_0_request_has_2_0_fields");
    check(!WSY_HAS_FIELD(&r, wsy_request, user) && !WSY_HAS_FIELD(&r, wsy_request, tls_subject)
              && !WSY_HAS_FIELD(&r, wsy_request, tls_sans) && !WSY_HAS_FIELD(&r, wsy_request, tls_san_count),
          "WSY_HAS_FIELD_2_0_request_lacks_2_1_fields");
    r.size = (uint32_t)(offsetof(wsy_request, tls_san_count) + sizeof r.tls_san_count - 1);
    check(WSY_HAS_FIELD(&r, wsy_request, tls_sans) && !WSY_HAS_FIELD(&r, wsy_request, tls_san_count),
          "WSY_HAS_FIELD_partial_count_is_absent");

    memset(&h, 0, sizeof h);
    h.size = (uint32_t)offsetof(wsy_host_api, request_cookie);
    check(WSY_HAS_FIELD(&h, wsy_host_api, request_header), "WSY_HAS_FIELD_host_api_has");
    check(!WSY_HAS_FIELD(&h, wsy_host_api, request_cookie), "WSY_HAS_FIELD_host_api_lacks");
    /* A 2.0 or 2.1 host's table ends with request_cookie: no answer_hub. */
    h.size = (uint32_t)(offsetof(wsy_host_api, request_cookie) + sizeof h.request_cookie);
    check(WSY_HAS_FIELD(&h, wsy_host_api, request_cookie) && !WSY_HAS_FIELD(&h, wsy_host_api, answer_hub),
          "WSY_HAS_FIELD_2_1_host_api_lacks_answer_hub");
    h.size = (uint32_t)sizeof h;
    check(WSY_HAS_FIELD(&h, wsy_host_api, answer_hub), "WSY_HAS_FIELD_2_2_host_api_has_answer_hub");

    memset(&fr, 0, sizeof fr);
    fr.size = (uint32_t)offsetof(wsy_framing, configure);
    check(WSY_HAS_FIELD(&fr, wsy_framing, finish), "WSY_HAS_FIELD_framing_before_configure_has_finish");
    check(!WSY_HAS_FIELD(&fr, wsy_framing, configure), "WSY_HAS_FIELD_framing_before_configure_lacks_it");
    fr.size = (uint32_t)sizeof fr;
    check(WSY_HAS_FIELD(&fr, wsy_framing, configure), "WSY_HAS_FIELD_framing_has_configure");

    check(f(NULL, NULL, NULL) == WSY_OK, "wsy_entry_fn");
    check(strcmp(WSY_ENTRY_SYMBOL, "websocksy_plugin_v2") == 0, "WSY_ENTRY_SYMBOL_literal");
}

int main(void) {
"#;
    for l in layouts() {
        s += &format!(
            "    printf(\"size {0} %lu\\n\", (unsigned long)sizeof({0}));\n",
            l.name
        );
        s += &format!(
            "    printf(\"align {0} %lu\\n\", (unsigned long)offsetof(struct align_{0}, t));\n",
            l.name
        );
        for f in &l.fields {
            s += &format!(
                "    printf(\"offset {0}.{1} %lu\\n\", (unsigned long)offsetof({0}, {1}));\n",
                l.name, f.name
            );
            s += &format!(
                "    printf(\"fieldsize {0}.{1} %lu\\n\", (unsigned long)sizeof((({0} *)0)->{1}));\n",
                l.name, f.name
            );
        }
    }
    for (name, _) in constants() {
        s += &format!("    printf(\"const {name} %lld\\n\", (long long)({name}));\n");
    }
    s += "    printf(\"const WSY_ENTRY_SYMBOL %s\\n\", WSY_ENTRY_SYMBOL);\n";
    s += "    macros();\n    return failures == 0 ? 0 : 1;\n}\n";
    s
}

/// Build and run the layout program in one language mode; compare.
fn layout_matches(mode: &str, compiler: &[String], std: &str, ext: &str, extra: &[&str]) {
    let dir = scratch(mode);
    let src = dir.join(format!("layout.{ext}"));
    std::fs::write(&src, layout_program()).unwrap();
    let exe = dir.join("layout");
    let mut flags = vec![std];
    flags.extend_from_slice(WARN);
    flags.extend_from_slice(extra);
    compile(compiler, &flags, &[&src], &exe);
    let out = run(&exe);

    let mut got = BTreeMap::new();
    let mut problems = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("check ") {
            if !rest.ends_with(" ok") {
                problems.push(format!("C check failed: {rest}"));
            }
            continue;
        }
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("{mode}: odd line {line:?}"));
        got.insert(key.to_string(), value.to_string());
    }
    let want = expected();
    for (k, v) in &want {
        match got.get(k) {
            Some(g) if g == v => {}
            Some(g) => problems.push(format!("{k}: C says {g}, Rust says {v}")),
            None => problems.push(format!("{k}: not printed by the C program")),
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        problems.push(format!("{k}: printed by C but not expected"));
    }
    assert!(
        out.lines().filter(|l| l.starts_with("check ")).count() >= 10,
        "{mode}: macro checks did not run:\n{out}"
    );
    assert!(
        problems.is_empty(),
        "{mode}: the header and the Rust mirror disagree:\n  {}",
        problems.join("\n  ")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn layout_and_constants_match_as_c99() {
    layout_matches("c99", &cc(), "-std=c99", "c", &[]);
}

#[test]
fn layout_and_constants_match_as_c99_with_strict_warnings() {
    layout_matches("c99-strict", &cc(), "-std=c99", "c", STRICT);
}

#[test]
fn layout_and_constants_match_as_c11() {
    layout_matches("c11", &cc(), "-std=c11", "c", &[]);
}

#[test]
fn layout_and_constants_match_as_cxx11() {
    layout_matches("c++11", &cxx(), "-std=c++11", "cc", &[]);
}

// ---------------------------------------------------------------------------
// Double inclusion (wasmtime's double-include-a.cc / -b.cc).

const DOUBLE_A: &str = r#"/* unit a: the header twice */
#include "websocksy.h"
#include "websocksy.h"

int wsy_test_a(void);

int wsy_test_a(void) {
    wsy_str s = WSY_STR("aaa");
    wsy_framing f;
    f.size = (uint32_t)sizeof f;
    return (int)s.len + (f.size == sizeof(wsy_framing) ? 100 : 0);
}
"#;

const DOUBLE_B: &str = r#"/* unit b: the header once more, linked with unit a */
#include <stdio.h>
#include "websocksy.h"

int wsy_test_a(void);

int main(void) {
    wsy_str s = WSY_STR("bb");
    wsy_backend b;
    b.size = (uint32_t)sizeof b;
    printf("%d\n", wsy_test_a() + (int)s.len + (b.size == sizeof(wsy_backend) ? 1000 : 0) + WSY_ABI_MAJOR);
    return 0;
}
"#;

fn double_include(mode: &str, compiler: &[String], std: &str, ext: &str) {
    let dir = scratch(mode);
    let a = dir.join(format!("double-include-a.{ext}"));
    let b = dir.join(format!("double-include-b.{ext}"));
    std::fs::write(&a, DOUBLE_A).unwrap();
    std::fs::write(&b, DOUBLE_B).unwrap();
    let exe = dir.join("double-include");
    let mut flags = vec![std];
    flags.extend_from_slice(WARN);
    compile(compiler, &flags, &[&a, &b], &exe);
    // 3 + 100 (unit a) + 2 + 1000 + 2 (WSY_ABI_MAJOR)
    assert_eq!(run(&exe).trim(), "1107", "{mode}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn double_include_links_as_c99() {
    double_include("double-c99", &cc(), "-std=c99", "c");
}

#[test]
fn double_include_links_as_cxx11() {
    double_include("double-c++11", &cxx(), "-std=c++11", "cc");
}

// ---------------------------------------------------------------------------
// Completeness: nothing in the header escapes the comparison.

/// The header with its comments removed.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find("*/")
            .expect("unterminated comment in the header");
        rest = &rest[i + end + 2..];
    }
    out.push_str(rest);
    out
}

/// `typedef struct NAME { ... } NAME;` bodies: (NAME, field names in order).
fn header_structs(text: &str) -> Structs {
    let code = strip_comments(text);
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("typedef struct ") {
        rest = &rest[i + "typedef struct ".len()..];
        let head_end = rest
            .find(['{', ';'])
            .expect("typedef struct without { or ;");
        if rest.as_bytes()[head_end] == b';' {
            continue; // opaque: typedef struct wsy_plugin wsy_plugin;
        }
        let name = rest[..head_end].trim().to_string();
        let close = rest.find('}').expect("unterminated struct");
        let body = &rest[head_end + 1..close];
        let fields = body
            .split(';')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| {
                let ident = |s: &str| {
                    s.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                };
                match d.find("(*") {
                    Some(p) => ident(&d[p + 2..]),
                    None => {
                        let rev: String = d
                            .chars()
                            .rev()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        rev.chars().rev().collect()
                    }
                }
            })
            .collect();
        out.push((name, fields));
        rest = &rest[close..];
    }
    out
}

/// Object-like `#define WSY_*` macros (constants), minus markers.
fn header_constants(text: &str) -> Vec<String> {
    strip_comments(text)
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("#define "))
        .map(str::trim_start)
        .filter(|d| d.starts_with("WSY_"))
        .filter_map(|d| {
            let name: String = d
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let function_like = d[name.len()..].starts_with('(');
            (!function_like).then_some(name)
        })
        .filter(|n| n != "WSY_EXPORT" && n != "WSY_OWN")
        .collect()
}

#[test]
fn every_struct_field_and_constant_of_the_header_is_compared() {
    let text = header_text();
    let structs = header_structs(&text);
    let listed: Vec<(String, Vec<String>)> = layouts()
        .into_iter()
        .map(|l| {
            (
                l.name.to_string(),
                l.fields.iter().map(|f| f.name.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        structs, listed,
        "the structs of include/websocksy.h (left) are not those compared by abi/tests/header.rs (right)"
    );

    let mut in_header = header_constants(&text);
    in_header.sort();
    let mut compared: Vec<String> = constants().iter().map(|(n, _)| n.to_string()).collect();
    compared.push("WSY_ENTRY_SYMBOL".into());
    compared.sort();
    assert_eq!(
        in_header, compared,
        "the constants of include/websocksy.h (left) are not those compared by abi/tests/header.rs (right)"
    );
}

/// Structs the header knows end in padding (reported; see below).
const KNOWN_TAIL_PADDING: &[&str] = &[];

/// `size` is how a reader tells which fields the writer had. Bytes of tail
/// padding are counted in sizeof but hold no field, so a later minor that
/// appends a small field there keeps sizeof unchanged: WSY_HAS_FIELD would
/// then say an old writer set a field it never wrote. No struct should end
/// in padding (`wsy_request` once did: `uint32_t tls` then 4 bytes; `reserved` fills them).
#[test]
fn no_struct_ends_in_padding() {
    let mut padded = Vec::new();
    for l in layouts() {
        let last = l.fields.last().expect("a struct with fields");
        if last.offset + last.size != l.size {
            padded.push(l.name);
        }
    }
    let unexpected: Vec<_> = padded
        .iter()
        .filter(|n| !KNOWN_TAIL_PADDING.contains(n))
        .collect();
    assert!(
        unexpected.is_empty(),
        "these structs end in padding: {unexpected:?}"
    );
    if cfg!(target_pointer_width = "64") {
        let fixed: Vec<_> = KNOWN_TAIL_PADDING
            .iter()
            .filter(|n| !padded.contains(n))
            .collect();
        assert!(
            fixed.is_empty(),
            "{fixed:?} no longer end in padding: remove them from KNOWN_TAIL_PADDING"
        );
    }
}

// ---------------------------------------------------------------------------
// The header's own example.

/// The backend example in the header's leading comment, as C source.
fn header_example(text: &str) -> String {
    let start = text
        .find("Example: a backend in C")
        .expect("the header's example backend");
    let body = &text[start..];
    let end = body.find("*/").expect("end of the header's comment");
    body[..end]
        .lines()
        .filter_map(|l| l.strip_prefix(" *     "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn the_headers_example_backend_compiles() {
    let src = header_example(&header_text());
    assert!(
        src.contains("websocksy_plugin_v2"),
        "example not found:\n{src}"
    );
    let dir = scratch("example");
    let file = dir.join("hello.c");
    std::fs::write(&file, &src).unwrap();
    let mut flags = vec!["-std=c99"];
    flags.extend_from_slice(WARN);
    flags.extend_from_slice(&["-shared", "-fPIC"]);
    compile(&cc(), &flags, &[&file], &dir.join("backend_hello.so"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------
// Appending only: the 2.0 header against today's mirror.

/// Struct names with their field names, in declaration order.
type Structs = Vec<(String, Vec<String>)>;

/// The 2.0 header's structs, and their offsets, field sizes, struct sizes
/// and constants as the C compiler sees them: `key -> value` as in
/// [`expected`].
fn abi20_layout() -> (Structs, BTreeMap<String, String>) {
    let text = std::fs::read_to_string(abi20_dir().join("websocksy.h"))
        .expect("read tests/fixtures/abi-2.0/websocksy.h");
    let structs = header_structs(&text);
    let constants = header_constants(&text);
    let mut src = String::from(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"websocksy.h\"\nint main(void) {\n",
    );
    for (name, fields) in &structs {
        src += &format!("    printf(\"size {name} %lu\\n\", (unsigned long)sizeof({name}));\n");
        for f in fields {
            src += &format!(
                "    printf(\"offset {name}.{f} %lu\\n\", (unsigned long)offsetof({name}, {f}));\n"
            );
            src += &format!(
                "    printf(\"fieldsize {name}.{f} %lu\\n\", (unsigned long)sizeof((({name} *)0)->{f}));\n"
            );
        }
    }
    for c in &constants {
        if c == "WSY_ENTRY_SYMBOL" {
            src += "    printf(\"const WSY_ENTRY_SYMBOL %s\\n\", WSY_ENTRY_SYMBOL);\n";
        } else {
            src += &format!("    printf(\"const {c} %lld\\n\", (long long)({c}));\n");
        }
    }
    src += "    return 0;\n}\n";
    let dir = scratch("abi20");
    let file = dir.join("abi20.c");
    std::fs::write(&file, src).unwrap();
    let exe = dir.join("abi20");
    let mut flags = vec!["-std=c99"];
    flags.extend_from_slice(WARN);
    compile_with(&cc(), &flags, &abi20_dir(), &[&file], &exe);
    let out = run(&exe);
    let _ = std::fs::remove_dir_all(&dir);
    let values = out
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (structs, values)
}

#[test]
fn the_abi_only_grew_by_appending_since_2_0() {
    let (old_structs, old) = abi20_layout();
    assert_eq!(
        old_structs.len(),
        6,
        "the 2.0 header's structs: {old_structs:?}"
    );
    assert!(
        old.get("const WSY_ABI_MINOR").map(String::as_str) == Some("0"),
        "the fixture is not the 2.0 header"
    );
    let now = expected();
    let mut problems = Vec::new();
    let current = layouts();
    for (name, old_fields) in &old_structs {
        let Some(l) = current.iter().find(|l| l.name == name) else {
            problems.push(format!("struct {name} of 2.0 is gone"));
            continue;
        };
        let names: Vec<&str> = l.fields.iter().map(|f| f.name).collect();
        if names.len() < old_fields.len() || names[..old_fields.len()] != old_fields[..] {
            problems.push(format!(
                "{name}: the 2.0 fields {old_fields:?} are not the start of {names:?}"
            ));
            continue;
        }
        for key in old_fields.iter().flat_map(|f| {
            [
                format!("offset {name}.{f}"),
                format!("fieldsize {name}.{f}"),
            ]
        }) {
            if old.get(&key) != now.get(&key) {
                problems.push(format!(
                    "{key}: 2.0 {:?}, now {:?}",
                    old[&key],
                    now.get(&key)
                ));
            }
        }
        let old_size: usize = old[&format!("size {name}")].parse().unwrap();
        if old_size > l.size {
            problems.push(format!("{name} shrank: 2.0 {old_size}, now {}", l.size));
        }
        // A field appended inside the old sizeof (its tail padding) would
        // look present in an old writer's struct.
        if let Some(first_new) = l.fields.get(old_fields.len()) {
            if first_new.offset < old_size {
                problems.push(format!(
                    "{name}.{} at {} is inside 2.0's sizeof {old_size}",
                    first_new.name, first_new.offset
                ));
            }
        }
    }
    for (key, value) in old.iter().filter(|(k, _)| k.starts_with("const ")) {
        let v = now.get(key);
        if key == "const WSY_ABI_MINOR" {
            let newer = v.and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
            if newer == 0 {
                problems.push(format!("{key}: still {v:?}"));
            }
        } else if v != Some(value) {
            problems.push(format!("{key}: 2.0 {value}, now {v:?}"));
        }
    }
    assert_eq!(
        old.get("size wsy_request")
            .map(|s| s.parse::<usize>().unwrap()),
        Some(abi::wsy_request::SIZE_2_0),
        "wsy_request::SIZE_2_0 is not 2.0's sizeof"
    );
    assert!(
        problems.is_empty(),
        "ABI 2.0 and today's header disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// The fields 2.1 appended follow one another without padding, so
/// WSY_HAS_FIELD on any of them means exactly "a 2.1 host wrote it".
#[test]
fn the_2_1_request_fields_leave_no_holes() {
    let l = layouts()
        .into_iter()
        .find(|l| l.name == "wsy_request")
        .unwrap();
    let from = l.fields.iter().position(|f| f.name == "reserved").unwrap();
    let mut end = l.fields[from].offset;
    for f in &l.fields[from..] {
        assert_eq!(f.offset, end, "a hole before wsy_request.{}", f.name);
        end = f.offset + f.size;
    }
    assert_eq!(end, l.size, "wsy_request ends in padding");
    assert_eq!(
        offset_of!(abi::wsy_request, user),
        abi::wsy_request::SIZE_2_0
    );
}
