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

/// Fast round trips, then the CPU clock ticks the bridge uses in the
/// second after them, the connection left open and quiet.
fn ticks_after_traffic(b: &Bridge, s: &mut TcpStream) -> u64 {
    let msg = [7u8; 32];
    for _ in 0..3000 {
        s.write_all(&ws::binary(&msg)).unwrap();
        let f = ws::read_frame(s).expect("echo");
        assert_eq!(f.payload, msg);
    }
    let before = cpu_ticks(b.pid());
    std::thread::sleep(Duration::from_secs(1));
    cpu_ticks(b.pid()) - before
}

#[test]
fn a_fixed_window_spins_after_traffic_and_auto_sleeps_when_it_pauses() {
    // One second after every burst: the quiet second after the last one
    // is spent spinning (100 ticks on a CPU of its own).
    let (b, mut s) = mirror("1000000");
    let fixed = ticks_after_traffic(&b, &mut s);
    assert!(
        fixed >= 30,
        "--busy-poll 1000000 used only {fixed} ticks in the quiet second"
    );

    let (b, mut s) = mirror("auto");
    let auto = ticks_after_traffic(&b, &mut s);
    assert!(
        auto < 10,
        "--busy-poll auto used {auto} ticks in the quiet second"
    );
    // Still serving after its sleep.
    s.write_all(&ws::text("after")).unwrap();
    assert_eq!(ws::read_frame(&mut s).expect("echo").payload, b"after");
}
