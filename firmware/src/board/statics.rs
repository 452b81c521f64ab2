//! The image's large buffers and its one NIC: statics in .bss, not on the
//! stack, so their cost shows in `size` and the stack high-water mark
//! measures only real call depth. Each is handed out once.
//!
//! This is where borrowing them is `unsafe`, and why it is sound: [`take`]
//! makes `&'static mut` references to the statics, and a flag swapped
//! atomically makes any second call panic, so no static ever has two live
//! references. The NIC's slot comes as a [`NicSlot`], which only `take`
//! makes and [`NicSlot::start`] consumes, so the LAN9118 gets one driver.

use core::ptr::addr_of_mut;
use core::sync::atomic::{AtomicBool, Ordering};

use pastiche_core::wire::DECODER_BUFFER_LEN;
use pastiche_firmware::logic::store::Index;
use smoltcp::iface::SocketStorage;
use smoltcp::socket::udp;

use super::lan9118::{self, InitError, Lan9118};
use crate::net::{self, TCP_RX, TCP_TX};
use crate::{CHUNKS, OBJECTS, OUT_LEN};

static mut DECODER_BUF: [u8; DECODER_BUFFER_LEN] = [0; DECODER_BUFFER_LEN];
static mut OUT_BUF: [u8; OUT_LEN] = [0; OUT_LEN];
static mut RECORD: [u8; net::RECORD_BUF] = [0; net::RECORD_BUF];
// Each connection's channel state (about 900 bytes while handshaking): a
// static, so it is neither on the stack nor copied when the service is built.
static mut CHANS: [net::Chan; net::TCP_SOCKETS] = [const { net::Chan::None }; net::TCP_SOCKETS];
static mut INDEX: Index<CHUNKS, OBJECTS> = Index::new();
static mut TCP_BUFS: [([u8; TCP_RX], [u8; TCP_TX]); net::TCP_SOCKETS] = [([0; TCP_RX], [0; TCP_TX]); net::TCP_SOCKETS];
// The overlay port's datagrams: room for one largest overlay question
// (a coverage query, 1,400 bytes) and a few small ones; answers and beacons
// are small.
static mut UDP_RX: [u8; 1536] = [0; 1536];
static mut UDP_TX: [u8; 512] = [0; 512];
static mut UDP_RX_META: [udp::PacketMetadata; 4] = [udp::PacketMetadata::EMPTY; 4];
static mut UDP_TX_META: [udp::PacketMetadata; 4] = [udp::PacketMetadata::EMPTY; 4];
static mut SOCKETS: [SocketStorage<'static>; net::TCP_SOCKETS + 2] = [SocketStorage::EMPTY; net::TCP_SOCKETS + 2];
static mut CMDLINE: [u8; 256] = [0; 256];
static mut NIC: Option<Lan9118> = None;

/// Whether [`take`] has run.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The buffers, borrowed for the rest of the program.
pub struct Buffers {
    /// The boot command line.
    pub cmdline: &'static mut [u8; 256],
    /// The frame decoder's buffer (one maximum frame).
    pub decoder: &'static mut [u8; DECODER_BUFFER_LEN],
    /// The reply buffer (one `Chunk` reply).
    pub out: &'static mut [u8; OUT_LEN],
    /// The secure channel's record buffer.
    pub record: &'static mut [u8; net::RECORD_BUF],
    /// Each connection's channel state.
    pub chans: &'static mut [net::Chan; net::TCP_SOCKETS],
    /// The chunk store's RAM.
    pub index: &'static mut Index<CHUNKS, OBJECTS>,
    /// Each TCP socket's receive and transmit buffers.
    pub tcp: &'static mut [([u8; TCP_RX], [u8; TCP_TX]); net::TCP_SOCKETS],
    /// smoltcp's socket set storage.
    pub sockets: &'static mut [SocketStorage<'static>; net::TCP_SOCKETS + 2],
    /// The beacon socket's receive buffer.
    pub udp_rx: udp::PacketBuffer<'static>,
    /// The beacon socket's transmit buffer.
    pub udp_tx: udp::PacketBuffer<'static>,
    /// Where the NIC's driver lives.
    pub nic: NicSlot,
}

/// The static the LAN9118's driver lives in (only [`take`] makes one).
pub struct NicSlot(&'static mut Option<Lan9118>);

impl NicSlot {
    /// Resets and starts the AN386's LAN9118 (with the MAC it has) and
    /// keeps its driver in the slot.
    pub fn start(self) -> Result<&'static mut Lan9118, InitError> {
        // SAFETY: `BASE` is the AN386's LAN9118 register block, and this is
        // its only driver: a `NicSlot` is made once (`take`) and consumed here.
        let nic = unsafe { Lan9118::new(lan9118::BASE, None) }?;
        Ok(self.0.insert(nic))
    }
}

/// Hands out the buffers; panics if called twice.
pub fn take() -> Buffers {
    assert!(!TAKEN.swap(true, Ordering::AcqRel), "the static buffers are taken once");
    // SAFETY: the flag above lets this run once, so these are the only
    // references ever made to these statics, and nothing else names them.
    unsafe {
        Buffers {
            cmdline: &mut *addr_of_mut!(CMDLINE),
            decoder: &mut *addr_of_mut!(DECODER_BUF),
            out: &mut *addr_of_mut!(OUT_BUF),
            record: &mut *addr_of_mut!(RECORD),
            chans: &mut *addr_of_mut!(CHANS),
            index: &mut *addr_of_mut!(INDEX),
            tcp: &mut *addr_of_mut!(TCP_BUFS),
            sockets: &mut *addr_of_mut!(SOCKETS),
            udp_rx: udp::PacketBuffer::new(&mut (&mut *addr_of_mut!(UDP_RX_META))[..], &mut (&mut *addr_of_mut!(UDP_RX))[..]),
            udp_tx: udp::PacketBuffer::new(&mut (&mut *addr_of_mut!(UDP_TX_META))[..], &mut (&mut *addr_of_mut!(UDP_TX))[..]),
            nic: NicSlot(&mut *addr_of_mut!(NIC)),
        }
    }
}
