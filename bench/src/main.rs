//! `wsbench`: client, TCP peers and report writer for the bridge
//! benchmarks. Driven by `bench/run.sh`; see BENCHMARKS.md.

mod peer;
mod report;
mod scenarios;
mod ws;
mod wspeer;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: wsbench COMMAND [--option value]...

  serve [--max-secs 7200]            TCP echo, source and sink peers on
                                     ephemeral ports; prints
                                     `echo=PORT source=PORT sink=PORT`
  ws-serve [--max-secs 7200] [--msg 65536]
                                     WebSocket echo, source and sink servers
                                     (for bridges in client mode) on
                                     ephemeral ports; prints
                                     `echo=PORT source=PORT sink=PORT`.
                                     echo: each frame back as it came;
                                     sink: an 8-byte big-endian count, then
                                     that many payload bytes, answered by a
                                     one-byte binary message; source: waits
                                     for such a count, sends that many bytes
                                     in --msg byte binary messages, closes
  free-port                          prints a port that was free just now
  wait --addr HOST:PORT [--timeout 10]
                                     connects until the port accepts
  latency --url URL [--count 20000] [--warmup 1000] [--size 64]
  tcp-latency --addr HOST:PORT [--count 20000] [--warmup 1000] [--size 64]
                                     the same over plain TCP (baseline, or
                                     into a client-mode bridge's port)
  tcp-upload --addr HOST:PORT [--total-mib 1024] [--chunk 65536]
                                     plain TCP: an 8-byte count, then the
                                     bytes in --chunk byte writes; waits for
                                     the sink's one-byte answer
  tcp-download --addr HOST:PORT [--total-mib 1024]
                                     plain TCP: writes an 8-byte count, reads
                                     that many bytes
  echo --url URL [--total-mib 1024] [--msg 65536]
  source --url URL [--total-mib 1024]
  upload --url URL [--total-mib 1024] [--msg 65536]
                                     client -> sink peer; the sink answers
                                     one byte after the last
  idle --url URL --pid PID [--conns 5000] [--min-avail-mib 4096]
  many --url URL [--conns 100] [--rounds 1000] [--size 64]
                                     --conns clients (a thread each) doing
                                     --rounds round trips at once
  upgrades --url URL [--conns 1000]  --conns clients (a thread each)
                                     released at once, each opening one
                                     connection; upgrades/s from the release
                                     to the last 101, all kept open until
                                     the last, then closed
  report --results FILE --meta FILE --commands FILE [--tls FILE]
         [--client-commands FILE]    prints BENCHMARKS.md (with FILE, the
                                     wss:// section tls.sh wrote, inside;
                                     the client-mode section's commands)
  tls-report --results FILE --meta FILE --commands FILE
                                     prints that wss:// section

Every measuring command accepts --timeout SECS (socket timeout, default 60)
and prints one line of key=value pairs. latency, echo, source, upload, many
and upgrades also
take --pid PID (the bridge): its CPU time (and its children's) during the
measurement is reported as bridge_cpu_s (tcp-latency, tcp-upload and
tcp-download too, when they measure a bridge in client mode).

latency, source and upload also take wss:// URLs: --ca PEM verifies the
bridge's certificate for the name localhost (default: no verification),
--ciphersuites LIST sets the TLS 1.3 suites (default: OpenSSL's).
";

struct Args(HashMap<String, String>);

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut m = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let key = a
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument '{a}'"))?;
            let val = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            m.insert(key.to_string(), val.clone());
        }
        Ok(Args(m))
    }
    fn str(&self, k: &str) -> Result<&str, String> {
        self.0
            .get(k)
            .map(|s| s.as_str())
            .ok_or_else(|| format!("--{k} is required"))
    }
    fn num<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T, String> {
        match self.0.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{k}: not a number: {v}")),
        }
    }
}

fn wait_port(addr: &str, timeout: Duration) -> io::Result<()> {
    let sa = addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot resolve {addr}"),
        )
    })?;
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect_timeout(&sa, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{addr} not accepting after {timeout:?}: {e}"),
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn run(cmd: &str, a: &Args) -> Result<(), String> {
    let timeout = Duration::from_secs(a.num("timeout", 60u64)?);
    let cpu = scenarios::Cpu(match a.0.get("pid") {
        Some(p) => Some(p.parse().map_err(|_| "--pid: not a number".to_string())?),
        None => None,
    });
    let tls = ws::TlsOptions {
        ca: a.0.get("ca").cloned(),
        ciphersuites: a.0.get("ciphersuites").cloned(),
    };
    let e = |e: io::Error| e.to_string();
    let line = match cmd {
        "serve" => return peer::serve(a.num("max-secs", 7200)?).map_err(e),
        "ws-serve" => {
            return wspeer::serve(a.num("max-secs", 7200)?, a.num("msg", 65536)?).map_err(e)
        }
        "free-port" => {
            let l = TcpListener::bind("127.0.0.1:0").map_err(e)?;
            l.local_addr().map_err(e)?.port().to_string()
        }
        "wait" => {
            wait_port(
                a.str("addr")?,
                Duration::from_secs(a.num("timeout", 10u64)?),
            )
            .map_err(e)?;
            return Ok(());
        }
        "latency" => scenarios::latency(
            a.str("url")?,
            a.num("count", 20_000)?,
            a.num("warmup", 1_000)?,
            a.num("size", 64)?,
            cpu,
            timeout,
            &tls,
        )
        .map_err(e)?,
        "tcp-latency" => scenarios::tcp_latency(
            a.str("addr")?,
            a.num("count", 20_000)?,
            a.num("warmup", 1_000)?,
            a.num("size", 64)?,
            cpu,
            timeout,
        )
        .map_err(e)?,
        "tcp-upload" => scenarios::tcp_upload(
            a.str("addr")?,
            a.num("total-mib", 1024u64)? << 20,
            a.num("chunk", 65536)?,
            cpu,
            timeout,
        )
        .map_err(e)?,
        "tcp-download" => scenarios::tcp_download(
            a.str("addr")?,
            a.num("total-mib", 1024u64)? << 20,
            cpu,
            timeout,
        )
        .map_err(e)?,
        "echo" => scenarios::echo_throughput(
            a.str("url")?,
            a.num("total-mib", 1024u64)? << 20,
            a.num("msg", 65536)?,
            cpu,
            timeout,
        )
        .map_err(e)?,
        "source" => scenarios::source_throughput(
            a.str("url")?,
            a.num("total-mib", 1024u64)? << 20,
            cpu,
            timeout,
            &tls,
        )
        .map_err(e)?,
        "upload" => scenarios::upload_throughput(
            a.str("url")?,
            a.num("total-mib", 1024u64)? << 20,
            a.num("msg", 65536)?,
            cpu,
            timeout,
            &tls,
        )
        .map_err(e)?,
        "idle" => scenarios::idle(
            a.str("url")?,
            a.num("conns", 5000)?,
            a.str("pid")?
                .parse()
                .map_err(|_| "--pid: not a number".to_string())?,
            a.num("min-avail-mib", 4096)?,
            timeout,
        )
        .map_err(e)?,
        "many" => scenarios::many(
            a.str("url")?,
            a.num("conns", 100)?,
            a.num("rounds", 1000)?,
            a.num("size", 64)?,
            cpu,
            timeout,
        )
        .map_err(e)?,
        "upgrades" => {
            scenarios::upgrades(a.str("url")?, a.num("conns", 1000)?, cpu, timeout).map_err(e)?
        }
        "report" => report::render(
            a.str("results")?,
            a.str("meta")?,
            a.str("commands")?,
            a.0.get("tls").map(String::as_str),
            a.0.get("client-commands").map(String::as_str),
        )
        .map_err(e)?,
        "tls-report" => {
            report::render_tls(a.str("results")?, a.str("meta")?, a.str("commands")?).map_err(e)?
        }
        _ => return Err(format!("unknown command '{cmd}'\n{USAGE}")),
    };
    let mut out = io::stdout().lock();
    writeln!(out, "{line}").map_err(e)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    if cmd == "-h" || cmd == "--help" {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match Args::parse(&argv[1..]) {
        Ok(a) => a,
        Err(m) => {
            eprintln!("wsbench: {m}");
            return ExitCode::from(2);
        }
    };
    match run(cmd, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(m) => {
            eprintln!("wsbench {cmd}: {}", m.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
