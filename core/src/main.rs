use std::process::ExitCode;

use websocksy::config::{self, Parsed};
use websocksy::{admission, backend, connector, framing, plugin, server, tls_context};

fn main() -> ExitCode {
    // Before parsing: config warnings go through the logger.
    // env_logger's own format, plus the event loop a line comes from
    // (`--threads`): `[TIME LEVEL MODULE loop N] message`.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            use std::io::Write;
            let ts = buf.timestamp();
            let level = record.level();
            let style = buf.default_level_style(level);
            let target = record.target();
            match websocksy::event_loop::current_loop() {
                Some(l) => writeln!(
                    buf,
                    "[{ts} {style}{level:<5}{style:#} {target} loop {l}] {}",
                    record.args()
                ),
                None => writeln!(
                    buf,
                    "[{ts} {style}{level:<5}{style:#} {target}] {}",
                    record.args()
                ),
            }
        })
        .init();
    let settings = match config::parse_args(std::env::args_os()) {
        Ok(Parsed::Run(s)) => s,
        Ok(Parsed::Exit { text, code }) => {
            print!("{text}");
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        Err(e) => return startup_error(&e.to_string()),
    };
    // Credentials are read once, here: a bad file stops the start.
    let admission = match admission::Admission::new(&settings) {
        Ok(a) => a,
        Err(e) => return startup_error(&e),
    };
    // Certificate files are read now, so a bad one is a start-up error.
    let tls = match tls_context::ServerTls::load(&settings) {
        Ok(t) => t,
        Err(e) => return startup_error(&e),
    };
    let peer_tls = match tls_context::PeerTls::load(&settings, backend_peer_ca(&settings)) {
        Ok(t) => t,
        Err(e) => return startup_error(&e),
    };
    // Built-ins first, then plugins (which may replace them by name).
    plugin::v1::keep_exports();
    let mut framings = framing::Registry::with_builtins();
    let plugins = match plugin::Plugins::load(&settings, &mut framings) {
        Ok(p) => p,
        Err(e) => return startup_error(&e),
    };
    plugin::v1::set_registry(&framings);
    // Every framing is registered now; configure them before the backend is
    // created, since it may already make a state (the defaultpeer checks
    // its framing-config).
    if let Err(e) = framings.configure(&settings.framing_options) {
        return startup_error(&e);
    }
    let backend = match backend::create(
        &settings.backend,
        &settings.backend_options,
        &framings,
        &plugins,
    ) {
        Ok(b) => b,
        Err(e) => return startup_error(&e),
    };
    // Client connections: framings, TLS and credentials checked now.
    let mut connectors = Vec::new();
    for c in &settings.connects {
        match connector::Connector::new(c, &settings, &framings) {
            Ok(c) => connectors.push(std::sync::Arc::new(c)),
            Err(e) => {
                backend.shutdown();
                return startup_error(&e);
            }
        }
    }
    let mut server = match server::Server::bind(
        &settings,
        backend.clone(),
        admission,
        tls,
        peer_tls,
        connectors,
    ) {
        Ok(s) => s,
        Err(e) => {
            backend.shutdown();
            eprintln!("websocksy: {e}");
            return ExitCode::from(1);
        }
    };
    let result = server.run();
    // Sessions (and their framing states) go first, then the backend's cleanup.
    drop(server);
    backend.shutdown();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("websocksy: {e}");
            ExitCode::from(1)
        }
    }
}

/// The default backend's `peer-ca` option (the last one given): the same
/// as `--peer-ca`, which wins.
fn backend_peer_ca(s: &config::Settings) -> Option<config::Located<std::path::PathBuf>> {
    if s.backend != "defaultpeer" {
        return None;
    }
    s.backend_options
        .iter()
        .rev()
        .find(|o| o.key == "peer-ca")
        .map(|o| config::Located {
            value: o.value.clone().into(),
            at: o.origin.to_string(),
        })
}

/// A start-up error: one line, exit status 2.
fn startup_error(msg: &str) -> ExitCode {
    eprintln!("websocksy: {msg}");
    ExitCode::from(2)
}
