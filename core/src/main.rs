use std::process::ExitCode;

use websocksy::config::{self, Parsed};
use websocksy::{backend, event_loop, framing};

fn main() -> ExitCode {
    // Before parsing: config warnings go through the logger.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let settings = match config::parse_args(std::env::args_os()) {
        Ok(Parsed::Run(s)) => s,
        Ok(Parsed::Exit { text, code }) => {
            print!("{text}");
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        Err(e) => {
            eprintln!("websocksy: {e}");
            return ExitCode::from(2);
        }
    };
    let framings = framing::Registry::with_builtins();
    let backend = match backend::create(&settings.backend, &settings.backend_options, &framings) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("websocksy: {e}");
            return ExitCode::from(2);
        }
    };
    let mut server = match event_loop::Server::bind(&settings, backend) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("websocksy: {e}");
            return ExitCode::from(1);
        }
    };
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("websocksy: {e}");
            ExitCode::from(1)
        }
    }
}
