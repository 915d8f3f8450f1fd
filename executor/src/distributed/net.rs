//! Addresses and ports of a Ballista cluster's processes.

use std::net::{ToSocketAddrs, UdpSocket};

/// The local address packets to `host:port` leave from: what this host is
/// reached at from there (a container on AWS Batch: its own network
/// interface). A UDP "connect" sends nothing; it only picks the route.
pub fn route_address(host: &str, port: u16) -> std::io::Result<String> {
    let target = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} resolves to no address")))?;
    let bind = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(target)?;
    Ok(socket.local_addr()?.ip().to_string())
}

/// `port`, or for 0 one that is free now: Ballista advertises the
/// configured port, not the one a listener on port 0 gets, so a port is
/// picked before the executor binds it.
pub fn pick_port(port: u16) -> std::io::Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    Ok(std::net::TcpListener::bind("0.0.0.0:0")?
        .local_addr()?
        .port())
}
