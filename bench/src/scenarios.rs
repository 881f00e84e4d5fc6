//! The measurements. Each prints one line of `key=value` pairs on stdout.

use std::fs;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::ws::{self, Conn, FrameReader, Stream, TlsOptions};

const MIB: f64 = 1024.0 * 1024.0;

/// CPU seconds (user + system) used so far by the bridge process and its
/// children, when its pid is known. Children that already exited are not
/// counted, so samples are taken while the connections are still open.
#[derive(Clone, Copy)]
pub struct Cpu(pub Option<u32>);

impl Cpu {
    /// (user, system) seconds.
    fn sample(self) -> Option<(f64, f64)> {
        let root = self.0?;
        let (mut user, mut sys) = (0u64, 0u64);
        for pid in descendants(root) {
            if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
                let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
                // Fields after the comm: state(0) ppid(1) ... utime(11) stime(12).
                let f: Vec<&str> = after.split_whitespace().collect();
                user += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                sys += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
        // USER_HZ is 100 on Linux.
        Some((user as f64 / 100.0, sys as f64 / 100.0))
    }

    /// ` bridge_cpu_s=X bridge_user_s=U bridge_sys_s=S` for the output
    /// line, or nothing.
    fn since(self, start: Option<(f64, f64)>) -> String {
        match (start, self.sample()) {
            (Some((u0, s0)), Some((u1, s1))) => format!(
                " bridge_cpu_s={:.2} bridge_user_s={:.2} bridge_sys_s={:.2}",
                (u1 + s1) - (u0 + s0),
                u1 - u0,
                s1 - s0
            ),
            _ => String::new(),
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn latency_summary(mut ns: Vec<u64>) -> String {
    ns.sort_unstable();
    let mean = ns.iter().sum::<u64>() as f64 / ns.len().max(1) as f64;
    format!(
        "median_us={} p99_us={} p999_us={} mean_us={:.1} min_us={} max_us={}",
        us(percentile(&ns, 0.5)),
        us(percentile(&ns, 0.99)),
        us(percentile(&ns, 0.999)),
        mean / 1000.0,
        us(ns.first().copied().unwrap_or(0)),
        us(ns.last().copied().unwrap_or(0)),
    )
}

/// One round trip: write the prepared frame, read back `size` bytes.
fn round_trip<S: io::Read + Write>(
    r: &mut FrameReader<S>,
    frame: &[u8],
    size: usize,
    check: &[u8],
    got: &mut Vec<u8>,
) -> io::Result<u64> {
    got.clear();
    let t = Instant::now();
    r.stream().write_all(frame)?;
    r.read_bytes(size as u64, &mut |p| got.extend_from_slice(p))?;
    let dt = t.elapsed().as_nanos() as u64;
    if got.as_slice() != check {
        return Err(io::Error::other(format!(
            "echo mismatch: sent {} bytes, got {}",
            size,
            got.len()
        )));
    }
    Ok(dt)
}

/// Scenario 1: sequential round trips on one connection (`ws://` or
/// `wss://`).
pub fn latency(
    url: &str,
    count: usize,
    warmup: usize,
    size: usize,
    cpu: Cpu,
    timeout: Duration,
    tls: &TlsOptions,
) -> io::Result<String> {
    match ws::connect_stream(url, timeout, tls)? {
        Stream::Plain(s) => latency_on(s, count, warmup, size, cpu, String::new()),
        Stream::Tls(s) => {
            let info = ws::tls_info(&s);
            latency_on(s, count, warmup, size, cpu, info)
        }
    }
}

fn latency_on<S: Conn>(
    s: S,
    count: usize,
    warmup: usize,
    size: usize,
    cpu: Cpu,
    info: String,
) -> io::Result<String> {
    let mut r = FrameReader::new(s, 64 * 1024);
    let payload = ws::pattern(size);
    let frame = ws::masked_frame(&payload);
    let mut got = Vec::with_capacity(size);
    let mut samples = Vec::with_capacity(count);
    let mut cpu0 = None;
    for i in 0..warmup + count {
        if i == warmup {
            cpu0 = cpu.sample();
        }
        let dt = round_trip(&mut r, &frame, size, &payload, &mut got)?;
        if i >= warmup {
            samples.push(dt);
        }
    }
    let used = cpu.since(cpu0);
    ws::close_conn(r.stream());
    Ok(format!(
        "count={count} size={size} {}{used}{info}",
        latency_summary(samples)
    ))
}

/// A plain TCP client: TCP_NODELAY, read and write timeouts.
fn tcp_connect(addr: &str, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// Round trips over plain TCP: the baseline of scenario 1 (straight to
/// the TCP echo peer, no bridge and no WebSocket framing) and the client-mode
/// round trip (to a bridge's tcp-listen port, the bridge connected to the
/// WebSocket echo server; `cpu` is then the bridge's).
pub fn tcp_latency(
    addr: &str,
    count: usize,
    warmup: usize,
    size: usize,
    cpu: Cpu,
    timeout: Duration,
) -> io::Result<String> {
    use std::io::Read;
    let mut s = tcp_connect(addr, timeout)?;
    let payload = ws::pattern(size);
    let mut got = vec![0u8; size];
    let mut samples = Vec::with_capacity(count);
    let mut cpu0 = None;
    for i in 0..warmup + count {
        if i == warmup {
            cpu0 = cpu.sample();
        }
        let t = Instant::now();
        s.write_all(&payload)?;
        s.read_exact(&mut got)?;
        let dt = t.elapsed().as_nanos() as u64;
        if got != payload {
            return Err(io::Error::other("echo mismatch"));
        }
        if i >= warmup {
            samples.push(dt);
        }
    }
    let used = cpu.since(cpu0);
    Ok(format!(
        "count={count} size={size} {}{used}",
        latency_summary(samples)
    ))
}

/// Client-mode upload: a plain TCP client streams `total` bytes in `chunk`
/// byte writes, after an 8-byte big-endian count, then waits for the one
/// byte [`SINK_ACK`] that says all of them arrived. Against the TCP sink
/// peer (the floor) or a bridge's tcp-listen port with the bridge connected
/// to the WebSocket sink (`cpu` is then the bridge's).
pub fn tcp_upload(
    addr: &str,
    total: u64,
    chunk: usize,
    cpu: Cpu,
    timeout: Duration,
) -> io::Result<String> {
    use std::io::Read;
    let mut s = tcp_connect(addr, timeout)?;
    let buf = ws::pattern(chunk.max(1));
    let cpu0 = cpu.sample();
    let start = Instant::now();
    s.write_all(&total.to_be_bytes())?;
    let mut left = total;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.write_all(&buf[..n])?;
        left -= n as u64;
    }
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack)
        .map_err(|e| io::Error::new(e.kind(), format!("waiting for the sink's answer: {e}")))?;
    let secs = start.elapsed().as_secs_f64();
    let used = cpu.since(cpu0);
    if ack != [SINK_ACK] {
        return Err(io::Error::other(format!(
            "the sink answered {ack:?} instead of [{SINK_ACK}]"
        )));
    }
    Ok(format!(
        "total_mib={:.0} chunk={} secs={secs:.3} mib_s={:.1}{used}",
        total as f64 / MIB,
        buf.len(),
        total as f64 / MIB / secs,
    ))
}

/// Client-mode download: a plain TCP client writes an 8-byte big-endian
/// count, then reads that many bytes. The WebSocket source sends exactly
/// that many (in messages of its `--msg` size) and closes; the TCP source
/// peer (the floor) ignores the count and streams. `cpu` as in
/// [`tcp_upload`].
pub fn tcp_download(addr: &str, total: u64, cpu: Cpu, timeout: Duration) -> io::Result<String> {
    use std::io::Read;
    let mut s = tcp_connect(addr, timeout)?;
    let mut buf = vec![0u8; 256 * 1024];
    let cpu0 = cpu.sample();
    let start = Instant::now();
    s.write_all(&total.to_be_bytes())?;
    let mut got = 0u64;
    let mut reads = 0u64;
    while got < total {
        let want = buf
            .len()
            .min(usize::try_from(total - got).unwrap_or(usize::MAX));
        match s.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("connection closed after {got} of {total} bytes"),
                ))
            }
            Ok(n) => {
                got += n as u64;
                reads += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let used = cpu.since(cpu0);
    Ok(format!(
        "total_mib={:.0} secs={secs:.3} mib_s={:.1} reads={reads} avg_read={:.0}{used}",
        got as f64 / MIB,
        got as f64 / MIB / secs,
        got as f64 / reads.max(1) as f64,
    ))
}

/// Scenario 2: one connection, a writer streaming `total` bytes in `msg`
/// byte messages through the echo peer, a reader thread counting them back.
pub fn echo_throughput(
    url: &str,
    total: u64,
    msg: usize,
    cpu: Cpu,
    timeout: Duration,
) -> io::Result<String> {
    let s = ws::connect(url, timeout)?;
    let messages = total / msg as u64;
    let total = messages * msg as u64;
    let frame = ws::masked_frame(&ws::pattern(msg));
    // Small frames are written in batches of about 64 KiB, as a buffered
    // writer would.
    let per_batch = (64 * 1024 / frame.len()).max(1) as u64;
    let batch = frame.repeat(per_batch as usize);

    let mut reader = FrameReader::new(s.try_clone()?, 1 << 20);
    reader.answer_pings = false;
    let reading = thread::spawn(move || -> io::Result<(Instant, u64, u64)> {
        let (frames, got) = reader.read_bytes(total, &mut |_| {})?;
        Ok((Instant::now(), frames, got))
    });

    let mut w = &s;
    let cpu0 = cpu.sample();
    let start = Instant::now();
    let mut left = messages;
    while left >= per_batch {
        w.write_all(&batch)?;
        left -= per_batch;
    }
    w.write_all(&batch[..left as usize * frame.len()])?;
    let (done, frames, got) = reading
        .join()
        .map_err(|_| io::Error::other("reader panicked"))??;
    let used = cpu.since(cpu0);
    ws::close(&s);
    if got != total {
        return Err(io::Error::other(format!(
            "sent {total} bytes, {got} came back"
        )));
    }
    let secs = done.duration_since(start).as_secs_f64();
    Ok(format!(
        "total_mib={:.0} msg={msg} secs={secs:.3} mib_s={:.1} msgs_s={:.0} frames_back={frames}{used}",
        total as f64 / MIB,
        total as f64 / MIB / secs,
        messages as f64 / secs,
    ))
}

/// Scenario 3: the source peer streams; the client only reads (`ws://` or
/// `wss://`).
pub fn source_throughput(
    url: &str,
    total: u64,
    cpu: Cpu,
    timeout: Duration,
    tls: &TlsOptions,
) -> io::Result<String> {
    match ws::connect_stream(url, timeout, tls)? {
        Stream::Plain(s) => source_on(s, total, cpu, String::new()),
        Stream::Tls(s) => {
            let info = ws::tls_info(&s);
            source_on(s, total, cpu, info)
        }
    }
}

fn source_on<S: Conn>(s: S, total: u64, cpu: Cpu, info: String) -> io::Result<String> {
    let mut r = FrameReader::new(s, 1 << 20);
    let cpu0 = cpu.sample();
    let start = Instant::now();
    let (frames, got) = r.read_bytes(total, &mut |_| {})?;
    let secs = start.elapsed().as_secs_f64();
    let used = cpu.since(cpu0);
    ws::close_conn(r.stream());
    Ok(format!(
        "total_mib={:.0} secs={secs:.3} mib_s={:.1} frames={frames} avg_frame={:.0}{used}{info}",
        got as f64 / MIB,
        got as f64 / MIB / secs,
        got as f64 / frames.max(1) as f64,
    ))
}

/// What the sink peer answers once it has all the bytes it was told of.
pub const SINK_ACK: u8 = 0x06;

/// Scenario 6: the client streams `total` bytes in `msg` byte messages to
/// the sink peer, which answers one byte when it has them all (`ws://` or
/// `wss://`). The first message is the total, 8 bytes big-endian, so the
/// sink knows when to answer.
pub fn upload_throughput(
    url: &str,
    total: u64,
    msg: usize,
    cpu: Cpu,
    timeout: Duration,
    tls: &TlsOptions,
) -> io::Result<String> {
    match ws::connect_stream(url, timeout, tls)? {
        Stream::Plain(s) => upload_on(s, total, msg, cpu, String::new()),
        Stream::Tls(s) => {
            let info = ws::tls_info(&s);
            upload_on(s, total, msg, cpu, info)
        }
    }
}

fn upload_on<S: Conn>(s: S, total: u64, msg: usize, cpu: Cpu, info: String) -> io::Result<String> {
    let messages = total / msg as u64;
    let total = messages * msg as u64;
    let header = ws::masked_frame(&total.to_be_bytes());
    let frame = ws::masked_frame(&ws::pattern(msg));
    // Small frames are written in batches of about 64 KiB, as in echo.
    let per_batch = (64 * 1024 / frame.len()).max(1) as u64;
    let batch = frame.repeat(per_batch as usize);
    let mut r = FrameReader::new(s, 4096);
    let cpu0 = cpu.sample();
    let start = Instant::now();
    r.stream().write_all(&header)?;
    let mut left = messages;
    while left >= per_batch {
        r.stream().write_all(&batch)?;
        left -= per_batch;
    }
    r.stream()
        .write_all(&batch[..left as usize * frame.len()])?;
    let mut ack = Vec::new();
    r.read_bytes(1, &mut |p| ack.extend_from_slice(p))?;
    let secs = start.elapsed().as_secs_f64();
    let used = cpu.since(cpu0);
    ws::close_conn(r.stream());
    if ack != [SINK_ACK] {
        return Err(io::Error::other(format!(
            "the sink answered {ack:?} instead of [{SINK_ACK}]"
        )));
    }
    Ok(format!(
        "total_mib={:.0} msg={msg} secs={secs:.3} mib_s={:.1} msgs_s={:.0}{used}{info}",
        total as f64 / MIB,
        total as f64 / MIB / secs,
        messages as f64 / secs,
    ))
}

/// Memory of a process and all its descendants (websockify forks one
/// process per connection).
struct TreeMem {
    procs: usize,
    rss_kib: u64,
    pss_kib: u64,
}

fn status_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn descendants(root: u32) -> Vec<u32> {
    let mut parent = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...; comm may hold spaces.
            let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
            if let Some(ppid) = after
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u32>().ok())
            {
                parent.push((pid, ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

fn tree_mem(root: u32) -> TreeMem {
    let mut m = TreeMem {
        procs: 0,
        rss_kib: 0,
        pss_kib: 0,
    };
    for pid in descendants(root) {
        if let Ok(st) = fs::read_to_string(format!("/proc/{pid}/status")) {
            m.procs += 1;
            m.rss_kib += status_field(&st, "VmRSS:");
        }
        if let Ok(sm) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) {
            m.pss_kib += status_field(&sm, "Pss:");
        }
    }
    m
}

fn mem_available_mib() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .map(|t| status_field(&t, "MemAvailable:") / 1024)
        .unwrap_or(u64::MAX)
}

/// Scenario 4: `n` idle upgraded connections; the bridge's memory before
/// and after, then one echo on each.
pub fn idle(
    url: &str,
    n: usize,
    pid: u32,
    min_avail_mib: u64,
    timeout: Duration,
) -> io::Result<String> {
    let before = tree_mem(pid);
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut stop = String::from("none");
    for i in 0..n {
        if i % 100 == 0 && mem_available_mib() < min_avail_mib {
            stop = format!("memory_below_{min_avail_mib}MiB");
            break;
        }
        match ws::connect(url, timeout) {
            Ok(s) => conns.push(s),
            Err(e) => {
                stop = format!(
                    "connect_{}_failed:{}",
                    i + 1,
                    e.to_string().replace(char::is_whitespace, "_")
                );
                break;
            }
        }
    }
    let open_secs = start.elapsed().as_secs_f64();
    let after = tree_mem(pid);
    let opened = conns.len();

    let payload = ws::pattern(16);
    let frame = ws::masked_frame(&payload);
    let mut ok = 0usize;
    let mut got = Vec::new();
    for s in &conns {
        let good = s.try_clone().and_then(|c| {
            let mut r = FrameReader::new(c, 4096);
            round_trip(&mut r, &frame, payload.len(), &payload, &mut got)
        });
        if good.is_ok() {
            ok += 1;
        }
    }
    let verify_secs = start.elapsed().as_secs_f64() - open_secs;
    for s in &conns {
        ws::close(s);
    }
    let per = |a: u64, b: u64| {
        if opened > 0 {
            a.saturating_sub(b) as f64 / opened as f64
        } else {
            0.0
        }
    };
    Ok(format!(
        "requested={n} opened={opened} echo_ok={ok} stop={stop} open_secs={open_secs:.2} verify_secs={verify_secs:.2} \
         procs_before={} procs_after={} rss_before_kib={} rss_after_kib={} pss_before_kib={} pss_after_kib={} \
         rss_kib_per_conn={:.1} pss_kib_per_conn={:.1}",
        before.procs,
        after.procs,
        before.rss_kib,
        after.rss_kib,
        before.pss_kib,
        after.pss_kib,
        per(after.rss_kib, before.rss_kib),
        per(after.pss_kib, before.pss_kib),
    ))
}

/// Scenario 5: `conns` threads, each with its own connection, doing
/// `rounds` sequential round trips at the same time.
pub fn many(
    url: &str,
    conns: usize,
    rounds: usize,
    size: usize,
    cpu: Cpu,
    timeout: Duration,
) -> io::Result<String> {
    let barrier = Arc::new(Barrier::new(conns + 1));
    let mut handles = Vec::with_capacity(conns);
    for _ in 0..conns {
        let barrier = barrier.clone();
        let url = url.to_string();
        let h = thread::Builder::new().stack_size(256 * 1024).spawn(
            move || -> io::Result<(Vec<u64>, TcpStream)> {
                let conn = ws::connect(&url, timeout);
                barrier.wait();
                let s = conn?;
                let mut r = FrameReader::new(s, 16 * 1024);
                let payload = ws::pattern(size);
                let frame = ws::masked_frame(&payload);
                let mut got = Vec::with_capacity(size);
                let mut samples = Vec::with_capacity(rounds);
                for _ in 0..rounds {
                    samples.push(round_trip(&mut r, &frame, size, &payload, &mut got)?);
                }
                // Closed by the main thread after its CPU sample.
                Ok((samples, r.into_inner()))
            },
        )?;
        handles.push(h);
    }
    let cpu0 = cpu.sample();
    barrier.wait();
    let start = Instant::now();
    let mut all = Vec::with_capacity(conns * rounds);
    let mut socks = Vec::with_capacity(conns);
    let mut first_err = None;
    for h in handles {
        match h
            .join()
            .map_err(|_| io::Error::other("client thread panicked"))?
        {
            Ok((v, s)) => {
                all.extend(v);
                socks.push(s);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let used = cpu.since(cpu0);
    for s in &socks {
        ws::close(s);
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(format!(
        "conns={conns} rounds={rounds} size={size} secs={secs:.3} msgs_s={:.0} {}{used}",
        all.len() as f64 / secs,
        latency_summary(all),
    ))
}

/// Upgrades per second: `conns` clients, one thread each, released at
/// once by a barrier, each opening one connection (TCP connect and the
/// WebSocket handshake, until its 101 is read); the clock runs from the
/// release to the last 101. All connections stay open until every client
/// is done (so `conns` are open at once), then are closed. Also reports
/// each client's connect-to-101 time and the bridge's CPU per upgrade.
pub fn upgrades(url: &str, conns: usize, cpu: Cpu, timeout: Duration) -> io::Result<String> {
    let barrier = Arc::new(Barrier::new(conns + 1));
    let mut handles = Vec::with_capacity(conns);
    for _ in 0..conns {
        let barrier = barrier.clone();
        let url = url.to_string();
        let h = thread::Builder::new().stack_size(128 * 1024).spawn(
            move || -> io::Result<(u64, Instant, TcpStream)> {
                barrier.wait();
                let t = Instant::now();
                let s = ws::connect(&url, timeout)?;
                let done = Instant::now();
                Ok((done.duration_since(t).as_nanos() as u64, done, s))
            },
        )?;
        handles.push(h);
    }
    let cpu0 = cpu.sample();
    barrier.wait();
    let start = Instant::now();
    let mut times = Vec::with_capacity(conns);
    let mut socks = Vec::with_capacity(conns);
    let mut last = start;
    let mut failed = 0usize;
    let mut first_err = None;
    for h in handles {
        match h
            .join()
            .map_err(|_| io::Error::other("client thread panicked"))?
        {
            Ok((dt, done, s)) => {
                times.push(dt);
                last = last.max(done);
                socks.push(s);
            }
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
        }
    }
    let used = cpu.since(cpu0);
    for s in &socks {
        ws::close(s);
    }
    if socks.is_empty() {
        return Err(first_err.unwrap_or_else(|| io::Error::other("no connection opened")));
    }
    let secs = last.duration_since(start).as_secs_f64();
    times.sort_unstable();
    let ms = |ns: u64| format!("{:.2}", ns as f64 / 1e6);
    let err = first_err
        .map(|e| {
            format!(
                " first_error={}",
                e.to_string().replace(char::is_whitespace, "_")
            )
        })
        .unwrap_or_default();
    Ok(format!(
        "conns={conns} opened={} failed={failed} secs={secs:.3} upgrades_s={:.0} \
         median_ms={} p99_ms={} max_ms={}{used}{err}",
        socks.len(),
        socks.len() as f64 / secs,
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times.last().copied().unwrap_or(0)),
    ))
}
