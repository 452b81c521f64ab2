//! A blocking TCP connection to one buddy: the secure channel
//! ([`pastiche_core::channel`]) first, then the core's sans-IO
//! [`ClientSession`] over it.

use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use pastiche_core::channel::{
    record_len, ChannelError, HANDSHAKE_RECORD_LEN, MAX_HANDSHAKE_MESSAGE, MAX_NOISE_MESSAGE, RECORD_HEADER_LEN,
    TAG_LEN,
};
use pastiche_core::session::{ClientEvent, ClientSession, SessionError, MAX_PIPELINED_GETS};
use pastiche_core::wire::{ErrorCode, IdList, Message, Welcome, DECODER_BUFFER_LEN, MAX_FRAME_PAYLOAD};
use pastiche_core::{ChunkId, Identity, NodeId, PublicKey};

use crate::channel::{Channel, Handshake};
use rand::RngCore;

/// How long to wait for a buddy to connect or answer.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Plaintext gathered before it is sealed into records and written: large
/// enough that records are full-size.
const SEAL_BATCH: usize = 256 * 1024;

/// An authenticated session with a buddy, over the secure channel.
pub struct BuddyConn {
    /// The address connected to.
    pub addr: SocketAddr,
    /// The buddy's key, proven by the channel handshake.
    pub buddy_key: PublicKey,
    /// What the buddy said at the hello.
    pub welcome: Welcome,
    /// Time from connect to welcome.
    pub rtt: Duration,
    /// Time from connect to the end of the channel handshake.
    pub handshake_time: Duration,
    session: ClientSession,
    link: SecureStream,
    out: Vec<u8>,
    payload: Vec<u8>,
}

/// The client's end of the secure channel as a blocking byte pipe:
/// plaintext in, records out through a buffered writer; records in through
/// a buffer of received bytes, each decrypted where it lies (no copy out
/// of a reader's buffer), plaintext out.
pub struct SecureStream {
    addr: SocketAddr,
    channel: Channel,
    stream: TcpStream,
    writer: BufWriter<TcpStream>,
    /// Plaintext waiting to be sealed.
    pending: Vec<u8>,
    /// Sealed records waiting to be written.
    sealed: Vec<u8>,
    /// Bytes received: `input[taken..filled]` are not yet taken as records.
    input: Vec<u8>,
    taken: usize,
    filled: usize,
    /// The plaintext of the last record opened, not yet read: `input[start..end]`.
    start: usize,
    end: usize,
    /// How long one record may take to arrive whole, however it trickles.
    record_deadline: Duration,
}

/// Bytes asked of the socket per read: large, so a pipelined restore
/// receives many records per system call.
const READ_AHEAD: usize = 1 << 18;

impl SecureStream {
    /// Runs the channel handshake on a connected `stream` as `identity`,
    /// refusing a peer that does not prove `pinned` before sending anything
    /// more. Message 3 is written but not flushed: it leaves with the first
    /// plaintext.
    pub fn handshake(mut stream: TcpStream, identity: &Identity, pinned: Option<PublicKey>) -> Result<SecureStream> {
        let addr = stream.peer_addr()?;
        let mut writer = BufWriter::with_capacity(1 << 20, stream.try_clone()?);
        let channel = handshake(&mut stream, &mut writer, identity, pinned, addr)?;
        Ok(SecureStream {
            addr,
            channel,
            stream,
            writer,
            pending: Vec::with_capacity(SEAL_BATCH + DECODER_BUFFER_LEN),
            sealed: Vec::new(),
            input: vec![0; READ_AHEAD + RECORD_HEADER_LEN + MAX_NOISE_MESSAGE],
            taken: 0,
            filled: 0,
            start: 0,
            end: 0,
            record_deadline: TIMEOUT,
        })
    }

    /// The peer's identity, proven by the handshake.
    pub fn peer(&self) -> PublicKey {
        self.channel.peer()
    }

    /// The socket's write half, bypassing the channel: what an attacker on
    /// the path could write (tests forge, replay and flip bytes with it).
    pub fn raw_writer(&mut self) -> &mut BufWriter<TcpStream> {
        &mut self.writer
    }

    /// Queues plaintext bytes (sealed once enough gathered, or at flush).
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= SEAL_BATCH {
            self.seal_pending()?;
        }
        Ok(())
    }

    fn seal_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let need = self.channel.sealed_len(self.pending.len());
        self.sealed.resize(need, 0);
        let n = self.channel.seal(&self.pending, &mut self.sealed).map_err(|e| anyhow!("sealing: {e}"))?;
        self.pending.clear();
        // Out to the socket now: a frame's tail must never wait in a user
        // buffer while this connection waits for another (a buddy may hold
        // shared state until the frame is whole). Whatever the buffered
        // writer holds (the handshake's last message) goes first; the
        // records go straight to the socket, not copied through it.
        self.writer.flush().with_context(|| format!("sending to buddy {}", self.addr))?;
        self.writer.get_mut().write_all(&self.sealed[..n]).with_context(|| format!("sending to buddy {}", self.addr))
    }

    /// Seals and writes everything queued.
    pub fn flush(&mut self) -> Result<()> {
        self.seal_pending()?;
        self.writer.flush().with_context(|| format!("sending to buddy {}", self.addr))
    }

    /// Whether the next frame is whole in the record being read, so that
    /// taking it cannot block.
    pub fn frame_ready(&self) -> bool {
        let Some(header) = self.input.get(self.start..self.start + 4).filter(|_| self.end - self.start >= 4) else {
            return false;
        };
        let len = u32::from_be_bytes(header.try_into().expect("four bytes")) as usize;
        self.start + 4 + len <= self.end
    }

    /// Fills `buf` with plaintext, reading and opening records as needed.
    pub fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            if self.start == self.end {
                self.next_record()?;
            }
            let n = buf.len().min(self.end - self.start);
            buf[..n].copy_from_slice(&self.input[self.start..self.start + n]);
            self.start += n;
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Flushes what is queued, then reads one frame's payload into
    /// `payload` (at least [`MAX_FRAME_PAYLOAD`] bytes); returns its length.
    pub fn read_frame(&mut self, payload: &mut [u8]) -> Result<usize> {
        self.flush()?;
        let mut header = [0u8; 4];
        self.read_exact(&mut header)?;
        let len = self.frame_len(header)?;
        self.read_exact(&mut payload[..len])?;
        Ok(len)
    }

    /// [`SecureStream::read_frame`] without a copy when it can: a frame
    /// whole inside the record it arrived in is returned from there; one
    /// split across records is gathered into `payload`.
    pub fn next_frame<'a>(&'a mut self, payload: &'a mut [u8]) -> Result<&'a [u8]> {
        self.flush()?;
        if self.start == self.end {
            self.next_record()?;
        }
        if let Some(header) = self.input.get(self.start..self.start + 4).filter(|_| self.end - self.start >= 4) {
            let len = self.frame_len(header.try_into().expect("four bytes"))?;
            let at = self.start + 4;
            if at + len <= self.end {
                self.start = at + len;
                return Ok(&self.input[at..at + len]);
            }
        }
        let len = self.read_frame(payload)?;
        Ok(&payload[..len])
    }

    /// The payload length a frame header gives, refused outside 1..=[`MAX_FRAME_PAYLOAD`].
    fn frame_len(&self, header: [u8; 4]) -> Result<usize> {
        let len = u32::from_be_bytes(header) as usize;
        if len == 0 || len > MAX_FRAME_PAYLOAD {
            bail!("buddy {} sent a frame of {len} bytes", self.addr);
        }
        Ok(len)
    }

    /// Opens the next record where it lies in `input`; the last one's
    /// plaintext must all have been read.
    fn next_record(&mut self) -> Result<()> {
        // One deadline for the whole record: the socket's timeout bounds
        // each read only, and a buddy sending a byte a minute would hold
        // this connection (and the chunks asked of it) forever.
        let deadline = Instant::now() + self.record_deadline;
        self.receive(RECORD_HEADER_LEN, "closed the connection", deadline)?;
        let header = self.input[self.taken..self.taken + RECORD_HEADER_LEN].try_into().expect("a record header");
        let len = record_len(header, TAG_LEN + 1, self.channel.recv_limit())
            .map_err(|e| anyhow!("buddy {}: {e}", self.addr))?;
        self.receive(RECORD_HEADER_LEN + len, "closed the connection inside a record", deadline)?;
        let at = self.taken + RECORD_HEADER_LEN;
        let plain =
            self.channel.open(&mut self.input[at..at + len]).map_err(|e| anyhow!("buddy {}: {e}", self.addr))?;
        self.start = at;
        self.end = at + plain.len();
        self.taken = at + len;
        Ok(())
    }

    /// Reads until `need` bytes not yet taken are buffered, first moving
    /// them to the front when the buffer's tail is too short (everything
    /// before them is read already).
    fn receive(&mut self, need: usize, closed: &str, deadline: Instant) -> Result<()> {
        if self.taken + need > self.input.len() {
            self.input.copy_within(self.taken..self.filled, 0);
            self.filled -= self.taken;
            self.taken = 0;
            self.start = 0;
            self.end = 0;
        }
        while self.filled - self.taken < need {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "buddy {} is too slow: a record did not arrive whole within {} s",
                    self.addr,
                    self.record_deadline.as_secs_f32()
                );
            }
            self.stream.set_read_timeout(Some(left)).with_context(|| format!("buddy {}", self.addr))?;
            match self.stream.read(&mut self.input[self.filled..]) {
                Ok(0) => bail!("buddy {} {closed}", self.addr),
                Ok(n) => self.filled += n,
                // The read's timeout is what is left of the record's deadline:
                // when it fires, the loop says the buddy is too slow.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(anyhow!(e).context(format!("buddy {} {closed}", self.addr))),
            }
        }
        Ok(())
    }
}

/// Reads one record into `buf` (header first); returns its body.
fn read_record<'b>(
    reader: &mut impl Read,
    buf: &'b mut [u8],
    min: usize,
    limit: usize,
    addr: SocketAddr,
) -> Result<&'b mut [u8]> {
    let mut header = [0u8; RECORD_HEADER_LEN];
    reader.read_exact(&mut header).with_context(|| format!("buddy {addr} closed the connection"))?;
    let len = record_len(header, min, limit).map_err(|e| anyhow!("buddy {addr}: {e}"))?;
    let body = &mut buf[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    reader.read_exact(body).with_context(|| format!("buddy {addr} closed the connection inside a record"))?;
    Ok(body)
}

/// An answer, owned.
#[derive(Debug)]
enum Answer {
    Need(Vec<bool>),
    Flushed(u32),
    Chunk,
    Staged,
    Committed,
    Object,
    Root(u64),
    Dropped,
    Notice(pastiche_core::wire::DropNotice),
    Ok,
}

/// The channel handshake: the buddy's identity (checked against `pinned`
/// before we say anything more), then the established channel.
fn handshake(
    stream: &mut TcpStream,
    writer: &mut BufWriter<TcpStream>,
    identity: &Identity,
    pinned: Option<PublicKey>,
    addr: SocketAddr,
) -> Result<Channel> {
    let mut ephemeral = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut ephemeral);
    let mut hs = Handshake::initiator(identity, ephemeral, pinned, MAX_NOISE_MESSAGE)?;
    let mut msg = [0u8; HANDSHAKE_RECORD_LEN];
    let n = hs.write(&mut msg)?;
    writer.write_all(&msg[..n])?;
    writer.flush()?;
    let body = read_record(stream, &mut msg, 1, MAX_HANDSHAKE_MESSAGE, addr)?;
    match hs.read(body) {
        Ok(()) => {}
        Err(ChannelError::WrongPeer { got }) => bail!(
            "buddy {addr} proves key {got}, not the pinned {}: refusing before sending anything \
             (remove and re-add it if it was rebuilt)",
            pinned.map(|k| k.to_string()).unwrap_or_default()
        ),
        Err(e) => bail!("buddy {addr}: channel handshake failed: {e}"),
    }
    // Message 3 goes out with the session's hello, in one write.
    let n = hs.write(&mut msg)?;
    writer.write_all(&msg[..n])?;
    Ok(hs.finish()?)
}

impl BuddyConn {
    /// Connects to `addr` and completes the hello as `identity`, without a
    /// pinned key (first contact): see [`BuddyConn::connect_pinned`].
    pub fn connect(addr: &str, identity: &Identity, node: NodeId) -> Result<BuddyConn> {
        BuddyConn::connect_pinned(addr, identity, node, None, None)
    }

    /// Connects to `addr`, runs the channel handshake (refusing a buddy
    /// that does not prove `pinned`, before anything else is sent), then
    /// completes the hello as `identity` inside the channel, presenting a
    /// one-time pairing `code` if given, so that a buddy that has not
    /// admitted this box yet admits it.
    pub fn connect_pinned(
        addr: &str,
        identity: &Identity,
        node: NodeId,
        pinned: Option<PublicKey>,
        code: Option<&str>,
    ) -> Result<BuddyConn> {
        let started = Instant::now();
        let sock = addr
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve buddy {addr}"))?
            .next()
            .ok_or_else(|| anyhow!("buddy {addr} has no address"))?;
        let stream = TcpStream::connect_timeout(&sock, Duration::from_secs(10))
            .with_context(|| format!("cannot connect to buddy {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let link = SecureStream::handshake(stream, identity, pinned)?;
        let buddy_key = link.peer();
        let handshake_time = started.elapsed();
        let mut nonce = [0u8; 32];
        let mut entropy = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        rand::rngs::OsRng.fill_bytes(&mut entropy);
        let mut conn = BuddyConn {
            addr: sock,
            buddy_key,
            welcome: Welcome { quota_bytes: 0, used_bytes: 0, committed_epoch: 0, staged_epoch: 0 },
            rtt: Duration::ZERO,
            handshake_time,
            session: match code {
                Some(code) => ClientSession::new(identity.clone(), node, nonce, entropy)
                    .with_pairing_code(code)
                    .map_err(|e| anyhow!("pairing code: {e}"))?,
                None => ClientSession::new(identity.clone(), node, nonce, entropy),
            },
            link,
            out: vec![0; DECODER_BUFFER_LEN],
            payload: vec![0; MAX_FRAME_PAYLOAD],
        };
        let n = conn.session.start(&mut conn.out)?;
        conn.send(n)?;
        loop {
            let len = conn.read_frame()?;
            // The challenge must name the key the channel proved (and so the
            // pinned one): otherwise the proof would be signed for another box.
            if let Ok(Message::Challenge(c)) = Message::decode(&conn.payload[..len]) {
                if c.buddy_key != buddy_key {
                    bail!("buddy {addr} challenges as {}, but its channel proved {buddy_key}: refusing", c.buddy_key);
                }
            }
            let (session, payload, out) = (&mut conn.session, &conn.payload[..len], &mut conn.out);
            match session.handle(payload, out).map_err(|e| anyhow!("buddy {addr}: {e}"))? {
                ClientEvent::SendProof(n) => conn.send(n)?,
                ClientEvent::Welcome(w) => {
                    conn.welcome = w;
                    conn.rtt = started.elapsed();
                    return Ok(conn);
                }
                ClientEvent::Refused { code: ErrorCode::NotAuthenticated, message } => {
                    let refused = BuddyRefused { code: ErrorCode::NotAuthenticated, message: message.to_string() };
                    return Err(
                        anyhow::Error::new(refused).context(format!("buddy {addr} refused this box: {message}"))
                    );
                }
                ClientEvent::Refused { code, message } => bail!("buddy {addr} refused the hello: {code:?}: {message}"),
                other => bail!("buddy {addr} answered the hello with {other:?}"),
            }
        }
    }

    fn send(&mut self, n: usize) -> Result<()> {
        self.link.send(&self.out[..n])
    }

    /// Reads one frame's payload into `self.payload`; returns its length.
    fn read_frame(&mut self) -> Result<usize> {
        self.link.read_frame(&mut self.payload)
    }

    /// Waits for the answer to the outstanding request. A refused upload
    /// (quota) arriving first is collected in `refused_puts`.
    fn answer(&mut self, data: Option<&mut Vec<u8>>, refused_puts: &mut u32) -> Result<Answer> {
        let mut data = data;
        loop {
            let len = self.read_frame()?;
            let addr = self.addr;
            let event = self
                .session
                .handle(&self.payload[..len], &mut self.out)
                .map_err(|error| BrokeProtocol { addr, error })?;
            let answer = match event {
                ClientEvent::Need(n) => Answer::Need((0..n.bitmap.len() * 8).map(|i| n.lacks(i)).collect()),
                ClientEvent::Flushed(n) => Answer::Flushed(n),
                ClientEvent::Chunk { sealed, .. } => {
                    if let Some(d) = data.as_mut() {
                        d.clear();
                        d.extend_from_slice(sealed);
                    }
                    Answer::Chunk
                }
                ClientEvent::Staged(_) => Answer::Staged,
                ClientEvent::Committed(_) => Answer::Committed,
                ClientEvent::Object { data: o, .. } => {
                    if let Some(d) = data.as_mut() {
                        d.clear();
                        d.extend_from_slice(o);
                    }
                    Answer::Object
                }
                ClientEvent::Root { epoch, data: r } => {
                    if let Some(d) = data.as_mut() {
                        d.clear();
                        d.extend_from_slice(r);
                    }
                    Answer::Root(epoch)
                }
                ClientEvent::Dropped => Answer::Dropped,
                ClientEvent::Notice(n) => Answer::Notice(n),
                ClientEvent::Ok => Answer::Ok,
                ClientEvent::Refused { code: ErrorCode::QuotaExceeded, .. } => {
                    *refused_puts += 1;
                    continue;
                }
                ClientEvent::Refused { code, message } => {
                    return Err(BuddyRefused { code, message: message.to_string() }.into())
                }
                other => bail!("buddy {} sent {other:?} unasked", self.addr),
            };
            return Ok(answer);
        }
    }

    /// Which of `ids` the buddy lacks (it now holds references to the others for us).
    pub fn offer(&mut self, ids: &[ChunkId]) -> Result<Vec<bool>> {
        let mut packed = vec![0u8; ids.len() * 20];
        let list = IdList::pack(ids.iter().map(|i| i.0), &mut packed)?;
        let n = self.session.offer(list, &mut self.out)?;
        self.send(n)?;
        match self.answer(None, &mut 0)? {
            Answer::Need(mut lacks) => {
                lacks.truncate(ids.len());
                Ok(lacks)
            }
            other => bail!("expected Need, got {other:?}"),
        }
    }

    /// Uploads a chunk (answered, if refused, before the next flush's answer).
    pub fn put_chunk(&mut self, id: ChunkId, sealed: &[u8]) -> Result<()> {
        let n = self.session.put_chunk(id, sealed, &mut self.out)?;
        self.send(n)
    }

    /// Makes every upload durable; returns (new chunks stored, uploads refused for quota).
    pub fn flush(&mut self) -> Result<(u32, u32)> {
        let n = self.session.flush(&mut self.out)?;
        self.send(n)?;
        let mut refused = 0;
        match self.answer(None, &mut refused)? {
            Answer::Flushed(stored) => Ok((stored, refused)),
            other => bail!("expected Flushed, got {other:?}"),
        }
    }

    /// Fetches a sealed chunk into `out`.
    pub fn get_chunk(&mut self, id: ChunkId, out: &mut Vec<u8>) -> Result<()> {
        let n = self.session.get_chunk(id, &mut self.out)?;
        self.send(n)?;
        self.answer(Some(out), &mut 0).map(|_| ())
    }

    /// Fetches many chunks with up to [`MAX_PIPELINED_GETS`] requests in
    /// flight; `each(i, sealed)` sees them in order.
    pub fn get_chunks(&mut self, ids: &[ChunkId], mut each: impl FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
        self.get_chunks_or_missing(ids, |i, sealed| match sealed {
            Some(sealed) => each(i, sealed),
            None => {
                Err(BuddyRefused { code: ErrorCode::NotFound, message: format!("chunk {}: not held", ids[i]) }.into())
            }
        })
    }

    /// [`BuddyConn::get_chunks`] that goes on past a chunk the buddy does
    /// not hold: `each(i, None)` for it (the session stays usable), and
    /// any other refusal ends the call.
    pub fn get_chunks_or_missing(
        &mut self,
        ids: &[ChunkId],
        mut each: impl FnMut(usize, Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let mut sent = 0;
        for got in 0..ids.len() {
            while sent < ids.len() && self.chunks_in_flight() < MAX_PIPELINED_GETS {
                self.request_chunk(ids[sent])?;
                sent += 1;
            }
            each(got, self.next_chunk()?)?;
        }
        Ok(())
    }

    /// Asks for chunk `id` without waiting for it: the request leaves with
    /// the next read ([`BuddyConn::next_chunk`]). At most
    /// [`MAX_PIPELINED_GETS`] may be in flight.
    pub fn request_chunk(&mut self, id: ChunkId) -> Result<()> {
        let n = self.session.get_chunk(id, &mut self.out)?;
        self.send(n)
    }

    /// Whether the next answer is already received whole: taking it with
    /// [`BuddyConn::next_chunk`] cannot block.
    pub fn answer_ready(&self) -> bool {
        self.link.frame_ready()
    }

    /// Requests sent and not yet answered.
    pub fn chunks_in_flight(&self) -> usize {
        self.session.gets_in_flight()
    }

    /// Sends what is queued and reads the answer to the oldest request in
    /// flight: its sealed bytes, or `None` when the buddy does not hold the
    /// chunk (the session stays usable). Any other refusal is an error.
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>> {
        let asked = self.session.oldest_get();
        let frame = self.link.next_frame(&mut self.payload)?;
        let addr = self.addr;
        let event = self.session.handle(frame, &mut self.out).map_err(|error| BrokeProtocol { addr, error })?;
        match event {
            ClientEvent::Chunk { sealed, .. } => Ok(Some(sealed)),
            ClientEvent::Refused { code: ErrorCode::NotFound, .. } => Ok(None),
            ClientEvent::Refused { code, message } => {
                let chunk = asked.map(|id| id.to_string()).unwrap_or_default();
                Err(BuddyRefused { code, message: format!("chunk {chunk}: {message}") }.into())
            }
            other => bail!("buddy {} sent {other:?} unasked", self.addr),
        }
    }

    /// Stages an object for `epoch`.
    pub fn put_object(&mut self, epoch: u64, name: [u8; 20], data: &[u8]) -> Result<()> {
        let n = self.session.put_object(epoch, name, data, &mut self.out)?;
        self.send(n)
    }

    /// Stages the release of chunk references at `epoch`.
    pub fn delete_list(&mut self, epoch: u64, ids: &[ChunkId]) -> Result<()> {
        let mut packed = vec![0u8; ids.len() * 20];
        let list = IdList::pack(ids.iter().map(|i| i.0), &mut packed)?;
        let n = self.session.delete_list(epoch, list, &mut self.out)?;
        self.send(n)
    }

    /// Stages the root object for `epoch`.
    pub fn put_root(&mut self, epoch: u64, data: &[u8]) -> Result<()> {
        let n = self.session.put_root(epoch, data, &mut self.out)?;
        self.send(n)
    }

    /// Commits `epoch` in two phases (`staged`: the staging digest the
    /// commit signs); returns once it is applied.
    pub fn commit(&mut self, epoch: u64, objects: u32, deletes: u32, staged: [u8; 32]) -> Result<()> {
        let n = self.session.commit(epoch, objects, deletes, staged, &mut self.out)?;
        self.send(n)?;
        match self.answer(None, &mut 0)? {
            Answer::Staged => {}
            other => bail!("expected Staged, got {other:?}"),
        }
        match self.answer(None, &mut 0)? {
            Answer::Committed => Ok(()),
            other => bail!("expected Committed, got {other:?}"),
        }
    }

    /// Fetches one of our objects.
    pub fn get_object(&mut self, name: [u8; 20], out: &mut Vec<u8>) -> Result<()> {
        let n = self.session.get_object(name, &mut self.out)?;
        self.send(n)?;
        self.answer(Some(out), &mut 0).map(|_| ())
    }

    /// Fetches our root object: its epoch.
    pub fn get_root(&mut self, out: &mut Vec<u8>) -> Result<u64> {
        let n = self.session.get_root(&mut self.out)?;
        self.send(n)?;
        match self.answer(Some(out), &mut 0)? {
            Answer::Root(epoch) => Ok(epoch),
            other => bail!("expected Root, got {other:?}"),
        }
    }

    /// Challenges the buddy to prove, under `nonce`, that it holds `ids` (at
    /// most [`MAX_AUDIT_IDS`](pastiche_core::audit::MAX_AUDIT_IDS)) for us:
    /// one answer per id, `None` where it says it does not.
    pub fn audit(
        &mut self,
        nonce: pastiche_core::audit::AuditNonce,
        ids: &[ChunkId],
    ) -> Result<Vec<Option<pastiche_core::audit::ProofDigest>>> {
        let mut packed = vec![0u8; ids.len() * 20];
        let list = IdList::pack(ids.iter().map(|i| i.0), &mut packed)?;
        let n = self.session.audit(nonce, list, &mut self.out)?;
        self.send(n)?;
        let len = self.read_frame()?;
        let addr = self.addr;
        let event =
            self.session.handle(&self.payload[..len], &mut self.out).map_err(|error| BrokeProtocol { addr, error })?;
        match event {
            ClientEvent::AuditProofs(p) => Ok((0..p.len()).map(|i| p.answer(i)).collect()),
            ClientEvent::Refused { code, message } => Err(BuddyRefused { code, message: message.to_string() }.into()),
            other => bail!("buddy {} answered an audit with {other:?}", self.addr),
        }
    }

    /// The buddy's last drop of our data on its own (`GetNotice`), if it
    /// ever dropped it.
    pub fn get_notice(&mut self) -> Result<Option<pastiche_core::wire::DropNotice>> {
        let n = self.session.get_notice(&mut self.out)?;
        self.send(n)?;
        match self.answer(None, &mut 0) {
            Ok(Answer::Notice(n)) => Ok(Some(n)),
            Ok(other) => bail!("expected Notice, got {other:?}"),
            Err(e) if e.downcast_ref::<BuddyRefused>().is_some_and(|r| r.code == ErrorCode::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes everything of ours from the buddy.
    pub fn drop_all(&mut self, epoch: u64) -> Result<()> {
        let n = self.session.drop_all(epoch, &mut self.out)?;
        self.send(n)?;
        match self.answer(None, &mut 0)? {
            Answer::Dropped | Answer::Ok => Ok(()),
            other => bail!("expected Dropped, got {other:?}"),
        }
    }
}

/// The buddy broke the protocol (an answer that was not asked for, a
/// frame that does not decode): a fault of the buddy, not of the network,
/// so reconnecting to it is no cure.
#[derive(Debug, thiserror::Error)]
#[error("buddy {addr}: {error}")]
pub struct BrokeProtocol {
    /// The buddy.
    pub addr: SocketAddr,
    /// What it did.
    pub error: SessionError,
}

/// The buddy answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("the buddy refused: {code:?}: {message}")]
pub struct BuddyRefused {
    /// The error code.
    pub code: ErrorCode,
    /// The buddy's words.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    /// A buddy that completes the channel handshake, then sends a valid
    /// record a byte every 20 ms: each read gets data well within the
    /// socket's timeout, so only the record's own deadline stops it.
    #[test]
    fn a_buddy_trickling_a_record_is_cut_off_at_the_record_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let buddy = thread::spawn(move || {
            let (mut sock, peer) = listener.accept().unwrap();
            let me = Identity::from_seed([7; 32]).unwrap();
            let mut hs = Handshake::responder(&me, [8; 32], MAX_NOISE_MESSAGE).unwrap();
            let mut msg = [0u8; HANDSHAKE_RECORD_LEN];
            let body = read_record(&mut sock, &mut msg, 1, MAX_HANDSHAKE_MESSAGE, peer).unwrap();
            hs.read(body).unwrap();
            let n = hs.write(&mut msg).unwrap();
            sock.write_all(&msg[..n]).unwrap();
            let body = read_record(&mut sock, &mut msg, 1, MAX_HANDSHAKE_MESSAGE, peer).unwrap();
            hs.read(body).unwrap();
            let mut channel = hs.finish().unwrap();
            let mut record = vec![0u8; 4096];
            let n = channel.seal_record(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8], &mut record).unwrap();
            for byte in &record[..n] {
                if sock.write_all(std::slice::from_ref(byte)).is_err() {
                    return; // the client hung up: what is wanted
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        let stream = TcpStream::connect(addr).unwrap();
        let me = Identity::from_seed([9; 32]).unwrap();
        let mut link = SecureStream::handshake(stream, &me, None).unwrap();
        link.record_deadline = Duration::from_millis(200);
        // The record has 30 bytes: trickled whole it takes 600 ms, and
        // without the deadline the frame would be read.
        let mut payload = vec![0u8; MAX_FRAME_PAYLOAD];
        let err = link.read_frame(&mut payload).expect_err("a trickled record is refused");
        assert!(format!("{err:#}").contains("too slow"), "{err:#}");
        drop(link);
        buddy.join().unwrap();
    }
}
