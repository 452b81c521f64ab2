//! The secure channel driven by hand, for tests that play a hostile peer
//! (a buddy that answers what was never asked, a client that floods a
//! buddy with requests): the appliance's own [`Handshake`] and [`Channel`]
//! over a plain `TcpStream`, either side, with the frames of
//! `docs/PROTOCOL.md` §1 inside, so the peer under test sees a real,
//! authenticated session, and only its content is hostile.
//!
//! An established end is shared by two threads, one receiving and one
//! sending (a relay, or a client that writes requests while it reads
//! answers): the channel's two directions sit behind one lock, held only
//! while a record is sealed or opened, never across a socket call.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

use pastiche::channel::{Channel, Handshake};
use pastiche_core::channel::{HANDSHAKE_RECORD_LEN, MAX_NOISE_MESSAGE};
use pastiche_core::wire::{encode_frame, Message, DECODER_BUFFER_LEN};
use pastiche_core::{Identity, PublicKey};

fn channel_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("channel: {e}"))
}

/// Reads one record's body (header first) into `buf`.
fn read_record(sock: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut header = [0u8; 2];
    sock.read_exact(&mut header)?;
    buf.resize(u16::from_be_bytes(header) as usize, 0);
    sock.read_exact(buf)
}

/// The buddy's side of the channel handshake on an accepted `sock`, as `me`.
pub fn accept(sock: &mut TcpStream, me: &Identity) -> io::Result<Channel> {
    let mut hs = Handshake::responder(me, rand::random(), MAX_NOISE_MESSAGE).map_err(channel_error)?;
    let mut body = Vec::new();
    read_record(sock, &mut body)?;
    hs.read(&body).map_err(channel_error)?;
    let mut msg = [0u8; HANDSHAKE_RECORD_LEN];
    let n = hs.write(&mut msg).map_err(channel_error)?;
    sock.write_all(&msg[..n])?;
    read_record(sock, &mut body)?;
    hs.read(&body).map_err(channel_error)?;
    hs.finish().map_err(channel_error)
}

/// The client's side of the channel handshake on a connected `sock`, as
/// `me`, refusing a buddy that does not prove `pinned`.
pub fn connect(sock: &mut TcpStream, me: &Identity, pinned: Option<PublicKey>) -> io::Result<Channel> {
    let mut hs = Handshake::initiator(me, rand::random(), pinned, MAX_NOISE_MESSAGE).map_err(channel_error)?;
    let mut msg = [0u8; HANDSHAKE_RECORD_LEN];
    let n = hs.write(&mut msg).map_err(channel_error)?;
    sock.write_all(&msg[..n])?;
    let mut body = Vec::new();
    read_record(sock, &mut body)?;
    hs.read(&body).map_err(channel_error)?;
    let n = hs.write(&mut msg).map_err(channel_error)?;
    sock.write_all(&msg[..n])?;
    hs.finish().map_err(channel_error)
}

/// An established channel on its socket, for one sending and one
/// receiving thread ([`SecureEnd::reader`]).
#[derive(Clone)]
pub struct SecureEnd {
    channel: Arc<Mutex<Channel>>,
    sock: Arc<TcpStream>,
}

impl SecureEnd {
    /// Wraps an established `channel` on `sock`.
    pub fn new(sock: TcpStream, channel: Channel) -> SecureEnd {
        SecureEnd { channel: Arc::new(Mutex::new(channel)), sock: Arc::new(sock) }
    }

    fn channel(&self) -> MutexGuard<'_, Channel> {
        self.channel.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer's key, proven by the handshake.
    pub fn peer(&self) -> PublicKey {
        self.channel().peer()
    }

    /// Seals `plain` (whole frames, any number) into records and writes them.
    pub fn send_plain(&self, plain: &[u8]) -> io::Result<()> {
        if plain.is_empty() {
            return Ok(());
        }
        let sealed = {
            let mut channel = self.channel();
            let mut sealed = vec![0u8; channel.sealed_len(plain.len())];
            let n = channel.seal(plain, &mut sealed).map_err(channel_error)?;
            sealed.truncate(n);
            sealed
        };
        (&*self.sock).write_all(&sealed)
    }

    /// Sends frames of the payloads given, in one write.
    pub fn send_payloads<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> io::Result<()> {
        let mut plain = Vec::new();
        for p in payloads {
            plain.extend_from_slice(&(p.len() as u32).to_be_bytes());
            plain.extend_from_slice(p);
        }
        self.send_plain(&plain)
    }

    /// Sends one message as a frame.
    pub fn send(&self, msg: &Message<'_>) -> io::Result<()> {
        self.send_plain(&frame(msg))
    }

    /// A reader of the frames the peer sends (only one may read).
    pub fn reader(&self) -> FrameReader {
        FrameReader { end: self.clone(), plain: Vec::new(), record: Vec::new() }
    }

    /// Ends the connection both ways (the other thread's calls fail).
    pub fn shutdown(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// `msg` as a whole frame: header and payload.
pub fn frame(msg: &Message<'_>) -> Vec<u8> {
    let mut out = vec![0u8; DECODER_BUFFER_LEN];
    let n = encode_frame(msg, &mut out).expect("a message that encodes");
    out.truncate(n);
    out
}

/// `msg`'s payload (a frame without its header).
pub fn payload(msg: &Message<'_>) -> Vec<u8> {
    frame(msg).split_off(4)
}

/// Frames received on a [`SecureEnd`], opened record by record.
pub struct FrameReader {
    end: SecureEnd,
    /// Plaintext received and not yet taken as frames.
    plain: Vec<u8>,
    record: Vec<u8>,
}

impl FrameReader {
    /// The next frame's payload; an error when the connection or the
    /// channel fails.
    pub fn next_payload(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if self.plain.len() >= 4 {
                let len = u32::from_be_bytes(self.plain[..4].try_into().expect("four bytes")) as usize;
                if self.plain.len() >= 4 + len {
                    let payload = self.plain[4..4 + len].to_vec();
                    self.plain.drain(..4 + len);
                    return Ok(payload);
                }
            }
            read_record(&mut &*self.end.sock, &mut self.record)?;
            let mut channel = self.end.channel();
            let plain = channel.open(&mut self.record).map_err(channel_error)?;
            self.plain.extend_from_slice(plain);
        }
    }
}
