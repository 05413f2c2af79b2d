//! The physical floor of one delivery on loopback: N connected TCP pairs, and
//! one ~100-byte chunk written to each server-side socket with one `writev`
//! (one slice, as hookcast writes one event), nothing else. Prints the CPU time
//! (user + sys, from /proc/self/stat, and on-CPU time from /proc/self/schedstat)
//! per write, to compare with a server's CPU per delivery.
//!
//!   bench-floor [PAIRS] [ROUNDS] [BYTES] [WARMUP] [READER]   (default 5000 50 100 32 0)
//!
//! Each round writes once to every socket. `WARMUP` unmeasured rounds come
//! first: a new connection acknowledges its first segments at once (TCP quick
//! ack), which costs the writer more than the delayed acks of a settled stream.
//! With `READER` 0 the client sides are read empty between rounds, outside the
//! measured time, and nobody waits on them. With 1, as under a real load, a
//! second thread waits on every client socket (tokio, epoll) and reads what
//! comes, and rounds are 50 ms apart, so a write also wakes a waiting reader;
//! only the writing thread's CPU time is counted. CPU time, unlike wall-clock
//! time, holds up fairly on a busy machine; cache and scheduler effects of
//! other processes still move it by a few percent.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};

use hookcast_load::procstat::clock_ticks;

fn main() -> io::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("PAIRS, ROUNDS and BYTES are numbers"))
        .collect();
    let pairs = args.first().copied().unwrap_or(5000);
    let rounds = args.get(1).copied().unwrap_or(50);
    let bytes = args.get(2).copied().unwrap_or(100);
    let warmup = args.get(3).copied().unwrap_or(32);
    let reader = args.get(4).copied().unwrap_or(0) == 1;
    // Two descriptors a pair, and a few to spare.
    rlimit::increase_nofile_limit(2 * pairs as u64 + 64)?;

    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut servers = Vec::with_capacity(pairs);
    let mut clients = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let client = TcpStream::connect(addr)?;
        let (server, _) = listener.accept()?;
        // As hookcast sets its sockets.
        server.set_nodelay(true)?;
        client.set_nonblocking(true)?;
        servers.push(server);
        clients.push(client);
    }
    // An SSE event framed as an HTTP/1.1 chunk, `bytes` long in all.
    let chunk = {
        let body = format!("id: 1\ndata: {}\n\n", "x".repeat(bytes.saturating_sub(20)));
        format!("{:x}\r\n{body}\r\n", body.len()).into_bytes()
    };

    for _ in 0..warmup {
        write_round(&mut servers, &chunk)?;
        drain(&mut clients)?;
    }
    if reader {
        let clients = std::mem::take(&mut clients);
        std::thread::spawn(move || read_all(clients));
        // Until the reader waits on every socket.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let (mut user, mut sys, mut on_cpu) = (0, 0, 0);
    for _ in 0..rounds {
        let before = cpu()?;
        write_round(&mut servers, &chunk)?;
        let after = cpu()?;
        user += after.0 - before.0;
        sys += after.1 - before.1;
        on_cpu += after.2 - before.2;
        if reader {
            std::thread::sleep(std::time::Duration::from_millis(50));
        } else {
            drain(&mut clients)?;
        }
    }
    let writes = (pairs * rounds) as f64;
    let tick_us = 1e6 / clock_ticks() as f64;
    println!(
        "{{\"pairs\":{pairs},\"rounds\":{rounds},\"reader\":{reader},\"chunk_bytes\":{},\"writes\":{writes},\
         \"user_us_per_write\":{:.3},\"sys_us_per_write\":{:.3},\"cpu_us_per_write\":{:.3},\
         \"on_cpu_us_per_write\":{:.3}}}",
        chunk.len(),
        user as f64 * tick_us / writes,
        sys as f64 * tick_us / writes,
        (user + sys) as f64 * tick_us / writes,
        on_cpu as f64 / 1e3 / writes,
    );
    Ok(())
}

fn write_round(servers: &mut [TcpStream], chunk: &[u8]) -> io::Result<()> {
    for s in servers {
        let n = s.write_vectored(&[IoSlice::new(chunk)])?;
        assert_eq!(n, chunk.len(), "a socket took part of a chunk");
    }
    Ok(())
}

fn drain(clients: &mut [TcpStream]) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    for c in clients {
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Reads every client socket until it closes, each in a task, on one thread.
fn read_all(clients: Vec<TcpStream>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let mut tasks = Vec::with_capacity(clients.len());
        for c in clients {
            let mut c = tokio::net::TcpStream::from_std(c).expect("a nonblocking socket");
            tasks.push(tokio::spawn(async move {
                let mut buf = [0u8; 512];
                while matches!(tokio::io::AsyncReadExt::read(&mut c, &mut buf).await, Ok(n) if n > 0) {}
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// (utime ticks, stime ticks, on-CPU ns) of the calling thread.
fn cpu() -> io::Result<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
    // After the command name, utime and stime are the 12th and 13th fields (proc(5): 14, 15).
    let fields: Vec<u64> = stat[stat.rfind(')').unwrap_or(0) + 1..]
        .split_ascii_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let on_cpu = std::fs::read_to_string("/proc/thread-self/schedstat")?
        .split_ascii_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((fields[0], fields[1], on_cpu))
}
