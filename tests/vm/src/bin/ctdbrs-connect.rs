//! `ctdbrs-connect <socket>`: tries to connect to a Unix socket and reports how it
//! went, for tests that run a client under another user (`setpriv`) inside a node
//! sandbox. Prints `connected` and exits 0, or prints the error and exits with its
//! errno (13 for permission denied), or 1 when there is none.

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: ctdbrs-connect <socket>");
        std::process::exit(1);
    };
    match std::os::unix::net::UnixStream::connect(&path) {
        Ok(_) => println!("connected"),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(e.raw_os_error().unwrap_or(1));
        }
    }
}
