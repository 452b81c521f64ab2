//! Declines TCP window scaling: the window-scale option of every received
//! SYN is overwritten with no-op options (its checksum refreshed) before
//! smoltcp sees it, so smoltcp answers without one and neither side scales
//! its window.
//!
//! Why: smoltcp 0.12 counts an ACK as a duplicate (three of them start its
//! fast retransmit) only if it leaves the advertised window unchanged, as
//! RFC 5681 defines it. A Linux receiver grows its window with almost every
//! segment for the first megabytes of a connection (receive-buffer
//! autotuning), so under loss none of its duplicate ACKs counted and every
//! lost segment the firmware sent waited for a retransmission timeout
//! (smoltcp's starts at 700 ms for each new connection): restoring 3 MiB
//! over the 5% loss link took 5 to 14 s (`docs/BENCHMARKS.md`). Unscaled,
//! the 16-bit window field saturates at 65,535 almost at once and stays
//! there, so the duplicate ACKs count. The firmware loses nothing by it:
//! its own receive windows are 4 KiB, and it never has more than its 5 KiB
//! send buffer in flight, far below 64 KiB.

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket};

/// TCP option kinds (RFC 9293, RFC 7323).
const END: u8 = 0;
const NOP: u8 = 1;
const WINDOW_SCALE: u8 = 3;

/// If `frame` is an Ethernet frame carrying an intact IPv4 TCP SYN with a
/// window-scale option, turns that option into no-ops and refreshes the
/// TCP checksum; anything else is left as it is. Returns whether it did.
pub fn decline_window_scaling(frame: &mut [u8]) -> bool {
    let Ok(mut eth) = EthernetFrame::new_checked(frame) else { return false };
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return false;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(eth.payload_mut()) else { return false };
    if ip.next_header() != IpProtocol::Tcp || ip.more_frags() || ip.frag_offset() != 0 {
        return false;
    }
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
    let Ok(mut tcp) = TcpPacket::new_checked(ip.payload_mut()) else { return false };
    // A corrupt segment stays corrupt (smoltcp drops it): never "repair" it.
    if !tcp.syn() || !tcp.verify_checksum(&src, &dst) {
        return false;
    }
    let options = tcp.options_mut();
    let mut at = 0;
    let mut changed = false;
    while at < options.len() {
        match options[at] {
            END => break,
            NOP => at += 1,
            kind => {
                let len = options.get(at + 1).map_or(0, |&l| l as usize);
                if len < 2 || at + len > options.len() {
                    return false; // malformed: smoltcp decides what to do with it
                }
                if kind == WINDOW_SCALE && len == 3 {
                    options[at..at + len].fill(NOP);
                    changed = true;
                }
                at += len;
            }
        }
    }
    if changed {
        tcp.fill_checksum(&src, &dst);
    }
    changed
}
