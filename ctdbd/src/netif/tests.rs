//! Tests of the netif edge against a real kernel, each inside private network
//! namespaces so the host's interfaces are never touched.
//!
//! [`in_netns`] runs a test body on a new thread that first calls
//! `unshare(CLONE_NEWNET)`: that moves only the calling thread into a fresh network
//! namespace (threads have their own namespace pointers), and sockets the thread
//! opens belong to that namespace. The namespace holds nothing but `lo` until the
//! test makes veth pairs in it. Cleanup is the kernel's: a network namespace lives
//! while a thread is in it or a socket or link belongs to it; when the thread ends
//! and its sockets are closed, the namespace, its veths and their addresses go with
//! it, even when the test panics. Nothing is ever left on the host.
//!
//! These tests need root (CAP_NET_ADMIN for namespaces and links, CAP_NET_RAW for
//! the raw sockets) and fail loudly without it: a skipped test proves nothing.

use std::fs::File;
use std::future::Future;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use nix::sys::socket::{self, sockopt, AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;
use rtnetlink::{Handle, LinkUnspec, LinkVeth};
use tokio::sync::mpsc;

use super::*;

/// Lower-case hex of `bytes`, for byte-exact comparisons that print readably.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How long any wait for the kernel may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(5);

/// Runs `body` on a new thread inside a new network namespace and returns its
/// result; a panic in `body` fails the calling test. See the module docs for why
/// this touches nothing outside.
fn in_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the netif namespace tests need root (CAP_NET_ADMIN and CAP_NET_RAW); run them as root"
    );
    let thread = thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) failed");
        body()
    });
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Like [`in_netns`] but returns the running thread, for tests that coordinate
/// several namespaces.
fn spawn_in_netns<T: Send + 'static>(
    body: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .expect("unshare(CLONE_NEWNET) failed");
        body()
    })
}

/// A runtime on the current thread, so every task it runs stays in this
/// thread's namespace.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
        .block_on(future)
}

/// An rtnetlink handle for test set-up (the code under test uses [`Netlink`]).
fn setup_handle() -> Handle {
    let (connection, handle, _) = rtnetlink::new_connection().expect("netlink socket");
    tokio::spawn(connection);
    handle
}

async fn index_of(handle: &Handle, name: &str) -> u32 {
    handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
        .expect("link lookup")
        .expect("link exists")
        .header
        .index
}

async fn set_link(handle: &Handle, name: &str, up: bool) {
    let index = index_of(handle, name).await;
    let builder = LinkUnspec::new_with_index(index);
    let message = if up { builder.up() } else { builder.down() }.build();
    handle
        .link()
        .set(message)
        .execute()
        .await
        .expect("link set");
}

/// Brings `lo` up and makes a veth pair `a`/`b`, both up.
async fn veth_pair(handle: &Handle, a: &str, b: &str) {
    set_link(handle, "lo", true).await;
    handle
        .link()
        .add(LinkVeth::new(a, b).build())
        .execute()
        .await
        .expect("creating veth pair");
    set_link(handle, a, true).await;
    set_link(handle, b, true).await;
}

/// Moves link `name` into the namespace `netns` (an open `/proc/.../ns/net`).
async fn move_link(handle: &Handle, name: &str, netns: &File) {
    let index = index_of(handle, name).await;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .setns_by_fd(netns.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .expect("moving link to another namespace");
}

/// The calling thread's network namespace, to hand to another thread.
fn this_netns() -> File {
    File::open("/proc/thread-self/ns/net").expect("opening /proc/thread-self/ns/net")
}

/// Given: a namespace with a veth pair.
/// When: an IPv4 and an IPv6 address are added twice, listed, removed twice.
/// Then: repeats succeed, the list shows each address while it is configured and
/// not after; removing under the wrong prefix length fails; a missing interface is
/// named in the error.
#[test]
fn netif_addresses_add_list_remove_idempotent() {
    in_netns(|| {
        block_on(async {
            veth_pair(&setup_handle(), "pub0", "peer0").await;
            let netlink = Netlink::start().unwrap();
            let v4: IpAddr = Ipv4Addr::new(192, 0, 2, 1).into();
            let v6: IpAddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().into();

            for _ in 0..2 {
                netlink.add_address("pub0", v4, 24).await.unwrap();
                netlink.add_address("pub0", v6, 64).await.unwrap();
            }
            let listed = netlink.addresses("pub0").await.unwrap();
            assert!(listed.contains(&(v4, 24)), "{listed:?}");
            assert!(listed.contains(&(v6, 64)), "{listed:?}");
            assert_eq!(listed.iter().filter(|(ip, _)| *ip == v4).count(), 1);

            // Present under another prefix length is not "absent".
            assert!(matches!(
                netlink.remove_address("pub0", v4, 16).await,
                Err(NetlinkError::RemoveAddress { iface, addr, prefix_len: 16, .. })
                    if iface == "pub0" && addr == v4
            ));

            for _ in 0..2 {
                netlink.remove_address("pub0", v4, 24).await.unwrap();
                netlink.remove_address("pub0", v6, 64).await.unwrap();
            }
            let listed = netlink.addresses("pub0").await.unwrap();
            assert!(
                !listed.iter().any(|(ip, _)| *ip == v4 || *ip == v6),
                "{listed:?}"
            );

            assert!(netlink.link_up("pub0").await.unwrap());
            assert!(netlink.link_index("pub0").await.unwrap() > 1);
            assert_ne!(netlink.mac("pub0").await.unwrap(), [0; 6]);
            assert!(matches!(
                netlink.mac("lo").await,
                Err(NetlinkError::NoMac { iface }) if iface == "lo"
            ));
            match netlink.add_address("nosuch0", v4, 24).await {
                Err(NetlinkError::NoSuchInterface { iface }) => assert_eq!(iface, "nosuch0"),
                other => panic!("expected NoSuchInterface, got {other:?}"),
            }
        })
    });
}

/// Waits for `want` on `events`, ignoring other changes, up to [`DEADLINE`].
async fn expect_change(events: &mut mpsc::Receiver<LinkChange>, want: LinkChange) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(change) = events.recv().await {
            if change == want {
                return true;
            }
            seen.push(change);
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "waiting for {want:?}; saw {seen:?}");
}

/// Given: a veth pair and a link watcher.
/// When: the test sets one end down, then up.
/// Then: the watcher reports it down, then up (up meaning admin up with carrier).
#[test]
fn netif_link_watcher_reports_down_and_up() {
    in_netns(|| {
        block_on(async {
            let handle = setup_handle();
            veth_pair(&handle, "pub0", "peer0").await;
            let netlink = Netlink::start().unwrap();
            let (tx, mut events) = mpsc::channel(16);
            let _watcher = watch_links(tx).unwrap();
            assert!(netlink.link_up("pub0").await.unwrap());

            set_link(&handle, "pub0", false).await;
            let down = LinkChange {
                iface: "pub0".into(),
                up: false,
            };
            expect_change(&mut events, down).await;
            assert!(!netlink.link_up("pub0").await.unwrap());

            set_link(&handle, "pub0", true).await;
            let up = LinkChange {
                iface: "pub0".into(),
                up: true,
            };
            expect_change(&mut events, up).await;
        })
    });
}

/// A packet socket that receives every frame in this namespace, with a receive
/// timeout so a missing frame fails the test instead of hanging it.
fn capture_socket() -> OwnedFd {
    let fd = socket::socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )
    .expect("packet socket");
    socket::setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 200_000)).unwrap();
    fd
}

/// Reads frames arriving on interface `ifindex` until `wanted` says yes to one
/// (returned) or [`DEADLINE`] passes (panics, listing what came).
fn capture(fd: &OwnedFd, ifindex: u32, wanted: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < DEADLINE {
        match socket::recvfrom::<LinkAddr>(fd.as_raw_fd(), &mut buf) {
            Ok((n, Some(from))) if from.ifindex() == ifindex as usize => {
                let frame = &buf[..n];
                if wanted(frame) {
                    return frame.to_vec();
                }
                seen.push(hex(frame));
            }
            Ok(_) => {}
            Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => panic!("recvfrom: {e}"),
        }
    }
    panic!("no matching frame on ifindex {ifindex}; saw {seen:#?}");
}

/// Given: a veth pair pub0/peer0, a capture on peer0.
/// When: announce() for an IPv4 and an IPv6 address on pub0.
/// Then: peer0 receives exactly the encoders' frames: the gratuitous ARP request
/// and reply, and the unsolicited NA with our MAC as target link-layer address.
#[test]
fn netif_announce_is_received_on_peer() {
    in_netns(|| {
        block_on(async {
            let handle = setup_handle();
            veth_pair(&handle, "pub0", "peer0").await;
            let netlink = Netlink::start().unwrap();
            let announcer = Announcer::new(netlink.clone());
            let v4 = Ipv4Addr::new(192, 0, 2, 1);
            let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
            netlink.add_address("pub0", v4.into(), 24).await.unwrap();
            netlink.add_address("pub0", v6.into(), 64).await.unwrap();
            let mac = netlink.mac("pub0").await.unwrap();
            let peer = netlink.link_index("peer0").await.unwrap();

            let fd = capture_socket();
            announcer.announce("pub0", v4.into()).await.unwrap();
            announcer.announce("pub0", v6.into()).await.unwrap();

            let [request, reply] = arp::gratuitous_arps(mac, v4);
            let got = capture(&fd, peer, |f| f == request);
            assert_eq!(got[28..32], v4.octets(), "sender IP");
            capture(&fd, peer, |f| f == reply);
            let na = ndp::unsolicited_na(mac, v6);
            let got = capture(&fd, peer, |f| f == na);
            assert_eq!(got[80..86], mac, "target link-layer address");
        })
    });
}

/// Given: a veth pair pub0/peer0 with 192.0.2.1 and 2001:db8::1 on pub0, and a
/// capture on peer0.
/// When: tickle() (IPv6) and reset() (IPv4) from the public addresses to clients
/// behind peer0.
/// Then: the IP packets that arrive on peer0 are byte for byte the encoders' (the
/// raw sockets sent our headers unchanged and the kernel routed them out of pub0).
#[test]
fn netif_segments_leave_unchanged() {
    in_netns(|| {
        block_on(async {
            let handle = setup_handle();
            veth_pair(&handle, "pub0", "peer0").await;
            let netlink = Netlink::start().unwrap();
            let announcer = Announcer::new(netlink.clone());
            netlink
                .add_address("pub0", Ipv4Addr::new(192, 0, 2, 1).into(), 24)
                .await
                .unwrap();
            netlink
                .add_address(
                    "pub0",
                    "2001:db8::1".parse::<Ipv6Addr>().unwrap().into(),
                    64,
                )
                .await
                .unwrap();
            let peer = netlink.link_index("peer0").await.unwrap();
            // The clients need no existence beyond a neighbour entry, so the kernel
            // sends to a MAC instead of resolving first (no one would answer).
            let peer_mac = netlink.mac("peer0").await.unwrap();
            let pub0 = netlink.link_index("pub0").await.unwrap();
            for ip in ["192.0.2.2", "2001:db8::2"] {
                handle
                    .neighbours()
                    .add(pub0, ip.parse().unwrap())
                    .link_layer_address(&peer_mac)
                    .execute()
                    .await
                    .expect("adding a permanent neighbour entry");
            }

            let fd = capture_socket();
            let server: SocketAddr = "[2001:db8::1]:445".parse().unwrap();
            let client: SocketAddr = "[2001:db8::2]:50000".parse().unwrap();
            announcer.tickle(server, client).unwrap();
            let want = tcp::tickle_ack(server, client).unwrap();
            capture(&fd, peer, |f| f.len() >= 14 && f[14..] == want[..]);

            let server: SocketAddr = "192.0.2.1:445".parse().unwrap();
            let client: SocketAddr = "192.0.2.2:50000".parse().unwrap();
            announcer
                .reset(server, client, 0x1234_5678, 0x9abc_def0)
                .unwrap();
            let want = tcp::reset(server, client, 0x1234_5678, 0x9abc_def0).unwrap();
            capture(&fd, peer, |f| f.len() >= 14 && f[14..] == want[..]);
        })
    });
}

/// A failover, end to end, in three namespaces:
///
/// ```text
///   client C                 server S              takeover S2
///   pub-c 192.0.2.2/24 ==== pub-s 192.0.2.1/24
///   connected to 192.0.2.1:4455, idle
///                            pub-s moves to S2 ---> pub-s 192.0.2.1/24
///                            S closes its sockets
///                            (nothing reaches C)
/// ```
/// Given: an idle TCP connection from C to S, then S's interface and public address
/// moved to S2 and S gone, so nothing remembers the connection on the server side.
/// When: C reads, first without a tickle, then after S2 calls tickle().
/// Then: without the tickle the read hangs (times out); with it, the read fails with
/// ECONNRESET within a second.
#[test]
fn netif_tickle_resets_client_after_takeover() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the netif namespace tests need root (CAP_NET_ADMIN and CAP_NET_RAW); run them as root"
    );
    let public = Ipv4Addr::new(192, 0, 2, 1);
    let port = 4455;
    let server_addr = SocketAddr::from((public, port));

    // S: receives pub-s from C, serves one connection, then hands pub-s to S2 and
    // drops its sockets with nothing left to carry a FIN or RST to C.
    let (s_ns_tx, s_ns_rx) = std_mpsc::channel::<File>();
    let (s_go_tx, s_go_rx) = std_mpsc::channel::<File>();
    let (s_ready_tx, s_ready_rx) = std_mpsc::channel::<()>();
    let (s_gone_tx, s_gone_rx) = std_mpsc::channel::<()>();
    let server = spawn_in_netns(move || {
        s_ns_tx.send(this_netns()).unwrap();
        let listener = block_on(async {
            // Wait for C to move pub-s here.
            let handle = setup_handle();
            let start = Instant::now();
            while handle
                .link()
                .get()
                .match_name("pub-s")
                .execute()
                .try_next()
                .await
                .is_err()
            {
                assert!(start.elapsed() < DEADLINE, "pub-s never arrived in S");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            set_link(&handle, "lo", true).await;
            set_link(&handle, "pub-s", true).await;
            Netlink::start()
                .unwrap()
                .add_address("pub-s", public.into(), 24)
                .await
                .unwrap();
            TcpListener::bind(server_addr).expect("binding the server")
        });
        s_ready_tx.send(()).unwrap();
        // Non-blocking with a deadline, so a failure in C fails this thread too
        // instead of leaving it in accept() for ever.
        listener.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let accepted = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(start.elapsed() < DEADLINE, "C never connected");
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        let s2_netns = s_go_rx.recv().unwrap();
        block_on(async { move_link(&setup_handle(), "pub-s", &s2_netns).await });
        // Linger 0 turns close into a RST instead of a FIN; with pub-s gone there is
        // no route to C, so neither leaves the namespace. C must learn of the loss
        // from the tickle alone.
        socket::setsockopt(
            &accepted,
            sockopt::Linger,
            &libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        )
        .unwrap();
        drop(accepted);
        drop(listener);
        s_gone_tx.send(()).unwrap();
    });

    // S2: takes pub-s and the public address, then tickles when told.
    let (s2_ns_tx, s2_ns_rx) = std_mpsc::channel::<File>();
    let (s2_tickle_tx, s2_tickle_rx) = std_mpsc::channel::<SocketAddr>();
    let (s2_ready_tx, s2_ready_rx) = std_mpsc::channel::<()>();
    let (s2_done_tx, s2_done_rx) = std_mpsc::channel::<()>();
    let (s2_finish_tx, s2_finish_rx) = std_mpsc::channel::<()>();
    let takeover = spawn_in_netns(move || {
        s2_ns_tx.send(this_netns()).unwrap();
        block_on(async {
            let handle = setup_handle();
            let start = Instant::now();
            while handle
                .link()
                .get()
                .match_name("pub-s")
                .execute()
                .try_next()
                .await
                .is_err()
            {
                assert!(start.elapsed() < DEADLINE, "pub-s never arrived in S2");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            set_link(&handle, "lo", true).await;
            set_link(&handle, "pub-s", true).await;
            let netlink = Netlink::start().unwrap();
            netlink
                .add_address("pub-s", public.into(), 24)
                .await
                .unwrap();
            let announcer = Announcer::new(netlink.clone());
            announcer.announce("pub-s", public.into()).await.unwrap();
            s2_ready_tx.send(()).unwrap();
            let client = s2_tickle_rx.recv().unwrap();
            announcer.tickle(server_addr, client).unwrap();
            s2_done_tx.send(()).unwrap();
        });
        // Stay, with the address, until C has its answer: it is this namespace's
        // kernel that answers C's ACK with the RST.
        let _ = s2_finish_rx.recv();
    });

    let s_netns = s_ns_rx.recv().unwrap();
    let s2_netns = s2_ns_rx.recv().unwrap();

    // C: the client, in the test's own extra namespace.
    let client = spawn_in_netns(move || {
        block_on(async {
            let handle = setup_handle();
            veth_pair(&handle, "pub-c", "pub-s").await;
            move_link(&handle, "pub-s", &s_netns).await;
            Netlink::start()
                .unwrap()
                .add_address("pub-c", Ipv4Addr::new(192, 0, 2, 2).into(), 24)
                .await
                .unwrap();
        });
        s_ready_rx.recv().unwrap();
        let mut stream = TcpStream::connect_timeout(&server_addr, DEADLINE).expect("connecting");
        let local = stream.local_addr().unwrap();

        // Takeover: S hands pub-s to S2 and forgets the connection.
        s_go_tx.send(s2_netns).unwrap();
        s_gone_rx.recv().unwrap();
        s2_ready_rx.recv().unwrap();

        let mut buf = [0u8; 16];
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let before = stream.read(&mut buf);
        assert!(
            matches!(&before, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
            "without a tickle the idle client should hear nothing, got {before:?}"
        );

        s2_tickle_tx.send(local).unwrap();
        s2_done_rx.recv().unwrap();
        let start = Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let after = stream.read(&mut buf);
        let waited = start.elapsed();
        s2_finish_tx.send(()).unwrap();
        (after.map_err(|e| e.kind()), waited)
    });

    let (after, waited) = match client.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    for thread in [server, takeover] {
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
    assert_eq!(after, Err(ErrorKind::ConnectionReset), "after {waited:?}");
    assert!(waited < Duration::from_secs(1), "reset took {waited:?}");
}

/// Reads the watch's receive socket until `last` arrives (returned with everything
/// before it) or [`DEADLINE`] passes (panics, listing what came).
fn receive_until(
    socket: &OwnedFd,
    family: tickler::Family,
    last: impl Fn(&tcp::Segment) -> bool,
) -> Vec<tcp::Segment> {
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; tickler::RECEIVE_LEN];
    while start.elapsed() < DEADLINE {
        match tickler::receive(socket, family, &mut buf) {
            Ok(Ok(segment)) => {
                seen.push(segment);
                if last(&segment) {
                    return seen;
                }
            }
            Ok(Err(e)) => panic!("an unreadable packet passed the filter: {e}"),
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("receive: {e}"),
        }
    }
    panic!("the awaited segment never came; saw {seen:#?}");
}

/// Given: a namespace with `lo` up (and 2001:db8::2 on it), the tickle watch's
/// receive sockets with their filters letting in 127.0.0.1 and ::1.
/// When: a TCP connection to each watched address carries data, then a tickle goes
/// to an address that is not watched, then one to a watched address.
/// Then: the sockets receive the handshake's bare segments and the last tickle, with
/// both ends right (for IPv6, the destination from IPV6_PKTINFO), and never a data
/// segment (PSH) nor anything to the unwatched address.
#[test]
fn netif_tickle_watch_receives_only_bare_segments_to_watched_addresses() {
    in_netns(|| {
        block_on(async {
            let handle = setup_handle();
            set_link(&handle, "lo", true).await;
            let netlink = Netlink::start().unwrap();
            let unwatched: Ipv6Addr = "2001:db8::2".parse().unwrap();
            netlink
                .add_address("lo", unwatched.into(), 128)
                .await
                .unwrap();
            let announcer = Announcer::new(netlink);
            let cases = [
                (
                    tickler::Family::Ipv4,
                    IpAddr::from(Ipv4Addr::LOCALHOST),
                    IpAddr::from(Ipv4Addr::new(127, 0, 0, 2)),
                ),
                (
                    tickler::Family::Ipv6,
                    IpAddr::from(Ipv6Addr::LOCALHOST),
                    IpAddr::from(unwatched),
                ),
            ];
            for (family, watched, other) in cases {
                let socket = tickler::open_receiver(family).unwrap();
                let program = match watched {
                    IpAddr::V4(v4) => filter::ipv4(&[v4], tickler::RECEIVE_LEN as u32),
                    IpAddr::V6(v6) => filter::ipv6(&[v6], tickler::RECEIVE_LEN as u32),
                };
                tickler::attach_filter(socket.get_ref(), &program).unwrap();

                let listener = TcpListener::bind((watched, 0)).unwrap();
                let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
                let (mut served, _) = listener.accept().unwrap();
                std::io::Write::write_all(&mut client, &[7; 100]).unwrap();
                let mut got = [0u8; 100];
                served.read_exact(&mut got).unwrap();

                let from = SocketAddr::new(watched, 1);
                announcer.tickle(from, SocketAddr::new(other, 2)).unwrap();
                let last = SocketAddr::new(watched, 3);
                announcer.tickle(from, last).unwrap();
                let seen = receive_until(socket.get_ref(), family, |s| s.dst == last);
                assert_eq!(seen.last().unwrap().src, from, "{family:?}");
                assert!(
                    seen.iter().any(|s| s.has(tcp::FLAG_SYN)),
                    "{family:?}: the handshake's bare segments pass: {seen:#?}"
                );
                for s in &seen {
                    assert!(!s.has(0x08), "{family:?}: a data segment passed: {s:?}");
                    assert_eq!(s.dst.ip(), watched, "{family:?}: {s:?}");
                }
            }
        })
    });
}

/// Given: a namespace with a listener on 127.0.0.1 and on ::1, and one accepted
/// connection to each.
/// When: the kernel is asked about the connection, about another client of the
/// listening port, and about a port with nothing on it.
/// Then: the connection is held (established), the other client finds only the
/// listener (not held), and the empty port has no socket.
#[test]
fn netif_sockdiag_tells_a_connection_from_a_listener() {
    in_netns(|| {
        block_on(async {
            set_link(&setup_handle(), "lo", true).await;
        });
        for local in [
            IpAddr::from(Ipv4Addr::LOCALHOST),
            Ipv6Addr::LOCALHOST.into(),
        ] {
            let listener = TcpListener::bind((local, 0)).unwrap();
            let server = listener.local_addr().unwrap();
            let client = TcpStream::connect(server).unwrap();
            let (_served, _) = listener.accept().unwrap();
            let held = sockdiag::lookup(server, client.local_addr().unwrap()).unwrap();
            assert_eq!(held, sockdiag::Lookup::Socket { state: 1 }, "{local}");
            assert!(held.holds_connection());
            let other = sockdiag::lookup(server, SocketAddr::new(local, 9)).unwrap();
            assert_eq!(other, sockdiag::Lookup::Socket { state: 10 }, "{local}");
            assert!(!other.holds_connection());
            let nothing =
                sockdiag::lookup(SocketAddr::new(local, 1), SocketAddr::new(local, 2)).unwrap();
            assert_eq!(nothing, sockdiag::Lookup::NoSocket, "{local}");
        }
    });
}
