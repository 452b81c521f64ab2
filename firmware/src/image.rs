// The image proper, included by main.rs for the bare-metal target only.

// `unsafe` lives in the board code only (README, "Board code vs logic").
#[allow(unsafe_code)]
mod board;
mod net;

use core::panic::PanicInfo;

use cortex_m_rt::entry;
use pastiche_core::seal::MAX_SEALED;
use pastiche_core::Identity;
use pastiche_firmware::logic::config::Config;
use pastiche_firmware::logic::store::{LogStore, StoreConfig};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress};

use board::{clock::Clock, disk::HostDisk, entropy::Entropy, semihosting, stack};

/// Chunk versions the on-disk chunk table holds (32 bytes of disk each, no
/// RAM): 8 MiB of disk, a quarter full at 65,536 chunks (1 GiB of 16 KiB
/// chunks), so probe sequences stay short.
const CHUNKS: usize = 1 << 18;
/// Metadata objects the on-disk object table holds (32 bytes of disk each).
const OBJECTS: usize = 1 << 14;
/// The largest reply frame a buddy sends: `Chunk` with a maximum sealed
/// chunk (header 4, kind 1, id 20, length varint 3). `Object` and `Root`
/// are smaller; requests, which may be larger, only pass through the decoder.
const OUT_LEN: usize = 4 + 1 + 20 + 3 + MAX_SEALED;

/// The store as the firmware runs it.
pub type Store = LogStore<'static, HostDisk, CHUNKS, OBJECTS>;

/// What the main loop runs on, made by [`boot`].
struct Running {
    svc: net::Service<'static>,
    store: Store,
    nic: &'static mut board::lan9118::Lan9118,
    rng: Entropy,
    clock: Clock,
    cfg: Config<'static>,
}

#[entry]
fn main() -> ! {
    stack::paint();
    let mut running = boot();
    run(&mut running)
}

/// Brings the board, the store and the network up. Not inlined: its
/// temporaries (the store's boot scan, the identity's key derivation, the
/// service being built) are off the stack once it returns, so they do not
/// sit under every session's deepest call.
#[inline(never)]
fn boot() -> Running {
    let cp = cortex_m::Peripherals::take().expect("peripherals taken once");
    let mut clock = Clock::start(cp.SYST);

    let bufs = board::statics::take();
    let (cmdline_buf, dec_buf, out, record, chans, index, tcp_bufs, sockets_storage) =
        (bufs.cmdline, bufs.decoder, bufs.out, bufs.record, bufs.chans, bufs.index, bufs.tcp, bufs.sockets);
    let (cfg, bad) = Config::parse(semihosting::cmdline(cmdline_buf));
    board::log::init(cfg.log);
    defmt::info!("pastiche-firmware {=str} booting", env!("CARGO_PKG_VERSION"));
    if let Some(w) = bad {
        defmt::warn!("config: ignored {=str}", w);
    }

    let nic = match bufs.nic.start() {
        Ok(n) => n,
        Err(e) => halt_with(defmt::intern!("LAN9118 init failed"), e),
    };
    let mac = nic.mac();
    defmt::info!("nic: LAN9118 id {=u32:#x}, MAC {=[u8]:02x}", nic.id_rev(), mac);
    let mut rng = Entropy::gather(nic);

    let Some(path) = cfg.disk else { halt(defmt::intern!("no disk=PATH on the command line")) };
    let Some(disk) = HostDisk::open(path) else { halt(defmt::intern!("cannot open the disk file")) };
    defmt::info!("disk: {=str}, {=u64} bytes", path, disk.len());
    let pairing = cfg.pair.map(|code| pastiche_core::seal::Handle::of(code.as_bytes()).0);
    if pairing.is_none() {
        defmt::warn!("pairing: no pair=SECRET on the command line: no new clients are admitted");
    }
    let store_cfg = StoreConfig { default_quota: cfg.quota, pairing, capacity: cfg.disk_capacity };
    let (store, report) = match Store::open(disk, index, store_cfg, rng.bytes32()) {
        Ok(s) => s,
        Err(e) => halt_with(defmt::intern!("store failed to open"), defmt::Debug2Format(&e)),
    };
    defmt::info!(
        "store: formatted={=bool} records={=u32} log_end={=u64} log_used={=u64} cut={=bool} rolled_forward={=u32} chunks={=usize}",
        report.formatted,
        report.records,
        report.log_end,
        store.log_used(),
        report.cut,
        report.rolled_forward,
        store.chunk_count()
    );
    let Some(identity) = identity_of(store.seed()) else { halt(defmt::intern!("bad identity seed")) };
    let key = identity.public_key();
    defmt::info!("identity: buddy key {=[u8]:02x}", key.0);

    let net = NetParts {
        sockets: sockets_storage,
        tcp: tcp_bufs,
        udp_rx: bufs.udp_rx,
        udp_tx: bufs.udp_tx,
        decoder: dec_buf,
        out,
        record,
        chans,
    };
    let svc = start_network(net, nic, &mut rng, &mut clock, cfg, identity);
    Running { svc, store, nic, rng, clock, cfg }
}

/// The static buffers the network service is built on.
struct NetParts {
    sockets: &'static mut [smoltcp::iface::SocketStorage<'static>; net::TCP_SOCKETS + 2],
    tcp: &'static mut [([u8; net::TCP_RX], [u8; net::TCP_TX]); net::TCP_SOCKETS],
    udp_rx: udp::PacketBuffer<'static>,
    udp_tx: udp::PacketBuffer<'static>,
    decoder: &'static mut [u8; pastiche_core::wire::DECODER_BUFFER_LEN],
    out: &'static mut [u8; OUT_LEN],
    record: &'static mut [u8; net::RECORD_BUF],
    chans: &'static mut [net::Chan; net::TCP_SOCKETS],
}

/// smoltcp's interface and sockets, and the buddy service over them. Not
/// inlined, so the service being built is not on the stack while the
/// identity's key is derived (`boot`'s deepest call).
#[inline(never)]
fn start_network(
    parts: NetParts,
    nic: &mut board::lan9118::Lan9118,
    rng: &mut Entropy,
    clock: &mut Clock,
    cfg: Config<'static>,
    identity: Identity,
) -> net::Service<'static> {
    let NetParts { sockets: sockets_storage, tcp: tcp_bufs, udp_rx, udp_tx, decoder: dec_buf, out, record, chans } = parts;
    let mac = nic.mac();
    // smoltcp: interface, the TCP listeners, the beacon's UDP socket, DHCP.
    let mut icfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
    let mut seed = [0u8; 8];
    rng.fill(&mut seed);
    icfg.random_seed = u64::from_le_bytes(seed);
    let iface = Interface::new(icfg, nic, Instant::from_millis(clock.now_ms() as i64));
    let mut sockets = SocketSet::new(&mut sockets_storage[..]);
    let mut tcp_handles = [None; net::TCP_SOCKETS];
    for (slot, (rx, tx)) in tcp_handles.iter_mut().zip(tcp_bufs.iter_mut()) {
        let sock = tcp::Socket::new(tcp::SocketBuffer::new(&mut rx[..]), tcp::SocketBuffer::new(&mut tx[..]));
        *slot = Some(sockets.add(sock));
    }
    let tcp_handles = tcp_handles.map(|h| h.expect("added above"));
    let udp_sock = udp::Socket::new(udp_rx, udp_tx);
    let udp_handle = sockets.add(udp_sock);
    let dhcp_handle = sockets.add(dhcpv4::Socket::new());
    let now = clock.now_ms();
    let svc = net::Service::new(
        iface,
        sockets,
        tcp_handles,
        udp_handle,
        dhcp_handle,
        cfg,
        identity,
        &mut dec_buf[..],
        &mut out[..],
        &mut record[..],
        chans,
        now,
    );
    defmt::info!("buddy: serving TCP port {=u16}, beacon and overlay answers on UDP 7468", cfg.port);
    svc
}

/// The main loop: the network service, compaction steps, the status line.
#[inline(never)]
fn run(running: &mut Running) -> ! {
    let Running { svc, store, nic, rng, clock, cfg } = running;
    let mut next_report = 10_000u64;
    let mut compacted_at = 0u64;
    // The longest a compaction step held the loop (ms), for the log.
    let mut longest_step = 0u64;
    loop {
        let now = clock.now_ms();
        let busy = svc.poll(&mut **nic, store, rng, now);
        // Compaction takes its turn once a millisecond, a bounded amount of
        // copying each time, so sessions keep being served while it runs.
        if now != compacted_at {
            compacted_at = now;
            let t = clock.now_ms();
            compaction_step(store, cfg, &mut longest_step);
            longest_step = longest_step.max(clock.now_ms() - t);
        }
        if now >= next_report {
            next_report = now + 10_000;
            let (used, total) = stack::high_water();
            defmt::info!(
                "status: sessions={=u32} chunks={=usize} log={=u64} log_used={=u64} rx={=u32} tx={=u32} drop={=u32} stack_hw={=usize}/{=usize}",
                svc.sessions,
                store.chunk_count(),
                store.log_end(),
                store.log_used(),
                nic.rx_frames,
                nic.tx_frames,
                nic.rx_dropped,
                used,
                total
            );
        }
        if !busy {
            // Nothing moved: sleep until the next SysTick (1 ms). The NIC
            // is polled, so this bounds receive latency to a millisecond
            // and keeps QEMU from spinning a host core.
            cortex_m::asm::wfi();
        }
    }
}

/// The buddy's identity from its seed. Not inlined: deriving the key is
/// the boot's deepest call (6.6 KiB of stack), kept off `boot`'s own frame.
#[inline(never)]
fn identity_of(seed: [u8; 32]) -> Option<Identity> {
    Identity::from_seed(seed).ok()
}

/// One compaction step (starting one if the log needs it), logged.
fn compaction_step(store: &mut Store, cfg: &Config, longest_step: &mut u64) {
    use pastiche_firmware::logic::store::Compacted;
    match store.maintain(cfg.compact_kib << 10, cfg.compact) {
        Ok(None | Some(Compacted::Progress)) => {}
        Ok(Some(Compacted::Started { used, live })) => {
            defmt::info!("compaction: started used={=u64} live={=u64}", used, live)
        }
        Ok(Some(Compacted::Done { before, after })) => {
            defmt::info!("compaction: done before={=u64} after={=u64} longest_step_ms={=u64}", before, after, *longest_step);
            *longest_step = 0;
        }
        Err(e) => defmt::warn!("compaction: {}", defmt::Debug2Format(&e)),
    }
}

fn halt(why: defmt::Str) -> ! {
    defmt::error!("halted: {=istr}", why);
    loop {
        cortex_m::asm::wfi();
    }
}

fn halt_with<T: defmt::Format>(why: defmt::Str, detail: T) -> ! {
    defmt::error!("halted: {=istr}: {}", why, detail);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    cortex_m::interrupt::disable();
    loop {
        cortex_m::asm::wfi();
    }
}
