//! `--busy-poll`: a fixed window spins as long as it is told after every
//! burst; `auto` spins only while the traffic is fast and sleeps as soon
//! as it pauses, so a bridge left idle after heavy traffic costs no CPU.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use websocksy_tests::{cpu_ticks, ws, Bridge};

fn mirror(busy_poll: &str) -> (Bridge, TcpStream) {
    let b = Bridge::start(&[
        "--threads",
        "1",
        "-k",
        "0",
        "--busy-poll",
        busy_poll,
        "-c",
        "host=mirror://",
    ]);
    let mut s = b.connect();
    let r = ws::upgrade(&mut s, "/", &[]);
    assert_eq!(r.status, 101, "{r:?}");
    (b, s)
}

/// The times the bridge's loop (its main thread, with `--threads 1`) went
/// to sleep on its own so far.
fn sleeps(b: &Bridge) -> u64 {
    let pid = b.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/status"))
        .expect("read the loop thread's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches")
}

const ROUND_TRIPS: u64 = 3000;

/// Fast round trips; returns how often the loop slept during them.
fn traffic(b: &Bridge, s: &mut TcpStream) -> u64 {
    let msg = [7u8; 32];
    let slept = sleeps(b);
    for _ in 0..ROUND_TRIPS {
        s.write_all(&ws::binary(&msg)).unwrap();
        let f = ws::read_frame(s).expect("echo");
        assert_eq!(f.payload, msg);
    }
    sleeps(b) - slept
}

/// The CPU clock ticks the bridge uses in the next second.
fn quiet_second(b: &Bridge) -> u64 {
    let before = cpu_ticks(b.pid());
    std::thread::sleep(Duration::from_secs(1));
    cpu_ticks(b.pid()) - before
}

#[test]
fn auto_spins_while_round_trips_are_fast() {
    // Without spinning the loop sleeps for every client message (less
    // often when other work keeps it from the CPU: the next message is
    // then there when it runs again). With auto it spins between them,
    // the client answering well within its window, unless other work
    // makes its spins miss: up to five tries, side by side.
    let mut seen = Vec::new();
    let spun = (0..5).any(|_| {
        let (b, mut s) = mirror("0");
        let off = traffic(&b, &mut s);
        let (b, mut s) = mirror("auto");
        let auto = traffic(&b, &mut s);
        seen.push((off, auto));
        auto * 3 < off * 2
    });
    assert!(
        spun,
        "(sleeps with --busy-poll 0, with auto) in {ROUND_TRIPS} round trips: {seen:?}"
    );
}

#[test]
fn a_fixed_window_spins_after_traffic_and_auto_sleeps_when_it_pauses() {
    // One second after every burst: the quiet second after the last one
    // is spent spinning (100 ticks on a CPU of its own).
    let (b, mut s) = mirror("1000000");
    traffic(&b, &mut s);
    let fixed = quiet_second(&b);
    assert!(
        fixed >= 30,
        "--busy-poll 1000000 used only {fixed} ticks in the quiet second"
    );
    // Gone before the next bridge runs: it would spin on a core for a
    // second after each burst.
    drop((b, s));

    let (b, mut s) = mirror("auto");
    traffic(&b, &mut s);
    let auto = quiet_second(&b);
    assert!(
        auto < 10,
        "--busy-poll auto used {auto} ticks in the quiet second"
    );
    // Still serving after its sleep.
    s.write_all(&ws::text("after")).unwrap();
    assert_eq!(ws::read_frame(&mut s).expect("echo").payload, b"after");
}
