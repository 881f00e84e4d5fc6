//! Turns the results of `bench/run.sh` into BENCHMARKS.md.
//!
//! Results file: one line per run, tab separated:
//! `scenario  tool  run  key=value key=value ...` (or `error=...`).
//! Meta file: `key<TAB>value` lines. Commands file: copied verbatim.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;

const TOOLS: [&str; 3] = ["websocksy", "websocat", "websockify"];

struct Run {
    run: u32,
    kv: BTreeMap<String, String>,
}

struct Results {
    /// (scenario, tool) -> runs in order.
    runs: BTreeMap<(String, String), Vec<Run>>,
}

impl Results {
    fn parse(text: &str) -> Results {
        let mut runs: BTreeMap<(String, String), Vec<Run>> = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut f = line.splitn(4, '\t');
            let (Some(sc), Some(tool), Some(run), rest) = (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let mut kv = BTreeMap::new();
            let rest = rest.unwrap_or("");
            if let Some(e) = rest.strip_prefix("error=") {
                kv.insert("error".to_string(), e.trim().to_string());
            } else {
                for pair in rest.split_whitespace() {
                    if let Some((k, v)) = pair.split_once('=') {
                        kv.insert(k.to_string(), v.to_string());
                    }
                }
            }
            runs.entry((sc.to_string(), tool.to_string()))
                .or_default()
                .push(Run {
                    run: run.parse().unwrap_or(0),
                    kv,
                });
        }
        Results { runs }
    }

    fn ok_runs(&self, sc: &str, tool: &str, key: &str) -> Vec<&Run> {
        let mut v: Vec<&Run> = self
            .runs
            .get(&(sc.to_string(), tool.to_string()))
            .map(|r| r.iter().filter(|r| num(r, key).is_some()).collect())
            .unwrap_or_default();
        v.sort_by(|a, b| num(a, key).unwrap().total_cmp(&num(b, key).unwrap()));
        v
    }

    /// The run whose `key` is the median of the successful runs.
    fn median(&self, sc: &str, tool: &str, key: &str) -> Option<&Run> {
        let v = self.ok_runs(sc, tool, key);
        if v.is_empty() {
            None
        } else {
            Some(v[(v.len() - 1) / 2])
        }
    }

    fn errors(&self, sc: &str, tool: &str) -> Vec<String> {
        self.runs
            .get(&(sc.to_string(), tool.to_string()))
            .map(|r| {
                r.iter()
                    .filter_map(|r| r.kv.get("error").map(|e| format!("run {}: {e}", r.run)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `a / b / c` of `key` over all runs, in run order.
    fn all_runs(&self, sc: &str, tool: &str, key: &str) -> String {
        self.runs
            .get(&(sc.to_string(), tool.to_string()))
            .map(|r| {
                r.iter()
                    .map(|r| r.kv.get(key).cloned().unwrap_or_else(|| "failed".into()))
                    .collect::<Vec<_>>()
                    .join(" / ")
            })
            .unwrap_or_else(|| "not run".into())
    }
}

fn num(r: &Run, key: &str) -> Option<f64> {
    r.kv.get(key).and_then(|v| v.parse::<f64>().ok())
}

fn fmt_num(v: f64) -> String {
    if v >= 10000.0 {
        let s = format!("{:.0}", v);
        // thousands separators for readability
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push('\u{202f}');
            }
            out.push(c);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

/// One table row: a label, the value of `key` in each tool's median run
/// (chosen by `by`), and websocksy's ratio to the two others.
fn row(res: &Results, sc: &str, by: &str, key: &str, label: &str, scale: f64) -> String {
    row_with(res, sc, by, key, label, scale, true)
}

/// A row of counts, where a ratio means nothing.
fn count_row(res: &Results, sc: &str, by: &str, key: &str, label: &str) -> String {
    row_with(res, sc, by, key, label, 1.0, false)
}

fn row_with(
    res: &Results,
    sc: &str,
    by: &str,
    key: &str,
    label: &str,
    scale: f64,
    ratios: bool,
) -> String {
    let vals: Vec<Option<f64>> = TOOLS
        .iter()
        .map(|t| {
            res.median(sc, t, by)
                .and_then(|r| num(r, key))
                .map(|v| v * scale)
        })
        .collect();
    let cells: Vec<String> = vals
        .iter()
        .map(|v| v.map(fmt_num).unwrap_or_else(|| "failed".into()))
        .collect();
    format!(
        "| {label} | {} | {} | {} | {} | {} |\n",
        cells[0],
        cells[1],
        cells[2],
        if ratios {
            ratio(vals[0], vals[1])
        } else {
            String::new()
        },
        if ratios {
            ratio(vals[0], vals[2])
        } else {
            String::new()
        },
    )
}

/// A row computed from each tool's median run.
fn derived_row(
    res: &Results,
    sc: &str,
    by: &str,
    label: &str,
    f: impl Fn(&Run) -> Option<f64>,
) -> String {
    let vals: Vec<Option<f64>> = TOOLS
        .iter()
        .map(|t| res.median(sc, t, by).and_then(&f))
        .collect();
    let cells: Vec<String> = vals
        .iter()
        .map(|v| v.map(fmt_num).unwrap_or_else(|| "–".into()))
        .collect();
    format!(
        "| {label} | {} | {} | {} | {} | {} |\n",
        cells[0],
        cells[1],
        cells[2],
        ratio(vals[0], vals[1]),
        ratio(vals[0], vals[2])
    )
}

/// Bridge CPU microseconds per unit of `count_key`.
fn cpu_us_per(count_key: &'static str) -> impl Fn(&Run) -> Option<f64> {
    move |r| {
        let c = num(r, "bridge_cpu_s")?;
        let n = num(r, count_key)?;
        (n > 0.0).then(|| c * 1e6 / n)
    }
}

/// MiB moved per second of bridge CPU time.
fn mib_per_cpu_s(r: &Run) -> Option<f64> {
    let c = num(r, "bridge_cpu_s")?;
    let m = num(r, "total_mib")?;
    (c > 0.0).then(|| m / c)
}

const HEAD: &str = "| | websocksy | websocat | websockify | websocksy ÷ websocat | websocksy ÷ websockify |\n|---|---:|---:|---:|---:|---:|\n";

fn runs_line(res: &Results, sc: &str, key: &str, unit: &str) -> String {
    let mut s = format!("All runs ({key}{unit}): ");
    let parts: Vec<String> = TOOLS
        .iter()
        .map(|t| format!("{t} {}", res.all_runs(sc, t, key)))
        .collect();
    s.push_str(&parts.join("; "));
    s.push_str(".\n");
    for t in TOOLS {
        for e in res.errors(sc, t) {
            let _ = writeln!(s, "\n{t} failed: `{e}`");
        }
    }
    s
}

fn get(res: &Results, sc: &str, tool: &str, by: &str, key: &str) -> Option<f64> {
    res.median(sc, tool, by).and_then(|r| num(r, key))
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "**not met**",
        None => "no data",
    }
}

fn read_meta(meta_path: &str) -> io::Result<BTreeMap<String, String>> {
    Ok(fs::read_to_string(meta_path)?
        .lines()
        .filter_map(|l| {
            l.split_once('\t')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect())
}

/// The columns of the client-mode section: the two bridges that have a
/// client mode, and the same TCP client without a bridge.
const CLIENT_COLS: [&str; 3] = ["websocksy", "websocat", "direct"];

/// Bridge CPU seconds per GiB moved.
fn cpu_s_per_gib(r: &Run) -> Option<f64> {
    let c = num(r, "bridge_cpu_s")?;
    let gib = num(r, "total_mib")? / 1024.0;
    (gib > 0.0).then(|| c / gib)
}

/// One row of the client-mode table: `f` of each column's median run
/// (chosen by `by`; `f` also gets the column's name), and websocksy ÷
/// websocat. A column with a median run but no value (the floor has no
/// bridge CPU) shows "–".
fn client_row(
    res: &Results,
    sc: &str,
    by: &str,
    label: &str,
    f: impl Fn(&str, &Run) -> Option<f64>,
) -> String {
    let vals: Vec<Option<f64>> = CLIENT_COLS
        .iter()
        .map(|t| res.median(sc, t, by).and_then(|r| f(t, r)))
        .collect();
    let cells: Vec<String> = CLIENT_COLS
        .iter()
        .zip(&vals)
        .map(|(t, v)| match v {
            Some(v) => fmt_num(*v),
            None if res.median(sc, t, by).is_some() => "–".into(),
            None if res.runs.contains_key(&(sc.to_string(), t.to_string())) => "failed".into(),
            None => "not run".into(),
        })
        .collect();
    format!(
        "| {label} | {} | {} | {} | {} |\n",
        cells[0],
        cells[1],
        cells[2],
        ratio(vals[0], vals[1])
    )
}

/// Section 7: websocksy as a WebSocket client (`websocksy connect`) next
/// to websocat as one, and the plain-TCP floor.
fn render_client(res: &Results, m: &dyn Fn(&str) -> String, commands: Option<&str>) -> String {
    let mut o = String::new();
    let scenarios = ["client-latency", "client-upload", "client-download"];
    let _ = write!(
        o,
        "## 7. Client mode: `websocksy connect` against websocat as a client\n\n"
    );
    if !res
        .runs
        .keys()
        .any(|(sc, _)| scenarios.contains(&sc.as_str()))
    {
        o += "Not run (bench/run.sh without the client-latency, client-upload and client-download \
              scenarios).\n\n";
        return o;
    }
    let size = m("lat_size");
    let _ = write!(
        o,
        "The bridge the other way round: a plain TCP client (`wsbench tcp-latency`, `tcp-upload`, \
         `tcp-download`) connects to the bridge's local TCP port, the bridge opens one WebSocket \
         connection per TCP connection to a WebSocket server (`wsbench ws-serve`: echo, sink or \
         source) and carries the bytes over it, masking every frame it sends as a client must. \
         Commands: websocksy `{wc}` (its port from its `listening on tcp-listen://...` log line), \
         websocat `{cc}` (a free port, then `wsbench wait`). websockify has no client mode and is \
         not in this section. The floor (\"direct TCP\") is the same TCP client straight to the TCP \
         peers of sections 1-5 (`wsbench serve`: echo, sink, source), no bridge and no WebSocket. \
         Fresh processes for every run; {runs} runs, medians as above; nothing pinned to a core, \
         as in section 1.\n\n\
         - Round trip: {count} sequential round trips of {size} bytes after {warm} warm-up ones. The \
           client writes {size} bytes, the bridge sends them as a binary message, the WebSocket echo \
           server sends each frame back as it came (so one {size}-byte message), the bridge writes \
           its payload to TCP and the client reads all {size} bytes back and checks them.\n\
         - Upload (local → server): the client writes an 8-byte count, then {up} MiB in {chunk}-byte \
           writes; each bridge cuts the byte stream into messages as it reads it; the WebSocket sink \
           takes the payloads as one byte stream and, once the counted bytes are in, answers a \
           one-byte message, which the bridge writes back to the client. The clock stops when the \
           client has that byte.\n\
         - Download (server → local): the client writes an 8-byte count; the WebSocket source \
           then sends {down} MiB in binary messages of {msg} bytes (a realistic bulk size, the \
           size of section 2's largest) and closes with 1000; the clock stops when the client has \
           read them all. The TCP source of the floor ignores the count and streams.\n\
         - Bridge CPU: as in the other sections (user + system of the bridge process, from \
           `/proc/PID/stat`), per round trip or per GiB.\n\n\
         | | websocksy connect | websocat (client) | direct TCP (floor) | websocksy ÷ websocat |\n\
         |---|---:|---:|---:|---:|\n",
        wc = m("websocksy_client_cmd"),
        cc = m("websocat_client_cmd"),
        runs = m("runs"),
        count = m("lat_count"),
        warm = m("warmup"),
        up = m("client_upload_mib"),
        chunk = m("client_chunk"),
        down = m("client_download_mib"),
        msg = m("client_msg"),
    );
    let lat = "client-latency";
    for (key, what) in [
        ("median_us", "median"),
        ("p99_us", "p99"),
        ("p999_us", "p99.9"),
        ("mean_us", "mean"),
    ] {
        o += &client_row(
            res,
            lat,
            "median_us",
            &format!("round trip, {size} B: {what} µs"),
            |_, r| num(r, key),
        );
    }
    let floor = res
        .median(lat, "direct", "median_us")
        .and_then(|r| num(r, "median_us"));
    o += &client_row(
        res,
        lat,
        "median_us",
        "round trip: median added by the bridge (median − floor median), µs",
        |t, r| {
            if t == "direct" {
                None
            } else {
                num(r, "median_us").zip(floor).map(|(a, b)| a - b)
            }
        },
    );
    o += &client_row(
        res,
        lat,
        "median_us",
        "round trip: bridge CPU µs per round trip",
        |_, r| cpu_us_per("count")(r),
    );
    let up = "client-upload";
    let down = "client-download";
    o += &client_row(
        res,
        up,
        "mib_s",
        &format!(
            "upload (local → server), {} MiB: MiB/s",
            m("client_upload_mib")
        ),
        |_, r| num(r, "mib_s"),
    );
    o += &client_row(res, up, "mib_s", "upload: bridge CPU s per GiB", |_, r| {
        cpu_s_per_gib(r)
    });
    o += &client_row(
        res,
        down,
        "mib_s",
        &format!(
            "download (server → local), {} MiB: MiB/s",
            m("client_download_mib")
        ),
        |_, r| num(r, "mib_s"),
    );
    o += &client_row(
        res,
        down,
        "mib_s",
        "download: bridge CPU s per GiB",
        |_, r| cpu_s_per_gib(r),
    );
    o += "\n";
    for (sc, key, unit) in [
        (lat, "median_us", " µs"),
        (up, "mib_s", " MiB/s"),
        (down, "mib_s", " MiB/s"),
    ] {
        let parts: Vec<String> = CLIENT_COLS
            .iter()
            .map(|t| format!("{t} {}", res.all_runs(sc, t, key)))
            .collect();
        let _ = writeln!(o, "{sc}: all runs ({key}{unit}): {}.\n", parts.join("; "));
        for t in CLIENT_COLS {
            for e in res.errors(sc, t) {
                let _ = writeln!(o, "{t} {sc} failed: `{e}`\n");
            }
        }
    }

    // The same bridge in its two roles, from this run.
    let med = |sc: &str, by: &str, f: &dyn Fn(&Run) -> Option<f64>| {
        res.median(sc, "websocksy", by).and_then(f)
    };
    let cell = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "–".into());
    let _ = write!(
        o,
        "websocksy in its two roles, from this run (server mode: sections 1 and 3; in client \
         mode it masks every byte it sends and reads unmasked frames, the other way round from \
         server mode):\n\n\
         | websocksy | server mode | client mode | client ÷ server |\n|---|---:|---:|---:|\n"
    );
    let pairs: [(&str, Option<f64>, Option<f64>); 4] = [
        (
            "round trip median, µs (server: latency; client: client-latency)",
            med("latency", "median_us", &|r| num(r, "median_us")),
            med(lat, "median_us", &|r| num(r, "median_us")),
        ),
        (
            "round trip, bridge CPU µs each",
            med("latency", "median_us", &cpu_us_per("count")),
            med(lat, "median_us", &cpu_us_per("count")),
        ),
        (
            "TCP → WebSocket, MiB/s (server: source, peer → client; client: client-upload)",
            med("source", "mib_s", &|r| num(r, "mib_s")),
            med(up, "mib_s", &|r| num(r, "mib_s")),
        ),
        (
            "TCP → WebSocket, bridge CPU s per GiB",
            med("source", "mib_s", &cpu_s_per_gib),
            med(up, "mib_s", &cpu_s_per_gib),
        ),
    ];
    for (label, a, b) in pairs {
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} |",
            cell(a),
            cell(b),
            ratio(b, a)
        );
    }
    o += "\nWebSocket → TCP (client-download) has no one-way counterpart among sections 1-5; \
          the closest is section 6's upload over `ws://` (bench/tls.sh, another run).\n\n";
    if let Some(c) = commands {
        let _ = write!(o, "Reproduce:\n\n```sh\n{c}```\n\n");
    }
    o
}

/// A value of one column's run: `None` when the run has no such value.
type Cell<'a> = &'a dyn Fn(&Run) -> Option<f64>;

/// A table over any columns (`(tool as recorded, header)`): for each row,
/// `f` of each column's median run (chosen by `by`), then the ratios
/// `(a, b)` of columns a ÷ b. A column that ran but has no value shows
/// "–", one whose runs all failed "failed", one not run "not run".
fn cols_table(
    res: &Results,
    sc: &str,
    by: &str,
    cols: &[(&str, String)],
    ratios: &[(usize, usize)],
    rows: &[(String, Cell)],
) -> String {
    let mut o = String::from("| |");
    for (_, h) in cols {
        let _ = write!(o, " {h} |");
    }
    for (a, b) in ratios {
        let _ = write!(o, " {} ÷ {} |", cols[*a].1, cols[*b].1);
    }
    o += "\n|---|";
    o += &"---:|".repeat(cols.len() + ratios.len());
    o += "\n";
    for (label, f) in rows {
        let vals: Vec<Option<f64>> = cols
            .iter()
            .map(|(t, _)| res.median(sc, t, by).and_then(f))
            .collect();
        let _ = write!(o, "| {label} |");
        for ((t, _), v) in cols.iter().zip(&vals) {
            let c = match v {
                Some(v) => fmt_num(*v),
                None if res.median(sc, t, by).is_some() => "–".into(),
                None if res.runs.contains_key(&(sc.to_string(), t.to_string())) => "failed".into(),
                None => "not run".into(),
            };
            let _ = write!(o, " {c} |");
        }
        for (a, b) in ratios {
            let _ = write!(o, " {} |", ratio(vals[*a], vals[*b]));
        }
        o += "\n";
    }
    o
}

/// A table's columns (tool as recorded, header) and its ratios (a ÷ b).
type Cols = (Vec<(&'static str, String)>, Vec<(usize, usize)>);

/// The three bridges and the floor, websocksy ÷ websocat and ÷ the floor.
fn floor_cols() -> Cols {
    (
        vec![
            ("websocksy", "websocksy".into()),
            ("websocat", "websocat".into()),
            ("websockify", "websockify".into()),
            ("direct", "direct TCP".into()),
        ],
        vec![(0, 1), (0, 3)],
    )
}

/// All runs of `key` for `tools`, and every failure.
fn runs_line_of(res: &Results, sc: &str, tools: &[&str], key: &str, unit: &str) -> String {
    let parts: Vec<String> = tools
        .iter()
        .map(|t| format!("{t} {}", res.all_runs(sc, t, key)))
        .collect();
    let mut s = format!("{sc}: all runs ({key}{unit}): {}.\n", parts.join("; "));
    for t in tools {
        for e in res.errors(sc, t) {
            let _ = writeln!(s, "\n{t} {sc} failed: `{e}`");
        }
    }
    s
}

/// Bridge CPU seconds over wall seconds: how many cores the bridge kept
/// busy on average.
fn cores_busy(r: &Run) -> Option<f64> {
    let c = num(r, "bridge_cpu_s")?;
    let s = num(r, "secs")?;
    (s > 0.0).then(|| c / s)
}

/// Bridge CPU over the round trips' total time (count × mean).
fn latency_busy(r: &Run) -> Option<f64> {
    let c = num(r, "bridge_cpu_s")?;
    let t = num(r, "count")? * num(r, "mean_us")? / 1e6;
    (t > 0.0).then(|| c / t)
}

/// The thread counts the many scenario ran websocksy with, from the meta.
fn many_threads(m: &dyn Fn(&str) -> String) -> Vec<String> {
    m("many_threads")
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

// What bounds each row of issue 9's table: the mechanism, from the
// profiles in bench/ANALYSIS.md ("Issue 9") and bench/HOTPATH-NOTES.md.
// The figures beside them are this run's.
const WHY_P50: &str = "_What bounds it: the kernel._ A direct round trip is two loopback sends \
    and two wake-ups; through a bridge it is four of each, plus the bridge's two `epoll_wait` \
    calls, so about 2× direct is where any relay in a process of its own starts. websocksy's \
    share is six system calls per round trip (two `epoll_wait`, two reads, a `writev`, a \
    `sendto`; `strace -c`) and about 4,500 user-space instructions (section 8): over 90 % of \
    its CPU is system time. Tried: the two reads that could only return EAGAIN are gone \
    (8 → 6 calls), nothing allocates per message, and spinning instead of sleeping \
    (`--busy-poll`) cannot help on one CPU, where the reply needs the CPU the spin holds.";
const WHY_P99: &str = "_What bounds it: scheduling._ With three processes on one CPU, a round \
    trip's tail is the time one of them waits behind the others (direct TCP has the same \
    hiccups at p99.9). Unpinned, the wake-up of an idle vCPU dominates instead, and \
    `--busy-poll auto` (off by default) halves websocksy's median (Analysis, \"Issue 9\").";
const WHY_DOWN: &str = "_What bounds it: the kernel's copies._ Each read of the peer (up to \
    64 KiB) is one `writev` of frame header and payload to the client with no copy in user \
    space (user time about 0.02 s per GiB); every byte is copied into and out of the bridge \
    by the kernel, twice the direct path's work. 256 KiB reads cut the calls by four and \
    changed neither rate nor CPU; `splice` and `MSG_ZEROCOPY`: Analysis, \"Issue 9\".";
const WHY_UP: &str = "_What bounds it: the kernel's copies._ A 64 KiB message is one read \
    into a pooled 64 KiB buffer and one send; unmasking, eight bytes at a time, is within \
    the 0.04-0.06 s of user time per GiB.";
const WHY_CPU: &str = "_What bounds it: the kernel._ User time is under a tenth of the \
    total; what is left to cut is the kernel's copying (see the download row).";
const WHY_UPGRADES: &str = "_What bounds it: the clients._ The client threads connecting \
    at once, the peer's threads and the bridge share 2 cores; the bridge's CPU per upgrade \
    (accept, handshake, connecting the peer) is a fraction of the wall time per upgrade.";
const WHY_MEMORY: &str = "_What bounds it: the session's own state_ (its two sockets, \
    framing state, timers, the handshake's headers it keeps for the backend): an idle \
    connection owns no I/O buffer; both input buffers and the output queue's spill buffer \
    go back to the loop's pool when empty.";
const WHY_CORES: &str = "_What bounds it: the machine._ With 2 cores and the clients and \
    peers on them, no loop has a core to itself, so a second loop only moves where the \
    bridge's share runs; `--threads` spreads sessions with no lock on the per-message \
    path, and the scaling it allows needs cores the load generators do not use.";

/// Issue 9's table, computed from this run: its rows, with direct TCP,
/// websocat, websocksy, the target and whether it is met, then what bounds
/// each row.
fn render_issue9(res: &Results, m: &dyn Fn(&str) -> String) -> String {
    let mut o = String::new();
    let f = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "–".into());
    let pct = |v: Option<f64>| {
        v.map(|x| format!("{:.0} %", 100.0 * x))
            .unwrap_or_else(|| "?".into())
    };
    let val = |sc: &str, t: &str, by: &str, key: &str| get(res, sc, t, by, key);
    let ok = |c: Option<bool>| verdict(c);
    let size = m("lat_size");
    let _ = write!(
        o,
        "## Issue 9 table\n\n\
         Issue 9's rows from this run (medians of {runs} runs; each row's scenario is in the \
         sections below). \"Pinned\": the TCP echo peer, the bridge and the client each started \
         under `taskset -c {pin}`, so all three share one CPU. Direct TCP is the same client \
         straight to the TCP peer, no bridge and no WebSocket. Download: the TCP source peer \
         streams through the bridge (`wsbench source`; floor `wsbench tcp-download`); upload: \
         {umsg}-byte messages into the TCP sink peer (`wsbench upload`; floor `wsbench tcp-upload` \
         in {umsg}-byte writes). Bridge CPU is user + system time from `/proc`.\n\n\
         | scenario | direct TCP, no bridge | websocat | websocksy | target | met? |\n\
         |---|---:|---:|---:|---|---|\n",
        runs = m("runs"),
        pin = m("pin_cpu"),
        umsg = m("upload_msg"),
    );
    let mut bounds: Vec<String> = Vec::new();

    // Round trip, pinned.
    let lp = "latency-pinned";
    let (d, c, s) = (
        val(lp, "direct", "median_us", "median_us"),
        val(lp, "websocat", "median_us", "median_us"),
        val(lp, "websocksy", "median_us", "median_us"),
    );
    let met = match (d, c, s) {
        (Some(d), Some(c), Some(s)) => Some(s <= 2.0 * d && s <= 0.65 * c),
        _ => None,
    };
    let _ = writeln!(
        o,
        "| echo round trip, {size} B, p50 pinned | {} µs | {} µs | {} µs | ≤ 2× direct and ≤ 0.65× websocat ({} direct, {} websocat) | {} |",
        f(d),
        f(c),
        f(s),
        ratio(s, d),
        ratio(s, c),
        ok(met)
    );
    let cpu_rt = |t: &str| res.median(lp, t, "median_us").and_then(cpu_us_per("count"));
    let busy = |t: &str| res.median(lp, t, "median_us").and_then(latency_busy);
    bounds.push(format!(
        "**p50 pinned**: websocksy adds {} µs to the direct round trip, websocat {} µs; the bridge's \
         CPU per round trip is {} µs for websocksy ({} of its round trip), {} µs for websocat \
         ({}); with all three processes on one CPU the rest is the client, the peer and the \
         kernel's loopback path. {WHY_P50}",
        f(s.zip(d).map(|(a, b)| a - b)),
        f(c.zip(d).map(|(a, b)| a - b)),
        f(cpu_rt("websocksy")),
        pct(busy("websocksy")),
        f(cpu_rt("websocat")),
        pct(busy("websocat")),
    ));
    let (d, c, s) = (
        val(lp, "direct", "p99_us", "p99_us"),
        val(lp, "websocat", "p99_us", "p99_us"),
        val(lp, "websocksy", "p99_us", "p99_us"),
    );
    let _ = writeln!(
        o,
        "| echo round trip, p99 pinned | {} µs | {} µs | {} µs | ≤ 0.6× websocat ({}) | {} |",
        f(d),
        f(c),
        f(s),
        ratio(s, c),
        ok(s.zip(c).map(|(s, c)| s <= 0.6 * c))
    );
    let p999 = |t: &str| val(lp, t, "p999_us", "p999_us");
    bounds.push(format!(
        "**p99 pinned**: p99.9 is {} µs direct, {} µs websocat, {} µs websocksy; unpinned (section 1) \
         the p50 / p99 are direct {} / {} µs, websocat {} / {} µs, websocksy {} / {} µs. {WHY_P99}",
        f(p999("direct")),
        f(p999("websocat")),
        f(p999("websocksy")),
        f(val("latency", "direct", "median_us", "median_us")),
        f(val("latency", "direct", "p99_us", "p99_us")),
        f(val("latency", "websocat", "median_us", "median_us")),
        f(val("latency", "websocat", "p99_us", "p99_us")),
        f(val("latency", "websocksy", "median_us", "median_us")),
        f(val("latency", "websocksy", "p99_us", "p99_us")),
    ));

    // Download and upload.
    let gib = |sc: &str, t: &str| val(sc, t, "mib_s", "mib_s").map(|v| v / 1024.0);
    let busy_t = |sc: &str, t: &str| res.median(sc, t, "mib_s").and_then(cores_busy);
    let sys_share = |sc: &str, t: &str| {
        res.median(sc, t, "mib_s").and_then(|r| {
            let c = num(r, "bridge_cpu_s")?;
            (c > 0.0).then(|| num(r, "bridge_sys_s").map(|s| s / c))?
        })
    };
    let bound_of = |b: Option<f64>| {
        match b {
        Some(b) if b >= 0.9 => "its one loop was busy nearly all the time: the bridge bounds it",
        Some(_) => "the bridge had time to spare: the client, the peer and the kernel (sharing the cores) bound it",
        None => "no CPU figure",
    }
    };
    for (sc, label, target, up) in [
        (
            "source",
            format!("download (peer → client), {} MiB", m("source_mib")),
            "≥ 0.5× direct and ≥ 1.4× websocat",
            false,
        ),
        (
            "upload",
            format!(
                "upload (client → peer), {} KiB messages, {} MiB",
                m("upload_msg")
                    .parse::<u64>()
                    .map_or("?".into(), |b| (b / 1024).to_string()),
                m("upload_mib")
            ),
            "≥ 0.5× direct",
            true,
        ),
    ] {
        let (d, c, s) = (gib(sc, "direct"), gib(sc, "websocat"), gib(sc, "websocksy"));
        let met = if up {
            s.zip(d).map(|(s, d)| s >= 0.5 * d)
        } else {
            match (d, c, s) {
                (Some(d), Some(c), Some(s)) => Some(s >= 0.5 * d && s >= 1.4 * c),
                _ => None,
            }
        };
        let _ = writeln!(
            o,
            "| {label} | {} GiB/s | {} GiB/s | {} GiB/s | {target} ({} direct, {} websocat) | {} |",
            f(d),
            f(c),
            f(s),
            ratio(s, d),
            ratio(s, c),
            ok(met)
        );
        bounds.push(format!(
            "**{}**: websocksy's bridge CPU was {} of the wall time ({} system), websocat's {}; \
             for websocksy {}. {}",
            if up { "upload" } else { "download" },
            pct(busy_t(sc, "websocksy")),
            pct(sys_share(sc, "websocksy")),
            pct(busy_t(sc, "websocat")),
            bound_of(busy_t(sc, "websocksy")),
            if up { WHY_UP } else { WHY_DOWN },
        ));
    }

    // CPU per GiB.
    let per_gib = |sc: &str, t: &str, key: &str| {
        res.median(sc, t, "mib_s").and_then(|r| {
            let c = num(r, key)?;
            let g = num(r, "total_mib")? / 1024.0;
            (g > 0.0).then(|| c / g)
        })
    };
    let pair = |t: &str, key: &str| {
        format!(
            "{} / {} s",
            f(per_gib("upload", t, key)),
            f(per_gib("source", t, key))
        )
    };
    let (su, sd) = (
        per_gib("upload", "websocksy", "bridge_cpu_s"),
        per_gib("source", "websocksy", "bridge_cpu_s"),
    );
    let _ = writeln!(
        o,
        "| bridge CPU per GiB, up / down | — | {} | {} | ≤ 0.5 / 0.35 s | {} |",
        pair("websocat", "bridge_cpu_s"),
        pair("websocksy", "bridge_cpu_s"),
        ok(su.zip(sd).map(|(u, d)| u <= 0.5 && d <= 0.35))
    );
    bounds.push(format!(
        "**CPU per GiB**: of websocksy's, user {} and system {} (up / down); websocat's user {} and \
         system {}. System time is the kernel's copies and loopback TCP charged to the bridge. {WHY_CPU}",
        pair("websocksy", "bridge_user_s"),
        pair("websocksy", "bridge_sys_s"),
        pair("websocat", "bridge_user_s"),
        pair("websocat", "bridge_sys_s"),
    ));

    // Upgrades.
    let up = "upgrades";
    let c = val(up, "websocat", "upgrades_s", "upgrades_s");
    let s = val(up, "websocksy", "upgrades_s", "upgrades_s");
    let s_runs: Vec<f64> = res
        .ok_runs(up, "websocksy", "upgrades_s")
        .iter()
        .filter_map(|r| num(r, "upgrades_s"))
        .collect();
    let s_min = s_runs.first().copied();
    let s_max = s_runs.last().copied();
    let _ = writeln!(
        o,
        "| upgrades per second ({} clients) | — | {} | {} ({}–{}) | ≥ 2× websocat, steadily (every run; the slowest: {} websocat) | {} |",
        m("upgrade_conns"),
        f(c),
        f(s),
        f(s_min),
        f(s_max),
        ratio(s_min, c),
        ok(s_min.zip(c).map(|(s, c)| s >= 2.0 * c))
    );
    let upg = |t: &str, k: &str| val(up, t, "upgrades_s", k);
    let cpu_up = |t: &str| {
        res.median(up, t, "upgrades_s")
            .and_then(cpu_us_per("opened"))
    };
    bounds.push(format!(
        "**upgrades**: bridge CPU per upgrade {} µs websocksy, {} µs websocat; a client's connect to \
         101 took {} ms median, {} ms p99 with websocksy ({} / {} ms websocat); the {} client \
         threads and the peer's threads share the cores with the bridge. {WHY_UPGRADES}",
        f(cpu_up("websocksy")),
        f(cpu_up("websocat")),
        f(upg("websocksy", "median_ms")),
        f(upg("websocksy", "p99_ms")),
        f(upg("websocat", "median_ms")),
        f(upg("websocat", "p99_ms")),
        m("upgrade_conns"),
    ));

    // Memory.
    let mem = |t: &str, k: &str| val("idle", t, "pss_kib_per_conn", k);
    let s = mem("websocksy", "pss_kib_per_conn");
    let _ = writeln!(
        o,
        "| memory per idle connection ({} connections{}) | — | {} KiB | {} KiB | ≤ 2 KiB | {} |",
        f(mem("websocksy", "opened")),
        if m("idle_n_asked") != m("idle_n") {
            format!("; {} asked, `ulimit -n` {}", m("idle_n_asked"), m("ulimit"))
        } else {
            String::new()
        },
        f(mem("websocat", "pss_kib_per_conn")),
        f(s),
        ok(s.map(|s| s <= 2.0))
    );
    bounds.push(format!(
        "**memory**: PSS of the bridge before / after, MiB: websocksy {} / {}, websocat {} / {}; \
         websocat opened {} connections. {WHY_MEMORY}",
        f(mem("websocksy", "pss_before_kib").map(|v| v / 1024.0)),
        f(mem("websocksy", "pss_after_kib").map(|v| v / 1024.0)),
        f(mem("websocat", "pss_before_kib").map(|v| v / 1024.0)),
        f(mem("websocat", "pss_after_kib").map(|v| v / 1024.0)),
        f(mem("websocat", "opened")),
    ));

    // Cores.
    let threads = many_threads(m);
    let tk = |n: &str| format!("websocksy-t{n}");
    let rate = |t: &str| val("many", t, "msgs_s", "msgs_s");
    let cores = |t: &str| res.median("many", t, "msgs_s").and_then(cores_busy);
    let (lo, hi) = (threads.first(), threads.last());
    let scale = match (lo, hi) {
        (Some(a), Some(b)) if a != b => rate(&tk(b)).zip(rate(&tk(a))).map(|(x, y)| x / y),
        _ => None,
    };
    let n_ratio = match (lo, hi) {
        (Some(a), Some(b)) => b
            .parse::<f64>()
            .ok()
            .zip(a.parse::<f64>().ok())
            .map(|(b, a)| b / a),
        _ => None,
    };
    let no_flag = !m("threads_note").is_empty() && m("threads_note") != "?";
    let _ = writeln!(
        o,
        "| cores used ({} clients echoing) | — | {} cores busy | `--threads {}` ÷ `--threads {}`: {} round trips/s ({} and {} cores busy) | all, near-linear (≥ 0.8 × {} = {}) | {} |",
        m("many_conns"),
        f(cores("websocat")),
        hi.map_or("?", |s| s.as_str()),
        lo.map_or("?", |s| s.as_str()),
        scale.map(|x| format!("{x:.2}×")).unwrap_or_else(|| "–".into()),
        f(lo.and_then(|n| cores(&tk(n)))),
        f(hi.and_then(|n| cores(&tk(n)))),
        n_ratio.map(fmt_num).unwrap_or_else(|| "?".into()),
        n_ratio.map(|r| format!("{:.2}×", 0.8 * r)).unwrap_or_else(|| "?".into()),
        if no_flag {
            "no data (no `--threads`)"
        } else {
            ok(scale.zip(n_ratio).map(|(s, r)| s >= 0.8 * r))
        }
    );
    bounds.push(format!(
        "**cores**: \"cores busy\" is the bridge's CPU seconds over the wall time of the many \
         scenario (section 5); websocksy {} round trips/s with `--threads {}`, {} with `--threads {}`, \
         websocat {}. The {} client threads and the peer's {} threads run on the same {} cores, so \
         a second loop can only take what they leave. {WHY_CORES}",
        f(lo.and_then(|n| rate(&tk(n)))),
        lo.map_or("?", |s| s.as_str()),
        f(hi.and_then(|n| rate(&tk(n)))),
        hi.map_or("?", |s| s.as_str()),
        f(rate("websocat")),
        m("many_conns"),
        m("many_conns"),
        m("nproc"),
    ));
    if no_flag {
        let _ = writeln!(o, "\n**{}.**", m("threads_note"));
    }
    o += "\nWhat bounds each row (the figures are this run's; the profiles behind the explanations are in \"Analysis and profile\", \"Issue 9\"):\n\n";
    for b in bounds {
        let _ = writeln!(o, "- {b}");
    }
    o += "\n";
    o
}

/// BENCHMARKS.md; `tls` is the section `bench/tls.sh` last wrote
/// (`bench/last-tls.md`), put in before "Against the targets", followed by
/// the client-mode section (`client_commands`: its commands to reproduce).
pub fn render(
    results: &str,
    meta_path: &str,
    commands_path: &str,
    tls: Option<&str>,
    client_commands: Option<&str>,
) -> io::Result<String> {
    let res = Results::parse(&fs::read_to_string(results)?);
    let meta = read_meta(meta_path)?;
    let commands = fs::read_to_string(commands_path)?;
    let m = |k: &str| meta.get(k).cloned().unwrap_or_else(|| "?".into());
    let mut o = String::new();

    let _ = write!(
        o,
        "# Benchmarks\n\n\
         websocksy against [websocat](https://github.com/vi/websocat) and \
         [websockify](https://github.com/novnc/websockify) as WebSocket-to-TCP bridges. \
         Generated by `bench/run.sh` on {date} (took {minutes} min); every number comes from \
         the median of {runs} runs (the run whose main metric is the median; all runs are listed \
         under each table). Re-running the script rewrites this file.\n\n\
         ## Machine\n\n\
         | | |\n|---|---|\n\
         | CPUs (`nproc`) | {nproc} |\n| CPU model | {cpu} |\n| memory | {mem} |\n| kernel | {kernel} |\n\
         | `ulimit -n` during the runs | {ulimit} |\n\
         | load average before / after the runs | {load0} / {load1} |\n\n\
         **The bridge, the TCP peer and the client share these {nproc} cores.** A one-connection \
         scenario has three or four busy threads (client writer and reader, bridge, peer) on {nproc} \
         cores, so the numbers measure the whole system, and a bridge that uses fewer CPU cycles per \
         byte leaves more for the client and the peer. No process is pinned to a core, and other \
         work may share the machine (see the load average, and `quiet_idle_pct` in \
         `bench/last-results.tsv`), so expect run-to-run spread: compare the \"all runs\" lines \
         before trusting a small difference. Latency on this virtual machine also depends on how \
         fast an idle vCPU wakes up: compare bridges with the plain-TCP baseline of the same run.\n\n\
         ## Tools\n\n\
         | tool | version | command |\n|---|---|---|\n\
         | websocksy | {wv} | `{wc}` |\n\
         | websocat | {cv} | `{cc}` |\n\
         | websockify | {kv} | `{kc}` |\n\
         | client and peers | `wsbench` (bench/, {rustc}) | see below |\n\n",
        date = m("date"),
        minutes = m("minutes"),
        runs = m("runs"),
        nproc = m("nproc"),
        cpu = m("cpu"),
        mem = m("mem"),
        kernel = m("kernel"),
        ulimit = m("ulimit"),
        load0 = m("load_before"),
        load1 = m("load_after"),
        wv = m("websocksy_version"),
        wc = m("websocksy_cmd"),
        cv = m("websocat_version"),
        cc = m("websocat_cmd"),
        kv = m("websockify_version"),
        kc = m("websockify_cmd"),
        rustc = m("rustc"),
    );
    // Issue 9's table comes first.
    let at = o.find("## Machine").unwrap_or(o.len());
    o.insert_str(at, &render_issue9(&res, &m));

    let _ = write!(
        o,
        "## Method\n\n\
         - Each run starts fresh processes: `wsbench serve` (a TCP echo peer and a TCP source \
           peer on ephemeral ports, one thread per connection, TCP_NODELAY), then the bridge on \
           its own port, pointed at the echo or the source peer. Readiness is a bounded TCP \
           connect loop (`wsbench wait`); websocksy's port is read from its `listening on` log line.\n\
         - The client (`wsbench`) uses tungstenite for the opening handshake only; after it, \
           frames are written and parsed by hand: TCP_NODELAY, every client frame masked (one \
           fixed key, so a repeated message is masked once and the same bytes are written again; \
           the bridge still unmasks every byte), small messages written in ~64 KiB batches, and \
           server frames parsed in a 1 MiB buffer without copying. Payloads are binary.\n\
         - Echo scenarios count bytes, not frames: the TCP peer does not keep message boundaries, \
           so a bridge may return the bytes of one message in several frames or several in one.\n\
         - Latency figures are per round trip (write one frame, read until all its bytes are back, \
           content checked), after {warm} warm-up round trips.\n\
         - Idle memory: `VmRSS` summed over the bridge process and its children before and after \
           opening the connections, divided by the number opened. websockify forks one process \
           per connection, and each child's RSS counts the pages it shares with its parent, so \
           the PSS line (`Pss` from `/proc/PID/smaps_rollup`, shared pages split between the \
           processes that map them) is the fair comparison; for the single-process bridges \
           RSS and PSS agree. Opening stops early if `MemAvailable` falls under {minmem} MiB.\n\
         - Bridge CPU: user + system CPU time of the bridge process and its children (from \
           `/proc/PID/stat`, 10 ms ticks) during the measurement. With the cores shared, this is \
           the steadier figure: it says what the bridge costs, whatever the client and the peer \
           were doing. (The kernel's loopback TCP work is mostly charged to the sending process, \
           so it is included for the bridge's own sends.)\n\
         - The machine is shared: before each measurement the script waits (at most {qwait} s) \
           for a one-second sample with at least {qidle} % CPU idle; the idle percentage seen is \
           kept with each run in `bench/last-results.tsv` (`quiet_idle_pct`).\n\
         - Defaults of every bridge are kept (websocksy: 30 s keep-alive ping; the scenarios \
           finish well within it or answer the pings; its loop count is its default, the CPUs it \
           may run on, except in section 5, which sets it).\n\
         - Pinned runs (section 1b): every process of the run started under `taskset -c {pin}`; \
           websockify's per-connection children inherit it.\n\
         - Descriptors: `ulimit -n` is raised to the hard limit ({ulimit}); N idle connections \
           take 2N descriptors in the bridge, so the idle scenario opens at most {idle} \
           (asked: {idle_asked}).\n\
         - Instructions per round trip (section 8): {instr}.\n\n\
         ## Reproduce\n\n```sh\n{commands}```\n\n",
        warm = m("warmup"),
        minmem = m("min_avail_mib"),
        qwait = m("quiet_wait"),
        qidle = m("quiet_idle"),
        commands = commands,
        pin = m("pin_cpu"),
        ulimit = m("ulimit"),
        idle = m("idle_n"),
        idle_asked = m("idle_n_asked"),
        instr = match m("instr_method").as_str() {
            "perf" => "`perf stat -e instructions:u,instructions -p BRIDGE_PID` while the client does \
                       its round trips, divided by their number (warm-up included)"
                .to_string(),
            "callgrind" => format!(
                "`perf stat` counts nothing on this machine (no PMU in the VM), so callgrind \
                 ({}): the bridge runs under `valgrind --tool=callgrind` twice, once for 1 \
                 round trip and once for {} more (after {} warm-up ones each), and the \
                 difference in instructions (Ir, user space only) is divided by {}",
                m("valgrind_version"),
                m("instr_count"),
                m("instr_warmup"),
                m("instr_count")
            ),
            _ => "not measured in this run".to_string(),
        },
    );

    // 1. latency, unpinned and pinned, with the floor
    let (fc, fr) = floor_cols();
    for (sc, title, how) in [
        (
            "latency",
            "## 1. Round-trip latency",
            "Nothing is pinned: the scheduler places the client, the bridge and the peer on the \
             machine's cores."
                .to_string(),
        ),
        (
            "latency-pinned",
            "## 1b. Round-trip latency, pinned to one CPU",
            format!(
                "The TCP echo peer, the bridge and the client (and the floor's client and peer) \
                 each started under `taskset -c {}`: all on one CPU, so no wake-up crosses cores \
                 and every microsecond of CPU any of them spends is on the round trip.",
                m("pin_cpu")
            ),
        ),
    ] {
        let _ = write!(
            o,
            "{title}\n\nOne connection, {} sequential round trips of a {}-byte binary message \
             through the bridge to the TCP echo peer and back, after {} warm-up ones. {how} \
             Direct TCP: the same client and echo peer over plain TCP, no bridge and no \
             WebSocket framing (`wsbench tcp-latency`). Lower is better.\n\n",
            m("lat_count"),
            m("lat_size"),
            m("warmup"),
        );
        let floor = res
            .median(sc, "direct", "median_us")
            .and_then(|r| num(r, "median_us"));
        let added = move |r: &Run| -> Option<f64> {
            if r.kv.contains_key("bridge_cpu_s") {
                Some(num(r, "median_us")? - floor?)
            } else {
                None
            }
        };
        o += &cols_table(
            &res,
            sc,
            "median_us",
            &fc,
            &fr,
            &[
                ("median µs".into(), &|r| num(r, "median_us")),
                ("p99 µs".into(), &|r| num(r, "p99_us")),
                ("p99.9 µs".into(), &|r| num(r, "p999_us")),
                ("mean µs".into(), &|r| num(r, "mean_us")),
                ("bridge CPU µs per round trip".into(), &cpu_us_per("count")),
                (
                    "median added by the bridge (median − direct median), µs".into(),
                    &added,
                ),
            ],
        );
        o += "\n";
        o += &runs_line_of(
            &res,
            sc,
            &["websocksy", "websocat", "websockify", "direct"],
            "median_us",
            " µs",
        );
        o += "\n";
    }

    // 2. echo throughput
    let _ = write!(
        o,
        "## 2. Throughput client → peer → client\n\nOne connection; a writer thread streams binary \
         messages through the bridge to the TCP echo peer, a reader thread counts the bytes coming \
         back. MiB/s of payload (each byte crosses the bridge twice). Higher is better.\n\n{HEAD}"
    );
    let echo = [
        (
            "echo64k",
            format!("64 KiB messages, {} MiB", m("echo64k_mib")),
        ),
        (
            "echo16k",
            format!("16 KiB messages, {} MiB", m("echo16k_mib")),
        ),
        ("echo1k", format!("1 KiB messages, {} MiB", m("echo1k_mib"))),
    ];
    for (sc, label) in &echo {
        o += &row(&res, sc, "mib_s", "mib_s", &format!("{label}: MiB/s"), 1.0);
    }
    for (sc, label) in &echo {
        o += &row(
            &res,
            sc,
            "mib_s",
            "msgs_s",
            &format!("{label}: messages/s"),
            1.0,
        );
    }
    for (sc, label) in &echo {
        o += &derived_row(
            &res,
            sc,
            "mib_s",
            &format!("{label}: MiB per bridge CPU second"),
            mib_per_cpu_s,
        );
    }
    o += "\n";
    for (sc, _) in &echo {
        o += &format!("{sc}: ");
        o += &runs_line(&res, sc, "mib_s", " MiB/s");
    }
    o += "\n";

    // 3. source (download) and 3b. upload, with the floor
    let (fc, fr) = floor_cols();
    let gib_s = |r: &Run| num(r, "mib_s").map(|v| v / 1024.0);
    let busy = |r: &Run| cores_busy(r).map(|b| 100.0 * b);
    let _ = write!(
        o,
        "## 3. Throughput peer → client (download)\n\nThe TCP source peer writes {} MiB as fast as \
         the bridge takes it; the client reads frames and counts bytes. Direct TCP: the same \
         amount read straight from the source peer (`wsbench tcp-download`). Higher is better.\n\n",
        m("source_mib")
    );
    o += &cols_table(
        &res,
        "source",
        "mib_s",
        &fc,
        &fr,
        &[
            ("MiB/s".into(), &|r| num(r, "mib_s")),
            ("GiB/s".into(), &gib_s),
            ("mean frame payload, bytes".into(), &|r| num(r, "avg_frame")),
            ("MiB per bridge CPU second".into(), &mib_per_cpu_s),
            ("bridge CPU s per GiB".into(), &cpu_s_per_gib),
            ("bridge CPU, % of the wall time".into(), &busy),
        ],
    );
    o += "\n";
    o += &runs_line_of(
        &res,
        "source",
        &["websocksy", "websocat", "websockify", "direct"],
        "mib_s",
        " MiB/s",
    );
    o += "\n";

    let _ = write!(
        o,
        "## 3b. Throughput client → peer (upload)\n\nThe client sends an 8-byte count, then {} MiB \
         in {}-byte binary messages, to the TCP sink peer through the bridge; the sink answers one \
         byte once it has them all, and the clock stops when the client reads it. Direct TCP: the \
         same bytes in writes of the same size straight to the sink peer (`wsbench tcp-upload`). \
         Higher is better.\n\n",
        m("upload_mib"),
        m("upload_msg")
    );
    o += &cols_table(
        &res,
        "upload",
        "mib_s",
        &fc,
        &fr,
        &[
            ("MiB/s".into(), &|r| num(r, "mib_s")),
            ("GiB/s".into(), &gib_s),
            ("MiB per bridge CPU second".into(), &mib_per_cpu_s),
            ("bridge CPU s per GiB".into(), &cpu_s_per_gib),
            ("bridge CPU, % of the wall time".into(), &busy),
        ],
    );
    o += "\n";
    o += &runs_line_of(
        &res,
        "upload",
        &["websocksy", "websocat", "websockify", "direct"],
        "mib_s",
        " MiB/s",
    );
    o += "\n";

    // 4. idle
    let _ = write!(
        o,
        "## 4. Concurrent idle connections\n\n{} upgraded connections (websockify: {}, see below) opened \
         one after another and left idle (each bridge also holds one TCP connection to the echo peer per \
         client); the bridge's memory before and after; then one 16-byte message is echoed on every \
         connection. Lower memory is better.\n\n{HEAD}",
        m("idle_n"),
        m("idle_n_websockify")
    );
    o += &count_row(
        &res,
        "idle",
        "pss_kib_per_conn",
        "opened",
        "connections opened",
    );
    o += &count_row(
        &res,
        "idle",
        "pss_kib_per_conn",
        "echo_ok",
        "connections that echoed afterwards",
    );
    o += &count_row(
        &res,
        "idle",
        "pss_kib_per_conn",
        "open_secs",
        "seconds to open them all",
    );
    o += &count_row(
        &res,
        "idle",
        "pss_kib_per_conn",
        "procs_after",
        "bridge processes afterwards",
    );
    o += &row(
        &res,
        "idle",
        "pss_kib_per_conn",
        "rss_before_kib",
        "RSS before, MiB",
        1.0 / 1024.0,
    );
    o += &row(
        &res,
        "idle",
        "pss_kib_per_conn",
        "rss_after_kib",
        "RSS after, MiB",
        1.0 / 1024.0,
    );
    o += &row(
        &res,
        "idle",
        "pss_kib_per_conn",
        "rss_kib_per_conn",
        "**KiB per connection (RSS)**",
        1.0,
    );
    o += &row(
        &res,
        "idle",
        "pss_kib_per_conn",
        "pss_after_kib",
        "PSS after, MiB",
        1.0 / 1024.0,
    );
    o += &row(
        &res,
        "idle",
        "pss_kib_per_conn",
        "pss_kib_per_conn",
        "**KiB per connection (PSS)**",
        1.0,
    );
    o += "\n";
    o += &runs_line(&res, "idle", "pss_kib_per_conn", " KiB");
    let _ = write!(
        o,
        "\nwebsockify forks a Python process for every connection, and past about 508 concurrent \
         connections its new children die with `handler exception: filedescriptor out of range in \
         select()` (seen with 2000: every handshake succeeded, then only ~508 connections still \
         echoed), so it is measured with {1} connections instead of {0}; the figure is per connection. \
         websocksy accepts (nofile − 64) / 2 connections with this descriptor limit; websocat has no \
         cap unless `--conncap` is given.\n",
        m("idle_n"),
        m("idle_n_websockify")
    );
    for t in TOOLS {
        if let Some(r) = res.median("idle", t, "pss_kib_per_conn") {
            if let Some(s) = r.kv.get("stop").filter(|s| s.as_str() != "none") {
                let _ = writeln!(o, "\n{t} stopped opening connections early: `{s}`.");
            }
        }
    }
    o += "\n";

    // 5. many, websocksy once per loop count
    let threads = many_threads(&m);
    let keys: Vec<String> = threads.iter().map(|n| format!("websocksy-t{n}")).collect();
    let mut cols: Vec<(&str, String)> = keys
        .iter()
        .zip(&threads)
        .map(|(k, n)| (k.as_str(), format!("websocksy `--threads {n}`")))
        .collect();
    cols.push(("websocat", "websocat".into()));
    cols.push(("websockify", "websockify".into()));
    let mut ratios = Vec::new();
    if keys.len() >= 2 {
        ratios.push((keys.len() - 1, 0));
    }
    if !keys.is_empty() {
        ratios.push((keys.len() - 1, keys.len()));
    }
    let _ = write!(
        o,
        "## 5. Many connections, small round trips\n\n{} connections (one client thread each; \
         websockify {}, see section 4) doing {} sequential round trips of {} bytes at the same \
         time. Round trips/s counts round trips completed per second over all connections. \
         websocksy runs once per loop count (`{}` N: {}); \"cores busy\" is the bridge's CPU \
         seconds over the wall time. Higher round trips/s are better.\n\n",
        m("many_conns"),
        m("many_conns_websockify"),
        m("many_rounds"),
        m("lat_size"),
        m("threads_flag"),
        m("many_threads"),
    );
    let many_count = |r: &Run| {
        let c = num(r, "bridge_cpu_s")?;
        let n = num(r, "conns")? * num(r, "rounds")?;
        (n > 0.0).then(|| c * 1e6 / n)
    };
    o += &cols_table(
        &res,
        "many",
        "msgs_s",
        &cols,
        &ratios,
        &[
            ("connections".into(), &|r| num(r, "conns")),
            ("round trips/s".into(), &|r| num(r, "msgs_s")),
            ("median round trip µs".into(), &|r| num(r, "median_us")),
            ("p99 round trip µs".into(), &|r| num(r, "p99_us")),
            ("p99.9 round trip µs".into(), &|r| num(r, "p999_us")),
            ("bridge CPU µs per round trip".into(), &many_count),
            ("cores busy (bridge CPU s ÷ wall s)".into(), &cores_busy),
        ],
    );
    o += "\n";
    let many_tools: Vec<&str> = cols.iter().map(|(k, _)| *k).collect();
    o += &runs_line_of(&res, "many", &many_tools, "msgs_s", "");
    if !m("threads_note").is_empty() && m("threads_note") != "?" {
        let _ = writeln!(o, "\n**{}.**", m("threads_note"));
    }
    o += "\n";

    // 5b. upgrades
    let cols3: Vec<(&str, String)> = TOOLS.iter().map(|t| (*t, t.to_string())).collect();
    let _ = write!(
        o,
        "## 5b. Upgrades per second\n\n{} clients (one thread each) released at once, each opening \
         one connection (TCP connect, then the WebSocket handshake until its 101 is read); \
         upgrades/s is the connections opened over the time from the release to the last 101. All \
         stay open until the last is (each bridge also opens one TCP connection to the echo peer \
         per client), then they are closed. Higher is better.\n\n",
        m("upgrade_conns")
    );
    o += &cols_table(
        &res,
        "upgrades",
        "upgrades_s",
        &cols3,
        &[(0, 1), (0, 2)],
        &[
            ("connections opened".into(), &|r| num(r, "opened")),
            ("upgrades/s".into(), &|r| num(r, "upgrades_s")),
            ("connect to 101, median ms".into(), &|r| num(r, "median_ms")),
            ("connect to 101, p99 ms".into(), &|r| num(r, "p99_ms")),
            ("connect to 101, max ms".into(), &|r| num(r, "max_ms")),
            ("bridge CPU µs per upgrade".into(), &cpu_us_per("opened")),
        ],
    );
    o += "\n";
    o += &runs_line_of(&res, "upgrades", &TOOLS, "upgrades_s", "");
    o += "\n";

    if let Some(section) = tls.and_then(|p| fs::read_to_string(p).ok()) {
        o += &section;
        if !section.ends_with("\n\n") {
            o += "\n";
        }
    }

    let client_commands = match client_commands {
        Some(p) => Some(fs::read_to_string(p)?),
        None => None,
    };
    o += &render_client(&res, &m, client_commands.as_deref());

    // 8. instructions per round trip
    let _ = write!(
        o,
        "## 8. Instructions per round trip\n\n{}\n\n",
        match m("instr_method").as_str() {
            "perf" => format!(
                "Counted by `perf stat -e instructions:u,instructions -p BRIDGE_PID` during {} + {} \
                 round trips of {} bytes (unpinned), divided by their number: user space, and user \
                 plus kernel.",
                m("instr_warmup"),
                m("instr_count"),
                m("lat_size")
            ),
            "callgrind" => format!(
                "`perf stat` counts no instructions on this machine (the VM exposes no PMU), so \
                 callgrind counts them instead: the bridge under `valgrind --tool=callgrind`, once \
                 for 1 round trip and once for {} + 1 (after {} warm-up ones each, {} bytes), and \
                 (Ir of the second − Ir of the first) ÷ {}. User-space instructions only: the \
                 kernel's share of a round trip (the system calls) is not in it; see the system \
                 CPU in sections 1 and 3. Repeatable from run to run, unlike times on this shared \
                 machine.",
                m("instr_count"),
                m("instr_warmup"),
                m("lat_size"),
                m("instr_count")
            ),
            _ => "Not run (bench/run.sh without the instr scenario).".to_string(),
        }
    );
    if res.runs.keys().any(|(sc, _)| sc == "instr") {
        o += "| bridge | method | round trips counted | instructions per round trip (user) | user + kernel |\n|---|---|---:|---:|---:|\n";
        for t in TOOLS {
            let Some(runs) = res.runs.get(&("instr".to_string(), t.to_string())) else {
                continue;
            };
            for r in runs {
                if let Some(e) = r.kv.get("error") {
                    let _ = writeln!(o, "| {t} | failed: `{e}` | | | |");
                    continue;
                }
                let g = |k: &str| r.kv.get(k).cloned().unwrap_or_else(|| "–".into());
                let _ = writeln!(
                    o,
                    "| {t} | {} | {} | {} | {} |",
                    g("method"),
                    g("count"),
                    num(r, "instr_per_rt")
                        .map(fmt_num)
                        .unwrap_or_else(|| "–".into()),
                    num(r, "instr_all_per_rt")
                        .map(fmt_num)
                        .unwrap_or_else(|| "–".into()),
                );
            }
        }
        o += "\n";
    }

    // targets
    o += "## Against the targets\n\n| target | websocksy | websocat | ratio | |\n|---|---:|---:|---:|---|\n";
    let lat = |t| get(&res, "latency", t, "median_us", "median_us");
    let (a, b) = (lat("websocksy"), lat("websocat"));
    let _ = writeln!(
        o,
        "| latency median ≤ 2/3 of websocat's | {} µs | {} µs | {} | {} |",
        a.map(fmt_num).unwrap_or_default(),
        b.map(fmt_num).unwrap_or_default(),
        ratio(a, b),
        verdict(a.zip(b).map(|(a, b)| a <= b * 2.0 / 3.0))
    );
    for (sc, label) in echo
        .iter()
        .map(|(s, l)| (*s, l.clone()))
        .chain([("source", "peer → client".to_string())])
    {
        let a = get(&res, sc, "websocksy", "mib_s", "mib_s");
        let b = get(&res, sc, "websocat", "mib_s", "mib_s");
        let _ = writeln!(
            o,
            "| throughput 1.5–2.5× websocat's ({label}) | {} MiB/s | {} MiB/s | {} | {} |",
            a.map(fmt_num).unwrap_or_default(),
            b.map(fmt_num).unwrap_or_default(),
            ratio(a, b),
            verdict(a.zip(b).map(|(a, b)| a >= b * 1.5))
        );
    }
    let most = format!(
        "websocksy-t{}",
        many_threads(&m).last().map_or("?", |s| s.as_str())
    );
    let a = get(&res, "many", &most, "msgs_s", "msgs_s");
    let b = get(&res, "many", "websocat", "msgs_s", "msgs_s");
    let _ = writeln!(
        o,
        "| many connections: round trips/s, websocksy with the most loops (no numeric target) | {} | {} | {} | |",
        a.map(fmt_num).unwrap_or_default(),
        b.map(fmt_num).unwrap_or_default(),
        ratio(a, b)
    );
    let a = get(
        &res,
        "idle",
        "websocksy",
        "pss_kib_per_conn",
        "pss_kib_per_conn",
    );
    let b = get(
        &res,
        "idle",
        "websocat",
        "pss_kib_per_conn",
        "pss_kib_per_conn",
    );
    let _ = writeln!(
        o,
        "| memory per idle connection, KiB (PSS; lower is better) | {} | {} | {} | |",
        a.map(fmt_num).unwrap_or_default(),
        b.map(fmt_num).unwrap_or_default(),
        ratio(a, b)
    );
    if let Ok(extra) = fs::read_to_string(m("notes")) {
        o += "\n";
        o += &extra;
    }
    Ok(o)
}

/// Marks the generated wss:// section, so `bench/tls.sh` can replace it in
/// BENCHMARKS.md.
pub const TLS_BEGIN: &str = "<!-- wss section: generated by bench/tls.sh -->";
pub const TLS_END: &str = "<!-- end of wss section -->";

/// The cipher `openssl speed` name for a negotiated suite.
fn evp_name(cipher: &str) -> &'static str {
    let c = cipher.to_ascii_uppercase();
    if c.contains("CHACHA20") {
        "chacha20-poly1305"
    } else if c.contains("AES_128") || c.contains("AES128") {
        "aes-128-gcm"
    } else {
        "aes-256-gcm"
    }
}

/// The "wss:// against ws://" section of BENCHMARKS.md, from the results
/// of `bench/tls.sh` (tools `ws` and `wss`).
pub fn render_tls(results: &str, meta_path: &str, commands_path: &str) -> io::Result<String> {
    let res = Results::parse(&fs::read_to_string(results)?);
    let meta = read_meta(meta_path)?;
    let commands = fs::read_to_string(commands_path)?;
    let m = |k: &str| meta.get(k).cloned().unwrap_or_else(|| "?".into());
    let mut o = String::new();

    let med = |sc: &str, proto: &str, by: &str| res.median(sc, proto, by);
    let val =
        |sc: &str, proto: &str, by: &str, key: &str| med(sc, proto, by).and_then(|r| num(r, key));
    let gib_s = |sc: &str, proto: &str| val(sc, proto, "mib_s", "mib_s").map(|v| v / 1024.0);
    let per_gib = |sc: &str, proto: &str, key: &str| {
        med(sc, proto, "mib_s").and_then(|r| {
            let c = num(r, key)?;
            let gib = num(r, "total_mib")? / 1024.0;
            (gib > 0.0).then(|| c / gib)
        })
    };
    let cpu_per_gib = |sc: &str, proto: &str| per_gib(sc, proto, "bridge_cpu_s");
    let cpu_per_rt = |proto: &str| med("latency", proto, "median_us").and_then(cpu_us_per("count"));
    let negotiated = ["latency", "source", "upload"]
        .iter()
        .find_map(|sc| {
            med(
                sc,
                "wss",
                if *sc == "latency" {
                    "median_us"
                } else {
                    "mib_s"
                },
            )
            .and_then(|r| Some(format!("{} {}", r.kv.get("tls")?, r.kv.get("cipher")?)))
        })
        .unwrap_or_else(|| "?".into());
    let evp = evp_name(&negotiated);
    let speed = |name: &str| {
        meta.get(&format!("speed_{name}"))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|b| b / (1u64 << 30) as f64)
    };

    let _ = write!(
        o,
        "{TLS_BEGIN}\n## 6. wss:// against ws://\n\n\
         Generated by `bench/tls.sh` on {date} (took {minutes} min; load average before / after: \
         {load0} / {load1}); every number is from the median of {runs} runs. For each scenario \
         and run, one websocksy process listens on both schemes, `{cmd}`, and the client measures \
         `ws://` and then `wss://` on it (the other way round in even runs). The certificate is a \
         throwaway EC P-256 one (CN=localhost, self-signed, made with `openssl req` in the run's \
         work directory); the client (`wsbench`, {osslv}) verifies it (`--ca`, name `localhost`). \
         Negotiated: \
         {negotiated}. Bridge: {rev}. The client does the same work as for `ws://` plus OpenSSL on one stream: \
         its TLS reads and writes run on the same {nproc} cores as the bridge and the peer.\n\n\
         | | ws:// | wss:// | wss:// − ws:// | wss:// ÷ ws:// |\n|---|---:|---:|---:|---:|\n",
        date = m("date"),
        minutes = m("minutes"),
        load0 = m("load_before"),
        load1 = m("load_after"),
        runs = m("runs"),
        cmd = m("websocksy_cmd"),
        osslv = m("openssl_version"),
        nproc = m("nproc"),
        rev = m("websocksy_rev"),
    );
    let cell = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "failed".into());
    let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => {
            let d = b - a;
            if d < 0.0 {
                format!("−{}", fmt_num(-d))
            } else {
                format!("+{}", fmt_num(d))
            }
        }
        _ => "–".into(),
    };
    let mut line = |label: String, a: Option<f64>, b: Option<f64>| {
        let _ = writeln!(
            o,
            "| {label} | {} | {} | {} | {} |",
            cell(a),
            cell(b),
            diff(a, b),
            ratio(b, a)
        );
    };
    let lat = |proto: &str, key: &str| val("latency", proto, "median_us", key);
    let size = m("lat_size");
    line(
        format!("round trip, {size} B: median µs"),
        lat("ws", "median_us"),
        lat("wss", "median_us"),
    );
    line(
        format!("round trip, {size} B: p99 µs"),
        lat("ws", "p99_us"),
        lat("wss", "p99_us"),
    );
    line(
        "round trip: bridge CPU µs per round trip".into(),
        cpu_per_rt("ws"),
        cpu_per_rt("wss"),
    );
    let dl = m("source_mib");
    line(
        format!("download (peer → client), {dl} MiB: GiB/s"),
        gib_s("source", "ws"),
        gib_s("source", "wss"),
    );
    line(
        "download: bridge CPU s per GiB".into(),
        cpu_per_gib("source", "ws"),
        cpu_per_gib("source", "wss"),
    );
    for (key, what) in [("bridge_user_s", "user"), ("bridge_sys_s", "system")] {
        let (a, b) = (per_gib("source", "ws", key), per_gib("source", "wss", key));
        if a.is_some() || b.is_some() {
            line(format!("download: of which {what}, s per GiB"), a, b);
        }
    }
    let ul = m("upload_mib");
    line(
        format!(
            "upload (client → peer), {} KiB messages, {ul} MiB: GiB/s",
            m("upload_msg")
                .parse::<u64>()
                .map_or("?".into(), |b| (b / 1024).to_string())
        ),
        gib_s("upload", "ws"),
        gib_s("upload", "wss"),
    );
    line(
        "upload: bridge CPU s per GiB".into(),
        cpu_per_gib("upload", "ws"),
        cpu_per_gib("upload", "wss"),
    );
    for (key, what) in [("bridge_user_s", "user"), ("bridge_sys_s", "system")] {
        let (a, b) = (per_gib("upload", "ws", key), per_gib("upload", "wss", key));
        if a.is_some() || b.is_some() {
            line(format!("upload: of which {what}, s per GiB"), a, b);
        }
    }
    o += "\n";
    for (sc, key, unit) in [
        ("latency", "median_us", " µs"),
        ("source", "mib_s", " MiB/s"),
        ("upload", "mib_s", " MiB/s"),
    ] {
        let _ = write!(o, "{sc}: all runs ({key}{unit}): ");
        let parts: Vec<String> = ["ws", "wss"]
            .iter()
            .map(|p| format!("{p}:// {}", res.all_runs(sc, p, key)))
            .collect();
        o += &parts.join("; ");
        o += ".\n";
        for p in ["ws", "wss"] {
            for e in res.errors(sc, p) {
                let _ = writeln!(o, "\n{p}:// {sc} failed: `{e}`");
            }
        }
    }

    // The cipher on its own.
    let _ = write!(
        o,
        "\nThe cipher alone, `openssl speed -evp NAME -bytes 16384` (one process, so one core; \
         16 KiB blocks, the size of a full TLS record; AES-NI {aesni}):\n\n\
         | cipher | GiB/s per core | s of one core per GiB |\n|---|---:|---:|\n",
        aesni = m("aes_ni"),
    );
    for name in ["aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"] {
        if let Some(r) = speed(name) {
            let mark = if name == evp { " (negotiated)" } else { "" };
            let _ = writeln!(
                o,
                "| {name}{mark} | {} | {} |",
                fmt_num(r),
                fmt_num(1.0 / r)
            );
        }
    }

    // What it costs, in one paragraph.
    let f = |v: Option<f64>| v.map(fmt_num).unwrap_or_else(|| "?".into());
    let sub = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| b - a);
    let div = |a: Option<f64>, b: Option<f64>| a.zip(b).and_then(|(a, b)| (b > 0.0).then(|| a / b));
    let rate = speed(evp);
    let cipher_s = rate.map(|r| 1.0 / r);
    let dl_extra = sub(cpu_per_gib("source", "ws"), cpu_per_gib("source", "wss"));
    let ul_extra = sub(cpu_per_gib("upload", "ws"), cpu_per_gib("upload", "wss"));
    let pct = |part: Option<f64>, whole: Option<f64>| {
        div(part, whole)
            .map(|x| format!("{:.0} %", 100.0 * x))
            .unwrap_or_else(|| "?".into())
    };
    let _ = write!(
        o,
        "\n**What TLS costs.** Over `wss://` the median round trip of a {size}-byte message is \
         {d_med} µs longer ({a_med} → {b_med} µs; p99 {a_p99} → {b_p99} µs) and the bridge spends \
         {d_rt} µs more CPU per round trip ({a_rt} → {b_rt}): for small messages TLS costs per \
         record (one read and one written by the bridge per round trip), not per byte. \
         Downloads run at {r_dl}× the plain rate ({a_dl} → {b_dl} GiB/s) and uploads at {r_ul}× \
         ({a_ul} → {b_ul} GiB/s). Per GiB the bridge spends {x_dl} s more CPU downloading \
         ({a_cdl} → {b_cdl} s/GiB, where it encrypts) and {x_ul} s more uploading ({a_cul} → \
         {b_cul} s/GiB, where it decrypts), so one core of bridge carries at most about {per_core_dl} \
         GiB/s of `wss://` download and {per_core_ul} GiB/s of upload. {evp} alone runs at {rate} \
         GiB/s on one core of this machine ({target} the 1 GiB/s per core issue 7 expects of AES-GCM \
         with AES-NI), {cipher_s} s per GiB: that is {p_dl} of the extra CPU downloading and {p_ul} \
         uploading. The rest is work around the cipher: more and smaller system calls (the \
         `system` rows; a TLS record is at most 16 KiB, and the bridge sends or reads about one \
         record per call where the plain path moves a 64 KiB frame per call), record handling, \
         and copies through OpenSSL's buffers (see \"wss://\" in the analysis below). The client encrypts or decrypts \
         every byte too, on the same cores, so the wall-clock ratios understate what a bridge \
         with a remote client would reach; the CPU seconds per GiB are the bridge's own.\n\n",
        d_med = f(sub(lat("ws", "median_us"), lat("wss", "median_us"))),
        a_med = f(lat("ws", "median_us")),
        b_med = f(lat("wss", "median_us")),
        a_p99 = f(lat("ws", "p99_us")),
        b_p99 = f(lat("wss", "p99_us")),
        d_rt = f(sub(cpu_per_rt("ws"), cpu_per_rt("wss"))),
        a_rt = f(cpu_per_rt("ws")),
        b_rt = f(cpu_per_rt("wss")),
        r_dl = f(div(gib_s("source", "wss"), gib_s("source", "ws"))),
        a_dl = f(gib_s("source", "ws")),
        b_dl = f(gib_s("source", "wss")),
        r_ul = f(div(gib_s("upload", "wss"), gib_s("upload", "ws"))),
        a_ul = f(gib_s("upload", "ws")),
        b_ul = f(gib_s("upload", "wss")),
        x_dl = f(dl_extra),
        a_cdl = f(cpu_per_gib("source", "ws")),
        b_cdl = f(cpu_per_gib("source", "wss")),
        x_ul = f(ul_extra),
        a_cul = f(cpu_per_gib("upload", "ws")),
        b_cul = f(cpu_per_gib("upload", "wss")),
        rate = f(rate),
        per_core_dl = f(cpu_per_gib("source", "wss").filter(|c| *c > 0.0).map(|c| 1.0 / c)),
        per_core_ul = f(cpu_per_gib("upload", "wss").filter(|c| *c > 0.0).map(|c| 1.0 / c)),
        target = match rate {
            Some(r) if r >= 2.0 => "well above",
            Some(r) if r >= 1.0 => "above",
            Some(_) => "below",
            None => "compare with",
        },
        cipher_s = f(cipher_s),
        p_dl = pct(cipher_s, dl_extra),
        p_ul = pct(cipher_s, ul_extra),
    );
    let _ = write!(
        o,
        "Reproduce (raw results: `bench/last-tls-results.tsv`):\n\n```sh\n{commands}```\n{TLS_END}\n"
    );
    Ok(o)
}
