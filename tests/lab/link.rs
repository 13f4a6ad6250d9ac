//! A point-to-point IP link with delay and loss, emulated in userspace.
//!
//! This machine's kernel has no `netem` qdisc (nor `fq`, nor nftables
//! queueing), so the lab cannot ask `tc` for delay. Instead each impaired
//! link is two TUN devices, one per namespace, and two forwarding threads
//! (one per direction) that copy IP packets between them: each packet is
//! dropped with the configured probability or written to the other side
//! after the configured one-way delay, in order. To the kernels on either
//! side it is an ordinary point-to-point interface, so routing, NAT and
//! conntrack behave exactly as over a cable.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `TUNSETIFF` from <linux/if_tun.h>.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// Largest IP packet the emulator carries (the TUN devices' MTU is the
/// default 1500).
const MAX_PACKET: usize = 65_536;

/// How often blocked readers look at the stop flag.
const POLL_MS: libc::c_int = 100;

/// Delay and loss of one direction of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Impairment {
    /// One-way delay.
    pub delay: Duration,
    /// Probability that a packet is dropped, 0.0..=1.0.
    pub loss: f64,
}

/// Creates a TUN device named `name` in the current network namespace and
/// returns its file. The device lives as long as the file is open.
pub fn open_tun(name: &str) -> io::Result<File> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?} too long"),
        ));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // struct ifreq: the name, then a union whose first member (for
    // TUNSETIFF) is the flags short; 40 bytes cover it on every Linux ABI.
    let mut ifreq = [0u8; 40];
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    ifreq[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
    // SAFETY: the fd is an open /dev/net/tun; `ifreq` is a valid, writable
    // buffer at least as large as struct ifreq, which TUNSETIFF reads and
    // writes back.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, ifreq.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// Waits until `file` is readable or `POLL_MS` passed; true if readable.
fn readable(file: &File) -> bool {
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
    rc > 0 && (pfd.revents & libc::POLLIN) != 0
}

/// A small deterministic PRNG (xorshift64*), so loss patterns repeat for a
/// given seed.
struct Rng(u64);

impl Rng {
    fn chance(&mut self, p: f64) -> bool {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// A running emulated link; stops (and its devices vanish) when dropped.
pub struct Link {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Link {
    /// Forwards between two open TUN devices: `a_to_b` impairs what `a`'s
    /// kernel sends, `b_to_a` the other way.
    pub fn start(
        a: File,
        b: File,
        a_to_b: Impairment,
        b_to_a: Impairment,
        seed: u64,
    ) -> io::Result<Link> {
        let stop = Arc::new(AtomicBool::new(false));
        let a = Arc::new(a);
        let b = Arc::new(b);
        let mut threads = Vec::new();
        for (from, to, imp, seed) in [
            (a.clone(), b.clone(), a_to_b, seed | 1),
            (b, a, b_to_a, seed.rotate_left(17) | 1),
        ] {
            let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
            let stop_r = stop.clone();
            threads.push(std::thread::spawn(move || {
                let mut rng = Rng(seed);
                let mut buf = vec![0u8; MAX_PACKET];
                while !stop_r.load(Ordering::Relaxed) {
                    if !readable(&from) {
                        continue;
                    }
                    let n = match (&*from).read(&mut buf) {
                        Ok(n) => n,
                        Err(_) => break,
                    };
                    if imp.loss > 0.0 && rng.chance(imp.loss) {
                        continue;
                    }
                    if tx
                        .send((Instant::now() + imp.delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }));
            let stop_w = stop.clone();
            threads.push(std::thread::spawn(move || {
                while !stop_w.load(Ordering::Relaxed) {
                    let Ok((due, packet)) = rx.recv_timeout(Duration::from_millis(100)) else {
                        continue;
                    };
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    // A write can fail while the far namespace is being torn
                    // down; the packet is lost, as on a cut cable.
                    let _ = (&*to).write(&packet);
                }
            }));
        }
        Ok(Link { stop, threads })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn loss_draws_match_the_configured_probability() {
        for p in [0.0, 0.1, 0.5, 1.0] {
            let mut rng = Rng(0x5eed | 1);
            let n = 100_000;
            let dropped = (0..n).filter(|_| rng.chance(p)).count();
            let rate = dropped as f64 / n as f64;
            assert!((rate - p).abs() < 0.01, "p={p}: {rate}");
        }
    }
}
