//! Driver for the SMSC LAN9118 Ethernet controller (the AN386's on-board
//! NIC, at 0x4020_0000 in QEMU's `mps2` machines), as a smoltcp
//! [`phy::Device`].
//!
//! The chip is driven by polling; no interrupt is used. Frames move through
//! FIFOs in 32-bit words:
//! - receive: the RX status FIFO gives each frame's length (including its
//!   4-byte FCS), then the frame is read word by word from the RX data FIFO;
//! - transmit: TX command A (buffer size, first and last segment), TX
//!   command B (tag, frame length), then the frame's words into the TX data
//!   FIFO. QEMU sends the frame as the last word arrives.
//!
//! The MAC's own registers (control, address) sit behind an indirect
//! window: MAC_CSR_DATA, then MAC_CSR_CMD with the register number.
//! Register map from the LAN9118 datasheet and QEMU's hw/net/lan9118.c.

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Where QEMU maps the LAN9118 on mps2 boards.
pub const BASE: usize = 0x4020_0000;

const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const TX_STATUS_FIFO: usize = 0x48;
const ID_REV: usize = 0x50;
const BYTE_TEST: usize = 0x64;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_DP_CTRL: usize = 0x78;
const RX_FIFO_INF: usize = 0x7c;
const TX_FIFO_INF: usize = 0x80;
const FREE_RUN: usize = 0x9c;
const MAC_CSR_CMD: usize = 0xa4;
const MAC_CSR_DATA: usize = 0xa8;

const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;

const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_RXEN: u32 = 1 << 2;
const MAC_CR_FDPX: u32 = 1 << 20;
const CSR_BUSY: u32 = 1 << 31;
const CSR_READ: u32 = 1 << 30;
const HW_CFG_SRST: u32 = 1;
const TX_CFG_TX_ON: u32 = 1 << 1;
const TX_CMD_A_FIRST: u32 = 1 << 13;
const TX_CMD_A_LAST: u32 = 1 << 12;
const RX_DP_FFWD: u32 = 1 << 31;

/// Largest Ethernet frame handled (no FCS): 1514, rounded up to words.
pub const MTU: usize = 1514;
const FRAME_BUF: usize = 1536;
/// Full-size frames the chip's receive data FIFO holds (10,560 bytes with
/// the reset default TX_FIF_SZ = 5, which this driver keeps). smoltcp caps
/// every TCP window it advertises at this many segments (its
/// `max_burst_size`), so a sender's burst fits in the FIFO even when the
/// main loop is busy with a frame. (At 1 the window was one segment: a
/// sender could never have the three segments in flight behind a loss that
/// fast retransmit needs, and every lost segment cost a retransmission
/// timeout.)
const RX_FIFO_FRAMES: usize = 10_560 / 1_536;

/// The chip was not found or would not reset.
#[derive(Clone, Copy, Debug, defmt::Format)]
pub enum InitError {
    /// BYTE_TEST did not read 0x87654321: nothing (or a big-endian bus) there.
    NoDevice(u32),
    /// The soft reset did not complete.
    ResetTimeout,
}

/// The LAN9118 and its frame buffers.
pub struct Lan9118 {
    base: usize,
    rx: [u8; FRAME_BUF],
    tx: [u8; FRAME_BUF],
    /// Frames received and sent (for logs).
    pub rx_frames: u32,
    /// See `rx_frames`.
    pub tx_frames: u32,
    /// Frames dropped as oversized or with an RX error.
    pub rx_dropped: u32,
}

impl Lan9118 {
    /// Resets the chip at `base`, sets its MAC address (`mac`, or the one the
    /// chip has if `mac` is `None`) and enables transmit and receive.
    ///
    /// # Safety
    /// `base` must be the LAN9118's register block, and nothing else may
    /// drive it.
    pub unsafe fn new(base: usize, mac: Option<[u8; 6]>) -> Result<Lan9118, InitError> {
        let nic = Lan9118 { base, rx: [0; FRAME_BUF], tx: [0; FRAME_BUF], rx_frames: 0, tx_frames: 0, rx_dropped: 0 };
        let t = nic.read(BYTE_TEST);
        if t != 0x8765_4321 {
            return Err(InitError::NoDevice(t));
        }
        nic.write(HW_CFG, HW_CFG_SRST);
        let mut spins = 0;
        while nic.read(HW_CFG) & HW_CFG_SRST != 0 {
            spins += 1;
            if spins > 100_000 {
                return Err(InitError::ResetTimeout);
            }
        }
        if let Some(m) = mac {
            nic.mac_write(MAC_ADDRL, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
            nic.mac_write(MAC_ADDRH, u32::from_le_bytes([m[4], m[5], 0, 0]));
        }
        nic.write(TX_CFG, TX_CFG_TX_ON);
        // Unicast to us and broadcast (BCAST clear); not promiscuous.
        nic.mac_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX);
        Ok(nic)
    }

    /// The chip's ID and revision register.
    pub fn id_rev(&self) -> u32 {
        self.read(ID_REV)
    }

    /// The MAC address in use.
    pub fn mac(&self) -> [u8; 6] {
        let l = self.mac_read(MAC_ADDRL).to_le_bytes();
        let h = self.mac_read(MAC_ADDRH).to_le_bytes();
        [l[0], l[1], l[2], l[3], h[0], h[1]]
    }

    /// The 25 MHz free-running counter.
    pub fn free_run(&self) -> u32 {
        self.read(FREE_RUN)
    }

    fn read(&self, off: usize) -> u32 {
        // SAFETY: `base` is the LAN9118's register block (see `new`), `off`
        // one of its 32-bit registers; MMIO needs volatile access.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u32) }
    }

    fn write(&self, off: usize, v: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u32, v) }
    }

    fn mac_wait(&self) {
        while self.read(MAC_CSR_CMD) & CSR_BUSY != 0 {}
    }

    fn mac_read(&self, reg: u32) -> u32 {
        self.mac_wait();
        self.write(MAC_CSR_CMD, CSR_BUSY | CSR_READ | reg);
        self.mac_wait();
        self.read(MAC_CSR_DATA)
    }

    fn mac_write(&self, reg: u32, v: u32) {
        self.mac_wait();
        self.write(MAC_CSR_DATA, v);
        self.write(MAC_CSR_CMD, CSR_BUSY | reg);
        self.mac_wait();
    }

    /// Reads the next received frame into `self.rx`; its length without FCS.
    fn recv_frame(&mut self) -> Option<usize> {
        loop {
            // RX_FIFO_INF bits 23:16: frames waiting in the status FIFO.
            if (self.read(RX_FIFO_INF) >> 16) & 0xff == 0 {
                return None;
            }
            let status = self.read(RX_STATUS_FIFO);
            let len = ((status >> 16) & 0x3fff) as usize; // includes the 4-byte FCS
            let words = len.div_ceil(4);
            let error = status & (1 << 15) != 0;
            if error || !(4 + 14..=FRAME_BUF).contains(&len) {
                self.rx_dropped += 1;
                if words >= 4 {
                    self.write(RX_DP_CTRL, RX_DP_FFWD);
                } else {
                    for _ in 0..words {
                        self.read(RX_DATA_FIFO);
                    }
                }
                continue;
            }
            for i in 0..words {
                let w = self.read(RX_DATA_FIFO).to_le_bytes();
                self.rx[i * 4..i * 4 + 4].copy_from_slice(&w);
            }
            self.rx_frames += 1;
            return Some(len - 4);
        }
    }

    /// Transmits `self.tx[..len]`.
    fn send_frame(base: usize, buf: &[u8]) {
        let nic = Regs(base);
        // QEMU sends as soon as the last word is in; on silicon, wait for
        // room in the 4.5 kB TX data FIFO (TX_FIFO_INF bits 15:0, bytes).
        while ((nic.read(TX_FIFO_INF) & 0xffff) as usize) < buf.len() + 8 {}
        let len = buf.len() as u32;
        nic.write(TX_DATA_FIFO, TX_CMD_A_FIRST | TX_CMD_A_LAST | len);
        nic.write(TX_DATA_FIFO, (len << 16) | len); // tag = length
        for chunk in buf.chunks(4) {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            nic.write(TX_DATA_FIFO, u32::from_le_bytes(w));
        }
        // Drain the TX status FIFO (bits 23:16 of TX_FIFO_INF) so it never fills.
        while (nic.read(TX_FIFO_INF) >> 16) & 0xff != 0 {
            nic.read(TX_STATUS_FIFO);
        }
    }
}

/// The register block, copyable so a TX token can hold it beside an RX token.
#[derive(Clone, Copy)]
struct Regs(usize);

impl Regs {
    fn read(self, off: usize) -> u32 {
        // SAFETY: as in `Lan9118::read`.
        unsafe { core::ptr::read_volatile((self.0 + off) as *const u32) }
    }
    fn write(self, off: usize, v: u32) {
        // SAFETY: as in `Lan9118::read`.
        unsafe { core::ptr::write_volatile((self.0 + off) as *mut u32, v) }
    }
}

/// A received frame.
pub struct RxToken<'a>(&'a [u8]);

/// Room for a frame to send.
pub struct TxToken<'a> {
    base: usize,
    buf: &'a mut [u8; FRAME_BUF],
    count: &'a mut u32,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MTU);
        let r = f(&mut self.buf[..len]);
        Lan9118::send_frame(self.base, &self.buf[..len]);
        *self.count += 1;
        r
    }
}

impl Device for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let len = self.recv_frame()?;
        super::no_wscale::decline_window_scaling(&mut self.rx[..len]);
        let Lan9118 { base, rx, tx, tx_frames, .. } = self;
        Some((RxToken(&rx[..len]), TxToken { base: *base, buf: tx, count: tx_frames }))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken { base: self.base, buf: &mut self.tx, count: &mut self.tx_frames })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.max_burst_size = Some(RX_FIFO_FRAMES);
        caps
    }
}
