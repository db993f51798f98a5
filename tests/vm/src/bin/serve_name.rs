//! `ctdbrs-serve-name <name> <port>`: the TCP service of the public-address
//! scenarios. Listens on every address of the namespace it runs in (so on whichever
//! public addresses the node hosts), writes `<name>\n` to every connection, then keeps
//! the connection open, reading until the client closes it (so that a client can hold
//! an idle connection, as an SMB client does). Prints `listening` once bound.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};

fn serve(mut stream: TcpStream, name: &str) {
    if stream.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 512];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(port)) = (args.next(), args.next()) else {
        eprintln!("usage: ctdbrs-serve-name <name> <port>");
        std::process::exit(2);
    };
    let port: u16 = port.parse().unwrap_or_else(|_| {
        eprintln!("not a port: {port}");
        std::process::exit(2);
    });
    let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap_or_else(|e| {
        eprintln!("binding port {port}: {e}");
        std::process::exit(1);
    });
    println!("listening");
    for stream in listener.incoming().flatten() {
        let name = name.clone();
        std::thread::spawn(move || serve(stream, &name));
    }
}
